/* Reference quantized-weight kernels: row dequantization, f32 dot products
 * against quantized rows (EXACT), activation quantization to int8 blocks and
 * integer block dot products (INT8). Portable C, the oracle for every ISA.
 *
 * Rounding: the library is compiled with -ffp-contract=off, so every product
 * below is rounded before the following sum, as the formats define
 * (MLX: w = round(round(scale * q) + bias)). */
#include <math.h>
#include <string.h>

#include "ref.h"

static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static uint16_t ld16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

static uint32_t ld32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static const unsigned char *row_ptr(const mf_tensor *w, int64_t r)
{
    size_t stride = w->row_stride ? w->row_stride
                                  : mf_tensor_row_bytes(w->type, w->k);
    return (const unsigned char *)w->data + (size_t)r * stride;
}

/* Scale or bias number i of an MLX tensor's array, widened to f32. */
static float mlx_param(mf_type st, const void *arr, size_t i)
{
    const unsigned char *p = (const unsigned char *)arr;
    if (st == MF_TYPE_F32) {
        float f;
        memcpy(&f, p + i * 4, 4);
        return f;
    }
    uint16_t h = ld16(p + i * 2);
    return st == MF_TYPE_F16 ? mf_f16_to_f32(h) : mf_bf16_to_f32(h);
}

/* Elements [k0, k0 + n) of row r (n <= 32; for quantized types k0 is a
 * multiple of 32 and n == 32) into out[0, n). */
static void dequant_chunk(const mf_tensor *w, int64_t r,
                          const unsigned char *row, int64_t k0, int n,
                          float *out)
{
    switch (w->type) {
    case MF_TYPE_F32:
        memcpy(out, row + (size_t)k0 * 4, (size_t)n * 4);
        break;
    case MF_TYPE_F16:
        for (int j = 0; j < n; j++)
            out[j] = mf_f16_to_f32(ld16(row + (size_t)(k0 + j) * 2));
        break;
    case MF_TYPE_BF16:
        for (int j = 0; j < n; j++)
            out[j] = mf_bf16_to_f32(ld16(row + (size_t)(k0 + j) * 2));
        break;
    case MF_TYPE_Q4_0: {
        const unsigned char *b = row + (size_t)(k0 / 32) * 18;
        float d = mf_f16_to_f32(ld16(b));
        for (int j = 0; j < 16; j++) {
            out[j] = d * (float)((b[2 + j] & 15) - 8);
            out[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
        break;
    }
    case MF_TYPE_Q8_0: {
        const unsigned char *b = row + (size_t)(k0 / 32) * 34;
        float d = mf_f16_to_f32(ld16(b));
        for (int j = 0; j < 32; j++)
            out[j] = d * (float)(int8_t)b[2 + j];
        break;
    }
    case MF_TYPE_MLX_Q4:
    case MF_TYPE_MLX_Q8: {
        int bits = w->type == MF_TYPE_MLX_Q4 ? 4 : 8;
        int per_word = 32 / bits;
        uint32_t mask = (1u << bits) - 1u;
        size_t gi = (size_t)r * (size_t)(w->k / w->group_size) +
                    (size_t)(k0 / w->group_size);
        float s = mlx_param(w->scale_type, w->scales, gi);
        float bias = mlx_param(w->scale_type, w->biases, gi);
        for (int j = 0; j < 32; j++) {
            int64_t e = k0 + j;
            uint32_t word = ld32(row + (size_t)(e / per_word) * 4);
            uint32_t q = (word >> (bits * (int)(e % per_word))) & mask;
            float p = s * (float)q; /* rounded product, then the sum */
            out[j] = p + bias;
        }
        break;
    }
    default:
        break;
    }
}

static void ref_dequant_row(const mf_tensor *w, int64_t r, float *out)
{
    const unsigned char *row = row_ptr(w, r);
    for (int64_t k0 = 0; k0 < w->k; k0 += 32) {
        int n = w->k - k0 < 32 ? (int)(w->k - k0) : 32;
        dequant_chunk(w, r, row, k0, n, out + k0);
    }
}

/* Sequential f32 sums: acc = acc + w_k * x_k for k = 0 .. K-1, each product
 * rounded. Activation rows are taken 64 at a time so each chunk of weights
 * is decoded once per group. */
static void ref_qdot(const mf_tensor *w, int64_t r0, int64_t nr,
                     const float *const *x, int M, float *const *y)
{
    enum { MG = 64 };
    float wb[32], acc[MG];
    for (int64_t i = 0; i < nr; i++) {
        const unsigned char *row = row_ptr(w, r0 + i);
        for (int m0 = 0; m0 < M; m0 += MG) {
            int mn = M - m0 < MG ? M - m0 : MG;
            for (int m = 0; m < mn; m++)
                acc[m] = 0.0f;
            for (int64_t k0 = 0; k0 < w->k; k0 += 32) {
                int n = w->k - k0 < 32 ? (int)(w->k - k0) : 32;
                dequant_chunk(w, r0 + i, row, k0, n, wb);
                for (int m = 0; m < mn; m++) {
                    const float *xm = x[m0 + m] + k0;
                    float a = acc[m];
                    for (int j = 0; j < n; j++) {
                        float p = wb[j] * xm[j];
                        a = a + p;
                    }
                    acc[m] = a;
                }
            }
            for (int m = 0; m < mn; m++)
                y[m0 + m][i] = acc[m];
        }
    }
}

/* Per block of 32: d = absmax / 127, q = nearest-even(x / d) clamped to
 * +-127, s = d * sum(q). An all-zero block (or one whose d underflows to 0)
 * gets d = 0, q = 0. A block holding Inf or NaN gets d = s = NaN and q = 0,
 * so every output it touches is NaN. */
static void ref_quantize_q8(const float *x, int64_t K, mf_q8blk *out)
{
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + b * 32;
        mf_q8blk *o = &out[b];
        uint32_t amax = 0;
        for (int j = 0; j < 32; j++) {
            uint32_t a = f2u(xb[j]) & 0x7fffffffu;
            amax = a > amax ? a : amax;
        }
        memset(o->q, 0, sizeof o->q);
        if (amax >= 0x7f800000u) {
            o->d = o->s = NAN;
            continue;
        }
        float d = u2f(amax) / 127.0f;
        o->d = d;
        if (d == 0.0f) {
            o->s = 0.0f;
            continue;
        }
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            float v = rintf(xb[j] / d);
            v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
            o->q[j] = (int8_t)v;
            sum += o->q[j];
        }
        o->s = d * (float)sum;
    }
}

