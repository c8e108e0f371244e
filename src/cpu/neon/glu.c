/* neon GLU kernel: elements [n0, n1) of one row.
 *
 * f32 SEPARATE input to f32 output runs straight through one loop per kind.
 * Every other layout and type goes in blocks of GLU_BLOCK elements:
 * gate and up widened (and de-interleaved) into f32 stack buffers, the same
 * per-kind loop, then the output narrowed from a stack buffer. The math is
 * vmath.h's; arguments are formed with the reference's f32 operations
 * (actf.h), so only the polynomial factors differ from it. A tail of fewer
 * than 4 elements goes through a zero-padded 4-lane buffer; conversions of
 * tails are scalar (mf_f16_to_f32 ...), bit-identical to the vector ones.
 * Loads go through byte pointers: no alignment needed. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "neon.h"
#include "vmath.h"

#if defined(__aarch64__)

#include <string.h>

#define GLU_BLOCK 256

typedef struct glu_par {
    float limit, alpha; /* SWIGLU_OAI */
} glu_par;

static inline float32x4_t ld(const void *p)
{
    return vreinterpretq_f32_u8(vld1q_u8((const uint8_t *)p));
}

static inline void st(void *p, float32x4_t v)
{
    vst1q_u8((uint8_t *)p, vreinterpretq_u8_f32(v));
}

static inline __attribute__((always_inline)) float32x4_t
glu_one(mf_glu_kind kind, const glu_par *p, float32x4_t g, float32x4_t u)
{
    switch (kind) {
    case MF_GLU_GEGLU_TANH: return vmulq_f32(mfq_gelu_tanh(g), u);
    case MF_GLU_GEGLU_ERF: return vmulq_f32(mfq_gelu_erf(g), u);
    case MF_GLU_SWIGLU_OAI: {
        /* FMIN/FMAX return NaN for a NaN operand */
        const float32x4_t lim = vdupq_n_f32(p->limit);
        g = vminq_f32(g, lim);
        u = vmaxq_f32(vminq_f32(u, lim), vnegq_f32(lim));
        float32x4_t gf = vmulq_f32(g, mfq_sigmoid(vmulq_n_f32(g, p->alpha)));
        return vmulq_f32(vaddq_f32(u, vdupq_n_f32(1.0f)), gf);
    }
    default: return vmulq_f32(mfq_silu(g), u);
    }
}

static inline __attribute__((always_inline)) void
glu_run(mf_glu_kind kind, const glu_par *p, int64_t n, const float *g,
        const float *u, float *out)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t a = glu_one(kind, p, ld(g + i), ld(u + i));
        float32x4_t b = glu_one(kind, p, ld(g + i + 4), ld(u + i + 4));
        st(out + i, a);
        st(out + i + 4, b);
    }
    for (; i + 4 <= n; i += 4)
        st(out + i, glu_one(kind, p, ld(g + i), ld(u + i)));
    if (i < n) {
        float gl[4] = {0}, ul[4] = {0}, ol[4];
        const size_t r = (size_t)(n - i);
        memcpy(gl, g + i, r * sizeof(float));
        memcpy(ul, u + i, r * sizeof(float));
        vst1q_f32(ol, glu_one(kind, p, vld1q_f32(gl), vld1q_f32(ul)));
        memcpy(out + i, ol, r * sizeof(float));
    }
}

static void glu_swiglu(const glu_par *p, int64_t n, const float *g,
                       const float *u, float *out)
{
    glu_run(MF_GLU_SWIGLU, p, n, g, u, out);
}

static void glu_gelu_tanh(const glu_par *p, int64_t n, const float *g,
                          const float *u, float *out)
{
    glu_run(MF_GLU_GEGLU_TANH, p, n, g, u, out);
}

static void glu_gelu_erf(const glu_par *p, int64_t n, const float *g,
                         const float *u, float *out)
{
    glu_run(MF_GLU_GEGLU_ERF, p, n, g, u, out);
}

static void glu_oai(const glu_par *p, int64_t n, const float *g,
                    const float *u, float *out)
{
    glu_run(MF_GLU_SWIGLU_OAI, p, n, g, u, out);
}

typedef void (*glu_fn)(const glu_par *p, int64_t n, const float *g,
                       const float *u, float *out);

static const glu_fn glu_fns[MF_GLU_KIND_COUNT_] = {
    [MF_GLU_SWIGLU] = glu_swiglu, [MF_GLU_GEGLU_TANH] = glu_gelu_tanh,
    [MF_GLU_GEGLU_ERF] = glu_gelu_erf, [MF_GLU_SWIGLU_OAI] = glu_oai};

