/* NEON quantized-weight kernels (aarch64, fp16 + dotprod): row
 * dequantization (bit-exact), f32 dot products against quantized rows
 * (EXACT), activation quantization to int8 blocks and integer block dot
 * products with sdot (INT8).
 *
 * qdot and qdot_q8 stream each row once for up to four activation rows:
 * rows are taken in blocks (4 rows for M = 1, else 2) and, inside a row
 * block, activation rows in chunks of up to 4, so the block's weights are
 * re-read from L1 rather than from memory. Weights are decoded in registers
 * per 32-element piece (one ggml block, or a slice of an MLX group). The
 * build's -ffp-contract=off (and the pragma, for clang) keeps the compiler
 * from fusing the separate products and sums the formats define. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "neon.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

AI uint16_t ld16(const unsigned char *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

static size_t row_stride(const mf_tensor *w)
{
    return w->row_stride ? w->row_stride : mf_tensor_row_bytes(w->type, w->k);
}

static int is_mlx(mf_type t)
{
    return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8;
}

static int is_float_type(mf_type t) { return t <= MF_TYPE_BF16; }

/* log2(group_size / 32): the 32-wide piece j of a row is in group j >> gsh. */
static int group_shift(const mf_tensor *w)
{
    return w->group_size == 128 ? 2 : w->group_size == 64 ? 1 : 0;
}

static size_t param_size(mf_type st) { return st == MF_TYPE_F32 ? 4 : 2; }

/* f16 to f32 by the hardware (signaling NaNs come out quiet). */
AI float f16_fast(uint16_t h)
{
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
}

/* An MLX scale or bias (element i of arr) as f32. exact: bit for bit as the
 * format's widening (NaN payloads kept). */
AI float mlx_param(mf_type st, const unsigned char *arr, size_t i, int exact)
{
    if (st == MF_TYPE_F32) {
        float f;
        memcpy(&f, arr + i * 4, 4);
        return f;
    }
    uint16_t h = ld16(arr + i * 2);
    if (st == MF_TYPE_BF16)
        return u2f((uint32_t)h << 16);
    return exact ? mf_f16_to_f32(h) : f16_fast(h);
}

/* 4 f16 values to f32, bit for bit as mf_f16_to_f32 (the conversion
 * instruction quiets signaling NaNs; the format keeps the payload). */
AI float32x4_t f16x4_exact(uint16x4_t h)
{
    float32x4_t f = vcvt_f32_f16(vreinterpret_f16_u16(h));
    uint32x4_t u = vmovl_u16(h);
    uint32x4_t nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fff)),
                               vdupq_n_u32(0x7c00));
    if (vmaxvq_u32(nan) == 0)
        return f;
    uint32x4_t bits = vorrq_u32(
        vshlq_n_u32(vandq_u32(u, vdupq_n_u32(0x8000)), 16),
        vorrq_u32(vdupq_n_u32(0x7f800000),
                  vshlq_n_u32(vandq_u32(u, vdupq_n_u32(0x3ff)), 13)));
    return vbslq_f32(nan, vreinterpretq_f32_u32(bits), f);
}

