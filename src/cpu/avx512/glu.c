/* avx512 GLU kernel: elements [n0, n1) of one row.
 *
 * f32 SEPARATE input to f32 output runs straight through one loop per kind.
 * Every other layout and type goes in blocks of GLU_BLOCK elements:
 * gate and up widened (and de-interleaved) into f32 stack buffers, the same
 * per-kind loop, then the output narrowed from a stack buffer. The math is
 * vmath.h's; arguments are formed with the reference's f32 operations
 * (actf.h), so only the polynomial factors differ from it. Tails use masked
 * loads and stores. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "avx512.h"
#include "vmath.h"

#define GLU_BLOCK 256

typedef struct glu_par {
    __m512 limit, nlimit, alpha; /* SWIGLU_OAI */
} glu_par;

static inline __attribute__((always_inline)) __m512
glu_one(mf_glu_kind kind, const glu_par *p, __m512 g, __m512 u)
{
    switch (kind) {
    case MF_GLU_GEGLU_TANH: return _mm512_mul_ps(mf512_gelu_tanh(g), u);
    case MF_GLU_GEGLU_ERF: return _mm512_mul_ps(mf512_gelu_erf(g), u);
    case MF_GLU_SWIGLU_OAI: {
        /* constants first: a NaN passes through min/max */
        g = _mm512_min_ps(p->limit, g);
        u = _mm512_max_ps(p->nlimit, _mm512_min_ps(p->limit, u));
        __m512 gf = _mm512_mul_ps(g, mf512_sigmoid(_mm512_mul_ps(p->alpha, g)));
        return _mm512_mul_ps(_mm512_add_ps(u, _mm512_set1_ps(1.0f)), gf);
    }
    default: return _mm512_mul_ps(mf512_silu(g), u);
    }
}

/* out[i] = glu(g[i], u[i]) for i < n, f32 arrays; four vectors per step
 * (independent chains for the out-of-order core), then one per step. */
static inline __attribute__((always_inline)) void
glu_run(mf_glu_kind kind, const glu_par *p, int64_t n, const float *g,
        const float *u, float *out)
{
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a = glu_one(kind, p, _mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i));
        __m512 b = glu_one(kind, p, _mm512_loadu_ps(g + i + 16),
                           _mm512_loadu_ps(u + i + 16));
        __m512 c = glu_one(kind, p, _mm512_loadu_ps(g + i + 32),
                           _mm512_loadu_ps(u + i + 32));
        __m512 e = glu_one(kind, p, _mm512_loadu_ps(g + i + 48),
                           _mm512_loadu_ps(u + i + 48));
        _mm512_storeu_ps(out + i, a);
        _mm512_storeu_ps(out + i + 16, b);
        _mm512_storeu_ps(out + i + 32, c);
        _mm512_storeu_ps(out + i + 48, e);
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, glu_one(kind, p, _mm512_loadu_ps(g + i),
                                          _mm512_loadu_ps(u + i)));
    if (i < n) {
        const __mmask16 m = mf512_head(n - i);
        _mm512_mask_storeu_ps(out + i, m,
                              glu_one(kind, p, _mm512_maskz_loadu_ps(m, g + i),
                                      _mm512_maskz_loadu_ps(m, u + i)));
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

/* 16 values of type t (F16 or BF16) at p, or the first m of them. */
static inline __m512 load_half(mf_type t, const char *p)
{
    return t == MF_TYPE_F16 ? mf512_load_f16(p) : mf512_load_bf16(p);
}

static inline __m512 load_half_m(mf_type t, const char *p, __mmask16 m)
{
    return t == MF_TYPE_F16 ? mf512_load_f16_m(p, m) : mf512_load_bf16_m(p, m);
}

/* n (<= GLU_BLOCK) contiguous elements of type t from src to f32. */
static void widen(mf_type t, const void *src, int64_t n, float *dst)
{
    const char *s = src;
    int64_t i = 0;
    if (t == MF_TYPE_F32) {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_loadu_ps(s + 4 * i));
        if (i < n)
            _mm512_storeu_ps(dst + i, _mm512_maskz_loadu_ps(mf512_head(n - i), s + 4 * i));
        return;
    }
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, load_half(t, s + 2 * i));
    if (i < n)
        _mm512_storeu_ps(dst + i, load_half_m(t, s + 2 * i, mf512_head(n - i)));
}