/* Element e of an array of type t, widened (scalar). */
static float get1(mf_type t, const char *s, int64_t e)
{
    if (t == MF_TYPE_F32) {
        float f;
        memcpy(&f, s + 4 * e, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, s + 2 * e, 2);
    return t == MF_TYPE_F16 ? mf_f16_to_f32(h) : mf_bf16_to_f32(h);
}

/* 4 halves of type t (F16 or BF16) widened. */
static inline float32x4_t widen4(mf_type t, uint16x4_t h)
{
    if (t == MF_TYPE_F16)
        return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* n (<= GLU_BLOCK) contiguous elements of type t from src to f32. */
static void widen(mf_type t, const void *src, int64_t n, float *dst)
{
    const char *s = src;
    int64_t i = 0;
    if (t == MF_TYPE_F32) {
        memcpy(dst, s, (size_t)n * sizeof(float));
        return;
    }
    for (; i + 4 <= n; i += 4)
        vst1q_f32(dst + i, widen4(t, vreinterpret_u16_u8(vld1_u8((const uint8_t *)s + 2 * i))));
    for (; i < n; i++)
        dst[i] = get1(t, s, i);
}

/* n (<= GLU_BLOCK) interleaved pairs g u g u ... of type t from src. */
static void widen_pairs(mf_type t, const void *src, int64_t n, float *g,
                        float *u)
{
    const uint8_t *s = src;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        if (t == MF_TYPE_F32) {
            float32x4_t a = ld(s + 8 * i), b = ld(s + 8 * i + 16);
            vst1q_f32(g + i, vuzp1q_f32(a, b));
            vst1q_f32(u + i, vuzp2q_f32(a, b));
        } else {
            uint16x8_t w = vreinterpretq_u16_u8(vld1q_u8(s + 4 * i));
            vst1q_f32(g + i, widen4(t, vget_low_u16(vuzp1q_u16(w, w))));
            vst1q_f32(u + i, widen4(t, vget_low_u16(vuzp2q_u16(w, w))));
        }
    }
    for (; i < n; i++) {
        g[i] = get1(t, (const char *)s, 2 * i);
        u[i] = get1(t, (const char *)s, 2 * i + 1);
    }
}

/* n (<= GLU_BLOCK) f32 values to type t (F16 or BF16) at dst. */
static void narrow(mf_type t, const float *src, int64_t n, void *dst)
{
    char *d = dst;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(src + i);
        if (t == MF_TYPE_F16)
            mfq_store_f16(d + 2 * i, v);
        else
            mfq_store_bf16(d + 2 * i, v);
    }
    for (; i < n; i++) {
        uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(src[i]) : mf_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

static void glu_neon(const mf_glu_desc *d, int64_t n0, int64_t n1,
                     const void *g, const void *u, void *out)
{
    const glu_par p = {.limit = d->limit != 0.0f ? d->limit : 7.0f,
                       .alpha = d->alpha != 0.0f ? d->alpha : 1.702f};
    const glu_fn fn = glu_fns[d->kind];
    const mf_type it = d->in_type, ot = d->out_type;
    const size_t isz = it == MF_TYPE_F32 ? 4 : 2, osz = ot == MF_TYPE_F32 ? 4 : 2;
    if (it == MF_TYPE_F32 && ot == MF_TYPE_F32 && d->layout != MF_GLU_INTERLEAVED) {
        fn(&p, n1 - n0, (const float *)g + n0, (const float *)u + n0,
           (float *)out + n0);
        return;
    }
    float gb[GLU_BLOCK], ub[GLU_BLOCK], ob[GLU_BLOCK];
    for (int64_t b = n0; b < n1; b += GLU_BLOCK) {
        const int64_t nb = n1 - b < GLU_BLOCK ? n1 - b : GLU_BLOCK;
        if (d->layout == MF_GLU_INTERLEAVED) {
            widen_pairs(it, (const char *)g + 2 * isz * (size_t)b, nb, gb, ub);
        } else {
            widen(it, (const char *)g + isz * (size_t)b, nb, gb);
            widen(it, (const char *)u + isz * (size_t)b, nb, ub);
        }
        float *o = ot == MF_TYPE_F32 ? (float *)out + b : ob;
        fn(&p, nb, gb, ub, o);
        if (ot != MF_TYPE_F32)
            narrow(ot, ob, nb, (char *)out + osz * (size_t)b);
    }
}

void mf_neon_init_glu(mf_kernels *k)
{
    k->glu = glu_neon;
}

#endif