/* 16 signed bytes to 4 x 4 f32. */
AI void s8_to_f32(int8x16_t v, float32x4_t *o)
{
    int16x8_t lo = vmovl_s8(vget_low_s8(v)), hi = vmovl_high_s8(v);
    o[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    o[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    o[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    o[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

/* 16 unsigned bytes to 4 x 4 f32. */
AI void u8_to_f32(uint8x16_t v, float32x4_t *o)
{
    uint16x8_t lo = vmovl_u8(vget_low_u8(v)), hi = vmovl_high_u8(v);
    o[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    o[1] = vcvtq_f32_u32(vmovl_high_u16(lo));
    o[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
    o[3] = vcvtq_f32_u32(vmovl_high_u16(hi));
}

/* The 32 codes of piece j as f32 (8 vectors of 4, element order):
 *   Q4_0: q - 8;  Q8_0: q;  MLX: the unsigned code. */
AI void piece_codes(mf_type T, const unsigned char *row, int64_t j,
                    float32x4_t c[8])
{
    switch (T) {
    case MF_TYPE_Q4_0: {
        uint8x16_t v = vld1q_u8(row + j * 18 + 2);
        int8x16_t eight = vdupq_n_s8(8);
        s8_to_f32(vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))),
                           eight), c);
        s8_to_f32(vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight),
                  c + 4);
        break;
    }
    case MF_TYPE_Q8_0: {
        const unsigned char *p = row + j * 34 + 2;
        s8_to_f32(vreinterpretq_s8_u8(vld1q_u8(p)), c);
        s8_to_f32(vreinterpretq_s8_u8(vld1q_u8(p + 16)), c + 4);
        break;
    }
    case MF_TYPE_MLX_Q4: {
        uint8x16_t v = vld1q_u8(row + j * 16);
        uint8x16_t lo = vandq_u8(v, vdupq_n_u8(15)), hi = vshrq_n_u8(v, 4);
        u8_to_f32(vzip1q_u8(lo, hi), c);
        u8_to_f32(vzip2q_u8(lo, hi), c + 4);
        break;
    }
    default: { /* MLX_Q8 */
        const unsigned char *p = row + j * 32;
        u8_to_f32(vld1q_u8(p), c);
        u8_to_f32(vld1q_u8(p + 16), c + 4);
        break;
    }
    }
}

/* ------------------------------------------------------------ dequant -- */

/* Elements [32j, 32j + 32) of row r (bytes at row) of a quantized tensor,
 * exactly as the format defines them. */
static void dequant_piece(const mf_tensor *w, int64_t r,
                          const unsigned char *row, int64_t j, float *out)
{
    float32x4_t c[8];
    piece_codes(w->type, row, j, c);
    if (w->type == MF_TYPE_Q4_0 || w->type == MF_TYPE_Q8_0) {
        const size_t bs = w->type == MF_TYPE_Q4_0 ? 18 : 34;
        float d = mf_f16_to_f32(ld16(row + (size_t)j * bs));
        for (int v = 0; v < 8; v++)
            vst1q_f32(out + 4 * v, vmulq_n_f32(c[v], d));
        return;
    }
    const size_t gi = (size_t)r * (size_t)(w->k / w->group_size) +
                      (size_t)(j * 32 / w->group_size);
    float s = mlx_param(w->scale_type, (const unsigned char *)w->scales, gi, 1);
    float b = mlx_param(w->scale_type, (const unsigned char *)w->biases, gi, 1);
    float32x4_t bv = vdupq_n_f32(b);
    for (int v = 0; v < 8; v++) /* rounded product, then the sum */
        vst1q_f32(out + 4 * v, vaddq_f32(vmulq_n_f32(c[v], s), bv));
}

/* Elements [k0, k0 + n) of a float-typed row, exact. */
static void dequant_floats(mf_type T, const unsigned char *row, int64_t k0,
                           int64_t n, float *out)
{
    int64_t k = 0;
    if (T == MF_TYPE_F32) {
        memcpy(out, row + k0 * 4, (size_t)n * 4);
        return;
    }
    const unsigned char *p = row + k0 * 2;
    for (; k + 4 <= n; k += 4) {
        uint16x4_t h = vld1_u16((const uint16_t *)(const void *)(p + k * 2));
        if (T == MF_TYPE_F16)
            vst1q_f32(out + k, f16x4_exact(h));
        else
            vst1q_f32(out + k, vreinterpretq_f32_u32(vshll_n_u16(h, 16)));
    }
    for (; k < n; k++) {
        uint16_t h = ld16(p + k * 2);
        out[k] = T == MF_TYPE_F16 ? mf_f16_to_f32(h) : u2f((uint32_t)h << 16);
    }
}

static void neon_dequant_row(const mf_tensor *w, int64_t r, float *out)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    if (is_float_type(w->type)) {
        dequant_floats(w->type, row, 0, w->k, out);
        return;
    }
    for (int64_t j = 0; j < w->k / 32; j++)
        dequant_piece(w, r, row, j, out + j * 32);
}

/* dot(row r, x) from the exact weights, products rounded before the sums:
 * the slow path for outputs the fast kernels found not finite, so Inf and
 * NaN come out as the format's weights make them (the fast kernels factor
 * the block scales out, which can turn Inf * 0 into Inf). */
static float exact_dot(const mf_tensor *w, int64_t r, const float *x)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    float buf[32];
    float32x4_t acc = vdupq_n_f32(0.0f);
    const int64_t K = w->k;
    int64_t k0 = 0;
    for (; k0 + 32 <= K; k0 += 32) {
        if (is_float_type(w->type))
            dequant_floats(w->type, row, k0, 32, buf);
        else
            dequant_piece(w, r, row, k0 / 32, buf);
        for (int v = 0; v < 8; v++)
            acc = vaddq_f32(acc, vmulq_f32(vld1q_f32(buf + 4 * v),
                                           vld1q_f32(x + k0 + 4 * v)));
    }
    float t = vaddvq_f32(acc);
    if (k0 < K) {
        dequant_floats(w->type, row, k0, K - k0, buf);
        for (int64_t k = k0; k < K; k++) {
            float p = buf[k - k0] * x[k];
            t = t + p;
        }
    }
    return t;
}

