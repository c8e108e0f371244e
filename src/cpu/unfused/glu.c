/* Unfused GLU: per row, the inputs widened to f32 when they are f16/bf16
 * (a conversion pass each), one activation pass over the gate into a
 * temporary, one multiply pass by the up values, and a conversion pass to
 * out_type when it is not f32. The element functions are the reference's
 * (src/cpu/ref/actf.h), so the result is bit-identical to MF_IMPL_REF. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../ref/actf.h"
#include "unfused.h"

/* n elements of type t starting at element `first`, every `step` elements,
 * widened to f32. */
static void widen(mf_type t, const void *src, int64_t first, int64_t step,
                  int64_t n, float *dst)
{
    const unsigned char *b = src;
    for (int64_t i = 0; i < n; i++) {
        const int64_t e = first + i * step;
        if (t == MF_TYPE_F32) {
            memcpy(&dst[i], b + 4 * e, 4);
        } else {
            uint16_t h;
            memcpy(&h, b + 2 * e, 2);
            dst[i] = t == MF_TYPE_F16 ? mf_f16_to_f32(h) : mf_bf16_to_f32(h);
        }
    }
}

static void narrow(mf_type t, const float *src, int64_t n, void *dst)
{
    unsigned char *b = dst;
    for (int64_t i = 0; i < n; i++) {
        if (t == MF_TYPE_F32) {
            memcpy(b + 4 * i, &src[i], 4);
        } else {
            uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(src[i])
                                          : mf_f32_to_bf16(src[i]);
            memcpy(b + 2 * i, &h, 2);
        }
    }
}

mf_status mf_unfused_glu(const mf_glu_desc *d, int64_t T, int64_t n,
                         const void *gate, const void *up, void *out)
{
    const float limit = d->limit != 0.0f ? d->limit : MF_OAI_LIMIT;
    const float alpha = d->alpha != 0.0f ? d->alpha : MF_OAI_ALPHA;
    const size_t esz = d->in_type == MF_TYPE_F32 ? 4 : 2;
    const size_t osz = d->out_type == MF_TYPE_F32 ? 4 : 2;
    if ((size_t)n > SIZE_MAX / 3 / sizeof(float))
        return MF_ERR_OUT_OF_MEMORY;
    float *buf = malloc(3 * (size_t)n * sizeof(float));
    if (!buf)
        return MF_ERR_OUT_OF_MEMORY;
    float *g = buf, *u = buf + n, *a = buf + 2 * n;
    const int64_t row = d->layout == MF_GLU_SEPARATE ? n : 2 * n;
    for (int64_t t = 0; t < T; t++) {
        const unsigned char *gr = (const unsigned char *)gate + (size_t)(t * row) * esz;
        switch (d->layout) {
        case MF_GLU_SEPARATE:
            widen(d->in_type, gr, 0, 1, n, g);
            widen(d->in_type, (const unsigned char *)up + (size_t)(t * n) * esz,
                  0, 1, n, u);
            break;
        case MF_GLU_CONCAT:
            widen(d->in_type, gr, 0, 1, n, g);
            widen(d->in_type, gr, n, 1, n, u);
            break;
        default:
            widen(d->in_type, gr, 0, 2, n, g);
            widen(d->in_type, gr, 1, 2, n, u);
            break;
        }
        /* activation pass: a = act(g) */
        switch (d->kind) {
        case MF_GLU_GEGLU_TANH:
            for (int64_t i = 0; i < n; i++)
                a[i] = mf_ref_gelu_tanh(g[i]);
            break;
        case MF_GLU_GEGLU_ERF:
            for (int64_t i = 0; i < n; i++)
                a[i] = mf_ref_gelu_erf(g[i]);
            break;
        case MF_GLU_SWIGLU_OAI:
            for (int64_t i = 0; i < n; i++)
                a[i] = mf_ref_oai_gate(g[i], limit, alpha);
            for (int64_t i = 0; i < n; i++)
                u[i] = mf_ref_oai_up(u[i], limit);
            break;
        default:
            for (int64_t i = 0; i < n; i++)
                a[i] = mf_ref_silu(g[i]);
            break;
        }
        /* multiply pass (the up factor first, as the reference) */
        for (int64_t i = 0; i < n; i++)
            a[i] = u[i] * a[i];
        narrow(d->out_type, a, n, (unsigned char *)out + (size_t)(t * n) * osz);
    }
    free(buf);
    return MF_OK;
}
