/* avx2 GLU kernel: elements [n0, n1) of one row.
 *
 * f32 SEPARATE input to f32 output runs straight through one loop per kind.
 * Every other layout and type goes in blocks of GLU_BLOCK elements:
 * gate and up widened (and de-interleaved) into f32 stack buffers, the same
 * per-kind loop, then the output narrowed from a stack buffer. The math is
 * vmath.h's; arguments are formed with the reference's f32 operations
 * (actf.h), so only the polynomial factors differ from it. A tail of fewer
 * than 8 elements goes through a zero-padded 8-lane buffer; conversions of
 * tails are scalar (mf_f16_to_f32 ...), bit-identical to the vector ones. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <string.h>

#include "avx2.h"
#include "vmath.h"

#define GLU_BLOCK 256

typedef struct glu_par {
    __m256 limit, nlimit, alpha; /* SWIGLU_OAI */
} glu_par;

static inline __attribute__((always_inline)) __m256
glu_one(mf_glu_kind kind, const glu_par *p, __m256 g, __m256 u)
{
    switch (kind) {
    case MF_GLU_GEGLU_TANH: return _mm256_mul_ps(mf256_gelu_tanh(g), u);
    case MF_GLU_GEGLU_ERF: return _mm256_mul_ps(mf256_gelu_erf(g), u);
    case MF_GLU_SWIGLU_OAI: {
        /* constants first: a NaN passes through min/max */
        g = _mm256_min_ps(p->limit, g);
        u = _mm256_max_ps(p->nlimit, _mm256_min_ps(p->limit, u));
        __m256 gf = _mm256_mul_ps(g, mf256_sigmoid(_mm256_mul_ps(p->alpha, g)));
        return _mm256_mul_ps(_mm256_add_ps(u, _mm256_set1_ps(1.0f)), gf);
    }
    default: return _mm256_mul_ps(mf256_silu(g), u);
    }
}

static inline __attribute__((always_inline)) void
glu_run(mf_glu_kind kind, const glu_par *p, int64_t n, const float *g,
        const float *u, float *out)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = glu_one(kind, p, _mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i));
        __m256 b = glu_one(kind, p, _mm256_loadu_ps(g + i + 8),
                           _mm256_loadu_ps(u + i + 8));
        _mm256_storeu_ps(out + i, a);
        _mm256_storeu_ps(out + i + 8, b);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, glu_one(kind, p, _mm256_loadu_ps(g + i),
                                          _mm256_loadu_ps(u + i)));
    if (i < n) {
        float gl[8] = {0}, ul[8] = {0}, ol[8];
        const size_t r = (size_t)(n - i);
        memcpy(gl, g + i, r * sizeof(float));
        memcpy(ul, u + i, r * sizeof(float));
        _mm256_storeu_ps(ol, glu_one(kind, p, _mm256_loadu_ps(gl), _mm256_loadu_ps(ul)));
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

/* n (<= GLU_BLOCK) contiguous elements of type t from src to f32. */
static void widen(mf_type t, const void *src, int64_t n, float *dst)
{
    const char *s = src;
    int64_t i = 0;
    if (t == MF_TYPE_F32) {
        memcpy(dst, s, (size_t)n * sizeof(float));
        return;
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, t == MF_TYPE_F16 ? mf256_load_f16(s + 2 * i)
                                                   : mf256_load_bf16(s + 2 * i));
    for (; i < n; i++)
        dst[i] = get1(t, s, i);
}

/* n (<= GLU_BLOCK) interleaved pairs g u g u ... of type t from src. */
static void widen_pairs(mf_type t, const void *src, int64_t n, float *g,
                        float *u)
{
    const char *s = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv, uv;
        if (t == MF_TYPE_F32) {
            __m256 a = _mm256_loadu_ps((const float *)(s + 8 * i));
            __m256 b = _mm256_loadu_ps((const float *)(s + 8 * i + 32));
            /* [a0 a2 b0 b2 | a4 a6 b4 b6] -> lane order 0 2 1 3 */
            gv = _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
            uv = _mm256_castpd_ps(_mm256_permute4x64_pd(
                _mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
        } else {
            /* 16 halves = 8 dwords, each holding g (low) and u (high) */
            __m256i w = _mm256_loadu_si256((const __m256i *)(s + 4 * i));
            if (t == MF_TYPE_BF16) {
                gv = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
                uv = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xffff0000u)));
            } else {
                __m256i lo = _mm256_and_si256(w, _mm256_set1_epi32(0xffff));
                __m256i hi = _mm256_srli_epi32(w, 16);
                /* pack each to 8 u16 (values < 2^16: exact) */
                __m256i pl = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, lo), 0x08);
                __m256i ph = _mm256_permute4x64_epi64(_mm256_packus_epi32(hi, hi), 0x08);
                gv = _mm256_cvtph_ps(_mm256_castsi256_si128(pl));
                uv = _mm256_cvtph_ps(_mm256_castsi256_si128(ph));
            }
        }
        _mm256_storeu_ps(g + i, gv);
        _mm256_storeu_ps(u + i, uv);
    }
    for (; i < n; i++) {
        g[i] = get1(t, s, 2 * i);
        u[i] = get1(t, s, 2 * i + 1);
    }
}

/* n (<= GLU_BLOCK) f32 values to type t (F16 or BF16) at dst. */
static void narrow(mf_type t, const float *src, int64_t n, void *dst)
{
    char *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        if (t == MF_TYPE_F16)
            mf256_store_f16(d + 2 * i, v);
        else
            mf256_store_bf16(d + 2 * i, v);
    }
    for (; i < n; i++) {
        uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(src[i]) : mf_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

static void glu_avx2(const mf_glu_desc *d, int64_t n0, int64_t n1,
                     const void *g, const void *u, void *out)
{
    const float limit = d->limit != 0.0f ? d->limit : 7.0f;
    const float alpha = d->alpha != 0.0f ? d->alpha : 1.702f;
    const glu_par p = {.limit = _mm256_set1_ps(limit),
                       .nlimit = _mm256_set1_ps(-limit),
                       .alpha = _mm256_set1_ps(alpha)};
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

void mf_avx2_init_glu(mf_kernels *k)
{
    k->glu = glu_avx2;
}