/* -------------------------------------------------------- qdot (EXACT) -- */

/* One weight row as the qdot kernels see it. */
typedef struct qrow {
    const unsigned char *p;       /* row start */
    const unsigned char *sc, *bi; /* MLX: this row's scales and biases */
    const unsigned char *pf;      /* where to prefetch: a later row */
} qrow;

/* Bytes of one 32-wide piece of a row. */
AI size_t piece_bytes(mf_type T)
{
    switch (T) {
    case MF_TYPE_F32: return 128;
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return 64;
    case MF_TYPE_Q4_0: return 18;
    case MF_TYPE_Q8_0: return 34;
    case MF_TYPE_MLX_Q4: return 16;
    default: return 32;
    }
}

/* The rows of a block are read side by side, a few bytes of each at a
 * time: each piece also prefetches the same piece of the row PF_BLOCKS row
 * blocks ahead. */
enum { PF_BLOCKS = 2 };

AI void prefetch_piece(mf_type T, const qrow *q, int64_t j)
{
    __builtin_prefetch(q->pf + (size_t)j * piece_bytes(T));
}

/* The f32 scale (and MLX bias) of piece j of a row. */
AI void piece_scale(mf_type T, mf_type st, int gsh, const qrow *q, int64_t j,
                    float *s, float *b)
{
    if (T == MF_TYPE_Q4_0 || T == MF_TYPE_Q8_0) {
        *s = f16_fast(ld16(q->p + (size_t)j * (T == MF_TYPE_Q4_0 ? 18 : 34)));
        *b = 0.0f;
        return;
    }
    size_t g = (size_t)(j >> gsh);
    *s = mlx_param(st, q->sc, g, 0);
    *b = mlx_param(st, q->bi, g, 0);
}

/* Float types: the 32 weights of piece j as f32. */
AI void piece_floats(mf_type T, const unsigned char *row, int64_t j,
                     float32x4_t w[8])
{
    for (int v = 0; v < 8; v++) {
        if (T == MF_TYPE_F32) {
            w[v] = vld1q_f32((const float *)(const void *)row + j * 32 + v * 4);
        } else {
            uint16x4_t h = vld1_u16(
                (const uint16_t *)(const void *)(row + j * 64 + v * 8));
            w[v] = T == MF_TYPE_F16
                       ? vcvt_f32_f16(vreinterpret_f16_u16(h))
                       : vreinterpretq_f32_u32(vshll_n_u16(h, 16));
        }
    }
}

/* Element k of a float-typed row (the tail past the last 32-wide piece). */
AI float elem_f32(mf_type T, const unsigned char *row, int64_t k)
{
    if (T == MF_TYPE_F32) {
        float f;
        memcpy(&f, row + k * 4, 4);
        return f;
    }
    uint16_t h = ld16(row + k * 2);
    return T == MF_TYPE_F16 ? f16_fast(h) : u2f((uint32_t)h << 16);
}

/* R weight rows x MC activation rows; writes y[m][yi + r].
 *  - Q4_0 / Q8_0: per block, b = sum(code * x), then acc += d * b: one
 *    scale multiply per block instead of one per weight.
 *  - MLX: weights scale * q + bias (fused here: one rounding instead of
 *    two; qdot's tolerance covers it), then acc += w * x.
 *  - float types: acc += w * x. */
