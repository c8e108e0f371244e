/* The device image of a weight tensor (shaders/qformat.glsl): layout and
 * repacking of host rows into it. ggml blocks are split into their codes
 * (16-byte aligned, read as uvec4) and their d values; float rows are
 * padded with zeros to whole blocks of 32; row strides are dropped; MLX
 * scales and biases are copied as stored. */
#include <string.h>

#include "quant.h"

static uint32_t vecs_of(mf_type t)
{
    switch (t) {
    case MF_TYPE_F32: return 8;
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return 4;
    case MF_TYPE_Q4_0:
    case MF_TYPE_MLX_Q4: return 1;
    default: return 2;
    }
}

static int is_mlx(mf_type t)
{
    return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8;
}

static uint64_t up16(uint64_t b) { return (b + 15) & ~(uint64_t)15; }

int mf_wlayout_of(const mf_tensor *t, mf_wlayout *out)
{
    mf_wlayout l;
    memset(&l, 0, sizeof l);
    l.rows = (uint64_t)t->e * (uint64_t)t->n;
    l.nb = (uint32_t)((t->k + 31) / 32);
    l.vecs = vecs_of(t->type);
    l.code_row = (uint64_t)l.nb * l.vecs * 16;
    if (t->type == MF_TYPE_Q4_0 || t->type == MF_TYPE_Q8_0)
        l.scale_row = (uint64_t)l.nb * 2;
    else if (is_mlx(t->type))
        l.scale_row = (uint64_t)(t->k / t->group_size) *
                      (t->scale_type == MF_TYPE_F32 ? 4u : 2u);
    /* rows <= 2^48 and a row's bytes <= 2^29: the products fit in 64 bits;
     * the image must also fit in size_t and in uint32 words for the
     * shaders' indices (checked against the binding limit later). */
    uint64_t codes = l.rows * l.code_row;
    uint64_t sc = l.rows * l.scale_row;
    l.soff = up16(codes);
    l.boff = up16(l.soff + sc);
    l.total = is_mlx(t->type) ? up16(l.boff + sc) : l.boff;
    if (l.total == 0)
        l.total = 16;
    if (l.rows > ((uint64_t)1 << 48) || l.total > (uint64_t)SIZE_MAX ||
        l.total / 4 > UINT32_MAX)
        return 0;
    *out = l;
    return 1;
}

static const unsigned char *row_at(const mf_tensor *t, uint64_t r)
{
    size_t stride = t->row_stride ? t->row_stride
                                  : mf_tensor_row_bytes(t->type, t->k);
    return (const unsigned char *)t->data + (size_t)r * stride;
}

/* One row's codes in the image layout. */
static void pack_codes(const mf_tensor *t, const mf_wlayout *l,
                       const unsigned char *src, unsigned char *dst)
{
    const uint64_t K = (uint64_t)t->k;
    switch (t->type) {
    case MF_TYPE_Q4_0:
        for (uint32_t b = 0; b < l->nb; b++)
            memcpy(dst + (size_t)b * 16, src + (size_t)b * 18 + 2, 16);
        break;
    case MF_TYPE_Q8_0:
        for (uint32_t b = 0; b < l->nb; b++)
            memcpy(dst + (size_t)b * 32, src + (size_t)b * 34 + 2, 32);
        break;
    default: {
        /* MLX code words and float rows are copied; float rows get zero
         * padding up to whole blocks. */
        size_t rb = mf_tensor_row_bytes(t->type, (int64_t)K);
        memcpy(dst, src, rb);
        memset(dst + rb, 0, (size_t)l->code_row - rb);
        break;
    }
    }
}

size_t mf_wpack_rows(const mf_tensor *t, const mf_wlayout *l, int region,
                     uint64_t r0, uint64_t r1, unsigned char *dst)
{
    size_t n = 0;
    if (region == 0) {
        for (uint64_t r = r0; r < r1; r++) {
            pack_codes(t, l, row_at(t, r), dst + n);
            n += (size_t)l->code_row;
        }
        return n;
    }
    if (l->scale_row == 0)
        return 0;
    if (t->type == MF_TYPE_Q4_0 || t->type == MF_TYPE_Q8_0) {
        if (region != 1)
            return 0;
        size_t bs = t->type == MF_TYPE_Q4_0 ? 18 : 34;
        for (uint64_t r = r0; r < r1; r++) {
            const unsigned char *src = row_at(t, r);
            for (uint32_t b = 0; b < l->nb; b++, n += 2)
                memcpy(dst + n, src + (size_t)b * bs, 2);
        }
        return n;
    }
    const unsigned char *arr = region == 1 ? t->scales : t->biases;
    n = (size_t)((r1 - r0) * l->scale_row);
    memcpy(dst, arr + (size_t)(r0 * l->scale_row), n);
    return n;
}