/* 16 interleaved pairs g u g u ... of type t at s (or the first r pairs:
 * masked loads). */
static inline void pairs16(mf_type t, const char *s, int64_t r, __m512 *g,
                           __m512 *u)
{
    if (t == MF_TYPE_F32) {
        const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16,
                                            14, 12, 10, 8, 6, 4, 2, 0);
        const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
        __m512 a, b;
        if (r >= 16) {
            a = _mm512_loadu_ps(s);
            b = _mm512_loadu_ps(s + 64);
        } else {
            a = _mm512_maskz_loadu_ps(mf512_head(2 * r), s);
            b = _mm512_maskz_loadu_ps(r > 8 ? mf512_head(2 * r - 16) : 0, s + 64);
        }
        *g = _mm512_permutex2var_ps(a, ev, b);
        *u = _mm512_permutex2var_ps(a, od, b);
        return;
    }
    /* 32 halves = 16 dwords, each holding g (low) and u (high) */
    __m512i w = r >= 16 ? _mm512_loadu_si512(s)
                        : _mm512_maskz_loadu_epi32(mf512_head(r), s);
    if (t == MF_TYPE_BF16) {
        *g = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
        *u = _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u)));
    } else {
        *g = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(w));
        *u = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(w, 16)));
    }
}

/* n (<= GLU_BLOCK) interleaved pairs of type t from src. */
static void widen_pairs(mf_type t, const void *src, int64_t n, float *g,
                        float *u)
{
    const char *s = src;
    const size_t pair = t == MF_TYPE_F32 ? 8 : 4;
    for (int64_t i = 0; i < n; i += 16) {
        __m512 gv, uv;
        pairs16(t, s + pair * (size_t)i, n - i, &gv, &uv);
        _mm512_storeu_ps(g + i, gv);
        _mm512_storeu_ps(u + i, uv);
    }
}

/* n (<= GLU_BLOCK) f32 values to type t (F16 or BF16) at dst. */
static void narrow(mf_type t, const float *src, int64_t n, void *dst)
{
    char *d = dst;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(src + i);
        if (t == MF_TYPE_F16)
            mf512_store_f16(d + 2 * i, v);
        else
            mf512_store_bf16(d + 2 * i, v);
    }
    if (i < n) {
        const __mmask16 m = mf512_head(n - i);
        __m512 v = _mm512_loadu_ps(src + i);
        if (t == MF_TYPE_F16)
            mf512_store_f16_m(d + 2 * i, m, v);
        else
            mf512_store_bf16_m(d + 2 * i, m, v);
    }
}

static void glu_avx512(const mf_glu_desc *d, int64_t n0, int64_t n1,
                       const void *g, const void *u, void *out)
{
    const float limit = d->limit != 0.0f ? d->limit : 7.0f;
    const float alpha = d->alpha != 0.0f ? d->alpha : 1.702f;
    const glu_par p = {.limit = _mm512_set1_ps(limit),
                       .nlimit = _mm512_set1_ps(-limit),
                       .alpha = _mm512_set1_ps(alpha)};
    const glu_fn fn = glu_fns[d->kind];
    const mf_type it = d->in_type, ot = d->out_type;
    const size_t isz = it == MF_TYPE_F32 ? 4 : 2, osz = ot == MF_TYPE_F32 ? 4 : 2;
    if (it == MF_TYPE_F32 && ot == MF_TYPE_F32 && d->layout != MF_GLU_INTERLEAVED) {
        fn(&p, n1 - n0, (const float *)g + n0, (const float *)u + n0,
           (float *)out + n0);
        return;
    }
    _Alignas(64) float gb[GLU_BLOCK], ub[GLU_BLOCK], ob[GLU_BLOCK];
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

void mf_avx512_init_glu(mf_kernels *k)
{
    k->glu = glu_avx512;
}