AI void qdot_core(mf_type T, mf_type st, int gsh, const qrow *rw, int R,
                  int64_t K, const float *const *x, int MC, float *const *y,
                  int64_t yi)
{
    const int blk = T == MF_TYPE_Q4_0 || T == MF_TYPE_Q8_0;
    const int mlx = is_mlx(T);
    float32x4_t acc[4][4][2];
    const float *xp[4];
    for (int m = 0; m < MC; m++)
        xp[m] = x[m];
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MC; m++)
            acc[r][m][0] = acc[r][m][1] = vdupq_n_f32(0.0f);
    const int64_t nu = K / 32;
    for (int64_t j = 0; j < nu; j++) {
        for (int r = 0; r < R; r++) {
            const qrow *q = &rw[r];
            prefetch_piece(T, q, j);
            float32x4_t c[8];
            if (blk || mlx) {
                float s, b;
                piece_scale(T, st, gsh, q, j, &s, &b);
                piece_codes(T, q->p, j, c);
                if (mlx) {
                    float32x4_t bv = vdupq_n_f32(b);
                    for (int v = 0; v < 8; v++)
                        c[v] = vfmaq_n_f32(bv, c[v], s);
                }
                for (int m = 0; m < MC; m++) {
                    const float *xm = xp[m] + j * 32;
                    if (blk) {
                        float32x4_t b0 = vmulq_f32(c[0], vld1q_f32(xm));
                        float32x4_t b1 = vmulq_f32(c[1], vld1q_f32(xm + 4));
                        for (int v = 2; v < 8; v += 2) {
                            b0 = vfmaq_f32(b0, c[v], vld1q_f32(xm + 4 * v));
                            b1 = vfmaq_f32(b1, c[v + 1], vld1q_f32(xm + 4 * v + 4));
                        }
                        acc[r][m][0] = vfmaq_n_f32(acc[r][m][0],
                                                   vaddq_f32(b0, b1), s);
                    } else {
                        for (int v = 0; v < 8; v++)
                            acc[r][m][v & 1] = vfmaq_f32(
                                acc[r][m][v & 1], c[v], vld1q_f32(xm + 4 * v));
                    }
                }
            } else {
                piece_floats(T, q->p, j, c);
                for (int m = 0; m < MC; m++) {
                    const float *xm = xp[m] + j * 32;
                    for (int v = 0; v < 8; v++)
                        acc[r][m][v & 1] = vfmaq_f32(acc[r][m][v & 1], c[v],
                                                     vld1q_f32(xm + 4 * v));
                }
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int m = 0; m < MC; m++) {
            float t = vaddvq_f32(vaddq_f32(acc[r][m][0], acc[r][m][1]));
            for (int64_t k = nu * 32; k < K; k++) {
                float p = elem_f32(T, rw[r].p, k) * xp[m][k];
                t = t + p;
            }
            y[m][yi + r] = t;
        }
    }
}

/* Row pointers of rows r0 + i .. r0 + i + rb - 1. */
AI void setup_rows(const mf_tensor *w, int64_t ar0, int rb, int R, qrow *rw)
{
    const size_t stride = row_stride(w);
    const int mlx = is_mlx(w->type);
    const size_t gb = mlx ? (size_t)(w->k / w->group_size) *
                                param_size(w->scale_type) : 0;
    for (int r = 0; r < rb; r++) {
        size_t ar = (size_t)ar0 + (size_t)r;
        rw[r].p = (const unsigned char *)w->data + ar * stride;
        rw[r].sc = mlx ? (const unsigned char *)w->scales + ar * gb : NULL;
        rw[r].bi = mlx ? (const unsigned char *)w->biases + ar * gb : NULL;
        rw[r].pf = rw[r].p + (size_t)(PF_BLOCKS * R) * stride;
    }
}