/* Integer dot product of 32 weight codes (or code - offset) with one
 * activation block. */
static int32_t idot32(const int *wq, const int8_t *xq)
{
    int32_t s = 0;
    for (int j = 0; j < 32; j++)
        s += wq[j] * xq[j];
    return s;
}

/* Weight codes of the 32-element piece b of a row (Q4_0: q - 8). */
static void codes32(const mf_tensor *w, const unsigned char *row, int64_t b,
                    int *q)
{
    switch (w->type) {
    case MF_TYPE_Q4_0: {
        const unsigned char *p = row + (size_t)b * 18 + 2;
        for (int j = 0; j < 16; j++) {
            q[j] = (p[j] & 15) - 8;
            q[j + 16] = (p[j] >> 4) - 8;
        }
        break;
    }
    case MF_TYPE_Q8_0: {
        const unsigned char *p = row + (size_t)b * 34 + 2;
        for (int j = 0; j < 32; j++)
            q[j] = (int8_t)p[j];
        break;
    }
    case MF_TYPE_MLX_Q4: {
        const unsigned char *p = row + (size_t)b * 16;
        for (int j = 0; j < 16; j++) {
            q[2 * j] = p[j] & 15;
            q[2 * j + 1] = p[j] >> 4;
        }
        break;
    }
    case MF_TYPE_MLX_Q8: {
        const unsigned char *p = row + (size_t)b * 32;
        for (int j = 0; j < 32; j++)
            q[j] = p[j];
        break;
    }
    default:
        memset(q, 0, 32 * sizeof *q);
        break;
    }
}

/* Per 32-wide piece b (one ggml block, or a slice of an MLX group):
 *   Q4_0 / Q8_0: acc = acc + (d_w * d_x) * isum
 *   MLX:         acc = acc + ((scale * d_x) * isum + bias * s_x)
 * with isum the exact integer dot product of the codes. */
static void ref_qdot_q8(const mf_tensor *w, int64_t r0, int64_t nr,
                        const mf_q8blk *const *xq, int M, float *const *y)
{
    int64_t nb = w->k / 32;
    int mlx = w->type == MF_TYPE_MLX_Q4 || w->type == MF_TYPE_MLX_Q8;
    int q[32];
    for (int64_t i = 0; i < nr; i++) {
        int64_t r = r0 + i;
        const unsigned char *row = row_ptr(w, r);
        for (int m = 0; m < M; m++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const mf_q8blk *xb = &xq[m][b];
                codes32(w, row, b, q);
                float isum = (float)idot32(q, xb->q);
                if (mlx) {
                    size_t gi = (size_t)r * (size_t)(w->k / w->group_size) +
                                (size_t)(b * 32 / w->group_size);
                    float s = mlx_param(w->scale_type, w->scales, gi);
                    float bias = mlx_param(w->scale_type, w->biases, gi);
                    float sd = s * xb->d;
                    float t = sd * isum;
                    float u = bias * xb->s;
                    acc = acc + (t + u);
                } else {
                    size_t bb = (size_t)b * (w->type == MF_TYPE_Q4_0 ? 18 : 34);
                    float dd = mf_f16_to_f32(ld16(row + bb)) * xb->d;
                    float t = dd * isum;
                    acc = acc + t;
                }
            }
            y[m][i] = acc;
        }
    }
}

void mf_ref_init_quant(mf_kernels *k)
{
    k->dequant_row = ref_dequant_row;
    k->qdot = ref_qdot;
    k->quantize_q8 = ref_quantize_q8;
    k->qdot_q8 = ref_qdot_q8;
}