AI void qdot_rows(mf_type T, const mf_tensor *w, int64_t r0, int64_t nr,
                  const float *const *x, int M, float *const *y)
{
    const int gsh = is_mlx(T) ? group_shift(w) : 0;
    const mf_type st = w->scale_type;
    const int64_t K = w->k;
    const int R = M == 1 ? 4 : 2;
    qrow rw[4];
    int64_t i = 0;
    while (i < nr) {
        int rb = nr - i >= R ? R : 1;
        setup_rows(w, r0 + i, rb, R, rw);
        if (M == 1) {
            if (rb == 4)
                qdot_core(T, st, gsh, rw, 4, K, x, 1, y, i);
            else
                qdot_core(T, st, gsh, rw, 1, K, x, 1, y, i);
        } else {
            for (int m0 = 0; m0 < M; m0 += 4) {
                int mc = M - m0 < 4 ? M - m0 : 4;
                const float *const *xm = x + m0;
                float *const *ym = y + m0;
                if (rb == 2) {
                    switch (mc) {
                    case 1: qdot_core(T, st, gsh, rw, 2, K, xm, 1, ym, i); break;
                    case 2: qdot_core(T, st, gsh, rw, 2, K, xm, 2, ym, i); break;
                    case 3: qdot_core(T, st, gsh, rw, 2, K, xm, 3, ym, i); break;
                    default: qdot_core(T, st, gsh, rw, 2, K, xm, 4, ym, i); break;
                    }
                } else {
                    switch (mc) {
                    case 1: qdot_core(T, st, gsh, rw, 1, K, xm, 1, ym, i); break;
                    case 2: qdot_core(T, st, gsh, rw, 1, K, xm, 2, ym, i); break;
                    case 3: qdot_core(T, st, gsh, rw, 1, K, xm, 3, ym, i); break;
                    default: qdot_core(T, st, gsh, rw, 1, K, xm, 4, ym, i); break;
                    }
                }
            }
        }
        for (int r = 0; r < rb; r++)
            for (int m = 0; m < M; m++)
                if (!isfinite(y[m][i + r]))
                    y[m][i + r] = exact_dot(w, r0 + i + r, x[m]);
        i += rb;
    }
}

#define QDOT_TYPE(name, T)                                                   \
    static void name(const mf_tensor *w, int64_t r0, int64_t nr,             \
                     const float *const *x, int M, float *const *y)          \
    {                                                                        \
        qdot_rows(T, w, r0, nr, x, M, y);                                    \
    }

QDOT_TYPE(qdot_f32, MF_TYPE_F32)
QDOT_TYPE(qdot_f16, MF_TYPE_F16)
QDOT_TYPE(qdot_bf16, MF_TYPE_BF16)
QDOT_TYPE(qdot_q4_0, MF_TYPE_Q4_0)
QDOT_TYPE(qdot_q8_0, MF_TYPE_Q8_0)
QDOT_TYPE(qdot_mlx_q4, MF_TYPE_MLX_Q4)
QDOT_TYPE(qdot_mlx_q8, MF_TYPE_MLX_Q8)

static void neon_qdot(const mf_tensor *w, int64_t r0, int64_t nr,
                      const float *const *x, int M, float *const *y)
{
    switch (w->type) {
    case MF_TYPE_F32: qdot_f32(w, r0, nr, x, M, y); break;
    case MF_TYPE_F16: qdot_f16(w, r0, nr, x, M, y); break;
    case MF_TYPE_BF16: qdot_bf16(w, r0, nr, x, M, y); break;
    case MF_TYPE_Q4_0: qdot_q4_0(w, r0, nr, x, M, y); break;
    case MF_TYPE_Q8_0: qdot_q8_0(w, r0, nr, x, M, y); break;
    case MF_TYPE_MLX_Q4: qdot_mlx_q4(w, r0, nr, x, M, y); break;
    case MF_TYPE_MLX_Q8: qdot_mlx_q8(w, r0, nr, x, M, y); break;
    default: break;
    }
}

/* ----------------------------------------------------- quantize (INT8) -- */

/* As the reference: d = absmax / 127, q = nearest-even(x / d) clamped to
 * +-127, s = d * sum(q); all-zero (or underflowing) blocks get d = s = 0,
 * blocks holding Inf or NaN get d = s = NaN and q = 0. */
static void neon_quantize_q8(const float *x, int64_t K, mf_q8blk *out)
{
    for (int64_t b = 0; b < K / 32; b++) {
        const float *xb = x + b * 32;
        mf_q8blk *o = &out[b];
        float32x4_t v[8];
        uint32x4_t mx = vdupq_n_u32(0);
        for (int i = 0; i < 8; i++) {
            v[i] = vld1q_f32(xb + 4 * i);
            mx = vmaxq_u32(mx, vandq_u32(vreinterpretq_u32_f32(v[i]),
                                         vdupq_n_u32(0x7fffffff)));
        }
        uint32_t amax = vmaxvq_u32(mx);
        if (amax >= 0x7f800000u) {
            memset(o->q, 0, sizeof o->q);
            o->d = o->s = u2f(0x7fc00000u);
            continue;
        }
        float d = u2f(amax) / 127.0f;
        o->d = d;
        if (d == 0.0f) {
            memset(o->q, 0, sizeof o->q);
            o->s = 0.0f;
            continue;
        }
        float32x4_t dv = vdupq_n_f32(d);
        int32x4_t qi[8], sum = vdupq_n_s32(0);
        for (int i = 0; i < 8; i++) {
            /* ties to even, saturating; then the clamp */
            int32x4_t t = vcvtnq_s32_f32(vdivq_f32(v[i], dv));
            t = vmaxq_s32(vminq_s32(t, vdupq_n_s32(127)), vdupq_n_s32(-127));
            qi[i] = t;
            sum = vaddq_s32(sum, t);
        }
        for (int h = 0; h < 2; h++) {
            int16x8_t a = vcombine_s16(vmovn_s32(qi[4 * h]),
                                       vmovn_s32(qi[4 * h + 1]));
            int16x8_t c = vcombine_s16(vmovn_s32(qi[4 * h + 2]),
                                       vmovn_s32(qi[4 * h + 3]));
            vst1q_s8(o->q + 16 * h, vcombine_s8(vmovn_s16(a), vmovn_s16(c)));
        }
        o->s = d * (float)vaddvq_s32(sum);
    }
}

/* ------------------------------------------------------ qdot_q8 (INT8) -- */

/* The 32 activation codes of a block in the code order of the weight type
 * (MLX 4-bit: even elements, then odd). */
AI void xcodes(mf_type T, const mf_q8blk *xb, int8x16_t *x0, int8x16_t *x1)
{
    if (T == MF_TYPE_MLX_Q4) {
        int8x16x2_t d = vld2q_s8(xb->q);
        *x0 = d.val[0];
        *x1 = d.val[1];
    } else {
        *x0 = vld1q_s8(xb->q);
        *x1 = vld1q_s8(xb->q + 16);
    }
}

/* The 32 weight codes of piece j as signed bytes, in the order xcodes
 * pairs them with (Q4_0: q - 8; MLX_Q8: q - 128). */
AI void wcodes(mf_type T, const unsigned char *row, int64_t j, int8x16_t *c0,
               int8x16_t *c1)
{
    switch (T) {
    case MF_TYPE_Q4_0: {
        uint8x16_t v = vld1q_u8(row + j * 18 + 2);
        *c0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15))),
                       vdupq_n_s8(8));
        *c1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), vdupq_n_s8(8));
        break;
    }
    case MF_TYPE_MLX_Q4: {
        uint8x16_t v = vld1q_u8(row + j * 16);
        *c0 = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(15)));
        *c1 = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
        break;
    }
    case MF_TYPE_Q8_0:
        *c0 = vld1q_s8((const int8_t *)(const void *)(row + j * 34 + 2));
        *c1 = vld1q_s8((const int8_t *)(const void *)(row + j * 34 + 18));
        break;
    default: { /* MLX_Q8 */
        const uint8x16_t h = vdupq_n_u8(0x80);
        *c0 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(row + j * 32), h));
        *c1 = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(row + j * 32 + 16), h));
        break;
    }
    }
}

/* R weight rows x MC activation rows: y[m][yi + r]. Per 32-wide piece the
 * integer dot product isum is exact (sdot; MLX_Q8 codes as q - 128 plus
 * 128 * sum(x)), then
 *   Q4_0 / Q8_0: acc += (d_w * d_x) * isum;
 *   MLX:         acc += (scale * d_x) * isum + bias * s_x,
 * the reference's terms, summed lane-wise (the bias terms apart). */
AI void q8_core(mf_type T, mf_type st, int gsh, const qrow *rw, int R,
                int64_t K, const mf_q8blk *const *xq, int MC,
                float *const *y, int64_t yi)
{
    const int mlx = is_mlx(T);
    float32x4_t acc[4][4];
    float accb[4][4];
    const mf_q8blk *xp[4];
    for (int m = 0; m < MC; m++)
        xp[m] = xq[m];
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MC; m++) {
            acc[r][m] = vdupq_n_f32(0.0f);
            accb[r][m] = 0.0f;
        }
    const int64_t nu = K / 32;
    for (int64_t j = 0; j < nu; j++) {
        int8x16_t x0[4], x1[4];
        int32x4_t xs[4];
        for (int m = 0; m < MC; m++) {
            xcodes(T, &xp[m][j], &x0[m], &x1[m]);
            if (T == MF_TYPE_MLX_Q8) { /* 128 * sum(x), lane-wise */
                const int8x16_t one = vdupq_n_s8(1);
                xs[m] = vshlq_n_s32(
                    vdotq_s32(vdotq_s32(vdupq_n_s32(0), one, x0[m]), one, x1[m]),
                    7);
            }
        }
        for (int r = 0; r < R; r++) {
            const qrow *q = &rw[r];
            prefetch_piece(T, q, j);
            float s, b;
            piece_scale(T, st, gsh, q, j, &s, &b);
            int8x16_t c0, c1;
            wcodes(T, q->p, j, &c0, &c1);
            for (int m = 0; m < MC; m++) {
                int32x4_t isum = vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, x0[m]),
                                           c1, x1[m]);
                if (T == MF_TYPE_MLX_Q8)
                    isum = vaddq_s32(isum, xs[m]);
                float dd = s * xp[m][j].d;
                acc[r][m] = vfmaq_n_f32(acc[r][m], vcvtq_f32_s32(isum), dd);
                if (mlx) {
                    float u = b * xp[m][j].s;
                    accb[r][m] = accb[r][m] + u;
                }
            }
        }
    }
    for (int r = 0; r < R; r++)
        for (int m = 0; m < MC; m++)
            y[m][yi + r] = vaddvq_f32(acc[r][m]) + accb[r][m];
}

/* dot(row r, activation blocks) as the reference sums it: the slow path for
 * outputs the fast kernel found not finite. */
static float exact_dot_q8(const mf_tensor *w, int64_t r, const mf_q8blk *xq)
{
    const unsigned char *row = (const unsigned char *)w->data +
                               (size_t)r * row_stride(w);
    const int mlx = is_mlx(w->type);
    float acc = 0.0f;
    for (int64_t j = 0; j < w->k / 32; j++) {
        int8x16_t c0, c1, x0, x1;
        switch (w->type) {
        case MF_TYPE_Q4_0: wcodes(MF_TYPE_Q4_0, row, j, &c0, &c1); break;
        case MF_TYPE_Q8_0: wcodes(MF_TYPE_Q8_0, row, j, &c0, &c1); break;
        case MF_TYPE_MLX_Q4: wcodes(MF_TYPE_MLX_Q4, row, j, &c0, &c1); break;
        default: wcodes(MF_TYPE_MLX_Q8, row, j, &c0, &c1); break;
        }
        xcodes(w->type, &xq[j], &x0, &x1);
        int32_t isum = vaddvq_s32(
            vdotq_s32(vdotq_s32(vdupq_n_s32(0), c0, x0), c1, x1));
        if (w->type == MF_TYPE_MLX_Q8)
            isum += 128 * vaddvq_s32(vdotq_s32(
                            vdotq_s32(vdupq_n_s32(0), vdupq_n_s8(1), x0),
                            vdupq_n_s8(1), x1));
        if (mlx) {
            size_t gi = (size_t)r * (size_t)(w->k / w->group_size) +
                        (size_t)(j * 32 / w->group_size);
            float s = mlx_param(w->scale_type, (const unsigned char *)w->scales, gi, 1);
            float b = mlx_param(w->scale_type, (const unsigned char *)w->biases, gi, 1);
            float sd = s * xq[j].d;
            float t = sd * (float)isum;
            float u = b * xq[j].s;
            acc = acc + (t + u);
        } else {
            size_t bb = (size_t)j * (w->type == MF_TYPE_Q4_0 ? 18 : 34);
            float dd = mf_f16_to_f32(ld16(row + bb)) * xq[j].d;
            float t = dd * (float)isum;
            acc = acc + t;
        }
    }
    return acc;
}

AI void q8_rows(mf_type T, const mf_tensor *w, int64_t r0, int64_t nr,
                const mf_q8blk *const *xq, int M, float *const *y)
{
    const int gsh = is_mlx(T) ? group_shift(w) : 0;
    const mf_type st = w->scale_type;
    const int64_t K = w->k;
    const int R = M == 1 ? 4 : 2;
    qrow rw[4];
    int64_t i = 0;
    while (i < nr) {
        int rb = nr - i >= R ? R : 1;
        setup_rows(w, r0 + i, rb, R, rw);
        if (M == 1) {
            if (rb == 4)
                q8_core(T, st, gsh, rw, 4, K, xq, 1, y, i);
            else
                q8_core(T, st, gsh, rw, 1, K, xq, 1, y, i);
        } else {
            for (int m0 = 0; m0 < M; m0 += 4) {
                int mc = M - m0 < 4 ? M - m0 : 4;
                const mf_q8blk *const *xm = xq + m0;
                float *const *ym = y + m0;
                if (rb == 2) {
                    switch (mc) {
                    case 1: q8_core(T, st, gsh, rw, 2, K, xm, 1, ym, i); break;
                    case 2: q8_core(T, st, gsh, rw, 2, K, xm, 2, ym, i); break;
                    case 3: q8_core(T, st, gsh, rw, 2, K, xm, 3, ym, i); break;
                    default: q8_core(T, st, gsh, rw, 2, K, xm, 4, ym, i); break;
                    }
                } else {
                    switch (mc) {
                    case 1: q8_core(T, st, gsh, rw, 1, K, xm, 1, ym, i); break;
                    case 2: q8_core(T, st, gsh, rw, 1, K, xm, 2, ym, i); break;
                    case 3: q8_core(T, st, gsh, rw, 1, K, xm, 3, ym, i); break;
                    default: q8_core(T, st, gsh, rw, 1, K, xm, 4, ym, i); break;
                    }
                }
            }
        }
        for (int r = 0; r < rb; r++)
            for (int m = 0; m < M; m++)
                if (!isfinite(y[m][i + r]))
                    y[m][i + r] = exact_dot_q8(w, r0 + i + r, xq[m]);
        i += rb;
    }
}

#define Q8_TYPE(name, T)                                                     \
    static void name(const mf_tensor *w, int64_t r0, int64_t nr,             \
                     const mf_q8blk *const *xq, int M, float *const *y)      \
    {                                                                        \
        q8_rows(T, w, r0, nr, xq, M, y);                                     \
    }

Q8_TYPE(q8_q4_0, MF_TYPE_Q4_0)
Q8_TYPE(q8_q8_0, MF_TYPE_Q8_0)
Q8_TYPE(q8_mlx_q4, MF_TYPE_MLX_Q4)
Q8_TYPE(q8_mlx_q8, MF_TYPE_MLX_Q8)

static void neon_qdot_q8(const mf_tensor *w, int64_t r0, int64_t nr,
                         const mf_q8blk *const *xq, int M, float *const *y)
{
    switch (w->type) {
    case MF_TYPE_Q4_0: q8_q4_0(w, r0, nr, xq, M, y); break;
    case MF_TYPE_Q8_0: q8_q8_0(w, r0, nr, xq, M, y); break;
    case MF_TYPE_MLX_Q4: q8_mlx_q4(w, r0, nr, xq, M, y); break;
    case MF_TYPE_MLX_Q8: q8_mlx_q8(w, r0, nr, xq, M, y); break;
    default: break;
    }
}

void mf_neon_init_quant(mf_kernels *k)
{
    k->dequant_row = neon_dequant_row;
    k->qdot = neon_qdot;
    k->quantize_q8 = neon_quantize_q8;
    k->qdot_q8 = neon_qdot_q8;
}

#endif
