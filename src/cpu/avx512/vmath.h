/* Vector math for the avx512 kernel set: static inline functions on 16 f32
 * lanes, for files of this directory only (compiled with the avx512 flags).
 *
 * Accuracy against the correctly rounded result, measured over a sweep of
 * every 61st f32 bit pattern against double-precision libm:
 *   mf512_exp       <= 2 ulp on [-87.3, 88.7]; below, the exact subnormal
 *                   or zero result (scalef rounds once), within 1 unit of
 *                   the smallest subnormal
 *   mf512_sigmoid   <= 3 ulp (both tails: no 1 - x cancellation)
 *   mf512_silu      <= 5 ulp for x >= -88.7; below, -0 where the value
 *                   is under 2.7e-37 (see its comment)
 *   mf512_tanh      <= 3 ulp
 *   mf512_erf       <= 3 ulp
 *   mf512_erfc      <= 6 ulp where erfc(x) >= 2^-126, absolute 2^-149 below
 * Edges: NaN in gives NaN out in every function; exp(+Inf) = +Inf,
 * exp(-Inf) = 0, exp(x > 88.73) = +Inf; sigmoid(-Inf) = 0, sigmoid(+Inf) = 1;
 * tanh(+-Inf) = +-1; erf(+-Inf) = +-1; erfc(-Inf) = 2, erfc(+Inf) = 0.
 * silu(+Inf) = +Inf and silu(-Inf) = NaN, as x * sigmoid(x) evaluates in C;
 * the GELUs are x * (factor) with IEEE products, likewise.
 *
 * Conversions: f16 uses the hardware conversion (round to nearest even,
 * NaN kept quiet with its payload's top bits); bf16 rounds to nearest even
 * in integer arithmetic, NaN made quiet. Both are bit-identical to
 * mf_f32_to_f16 / mf_f32_to_bf16.
 *
 * min/max keep the constant as the FIRST operand: x86 returns the second
 * operand when either is NaN, so a NaN input passes through every clamp. */
#ifndef MF_CPU_AVX512_VMATH_H
#define MF_CPU_AVX512_VMATH_H

#include <immintrin.h>
#include <stdint.h>

#define MF512_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* exp(x) for x <= 89 or NaN (no upper clamp). Range reduction
 * x = n ln2 + r, |r| <= ln2/2, with a two-part ln2 (the high part has 16
 * significant bits, so n * ln2_hi is exact); degree-6 polynomial fitted on
 * [-ln2/2, ln2/2] (error 2e-9); scalef applies 2^n with one rounding, so
 * subnormal results are correctly produced. */
static inline __m512 mf512_exp_le89(__m512 x)
{
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(
        _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), MF512_RNE);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417232e-6f), r);
    __m512 p = _mm512_set1_ps(1.3941108e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3751259e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1666351e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666415e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* exp(x), any x: the clamp to [-104, 89] keeps the reduction finite; the
 * results there are already 0 and +Inf. */
static inline __m512 mf512_exp(__m512 x)
{
    return mf512_exp_le89(_mm512_min_ps(_mm512_set1_ps(89.0f), x));
}

/* 1 / d for any normal d (or NaN): rcp14 and one Newton step (<= 1 ulp). */
static inline __m512 mf512_recip(__m512 d)
{
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

/* sigmoid(x) = 1 / (1 + exp(-x)). With e = exp(-|x|) in (0, 1]:
 * x >= 0: 1 / (1 + e); x < 0: e / (1 + e). */
static inline __m512 mf512_sigmoid(__m512 x)
{
    __m512 e = mf512_exp_le89(_mm512_or_ps(x, _mm512_set1_ps(-0.0f)));
    __m512 r = mf512_recip(_mm512_add_ps(e, _mm512_set1_ps(1.0f)));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_mul_ps(r, neg, r, e);
}

/* silu(x) = x / (1 + exp(-x)), the fast form (SwiGLU's hot loop): fewer
 * multiplies than x * sigmoid(x). exp(-x) on x clamped to [-104, 104]: n by
 * the round-to-nearest magic constant, two-part ln2, degree-5 polynomial
 * (fitted on [-ln2/2, ln2/2], error 8e-8), scalef. For x < -88.7,
 * exp(-x) = +Inf and the result is -0 where x e^x is below 2.7e-37;
 * silu(-Inf) = -Inf / Inf = NaN, silu(+Inf) = +Inf. */
static inline __m512 mf512_silu(__m512 x)
{
    /* sign(x) min(|x|, 104) in one VRANGEPS (a NaN x stays NaN) */
    __m512 c = _mm512_range_ps(x, _mm512_set1_ps(104.0f), 0x02);
    const __m512 magic = _mm512_set1_ps(12582912.0f); /* 1.5 * 2^23 */
    __m512 n = _mm512_sub_ps(
        _mm512_fmadd_ps(c, _mm512_set1_ps(-1.44269504088896341f), magic), magic);
    /* r = -c - n ln2 is the reduced argument; q = -r */
    __m512 q = _mm512_fmadd_ps(n, _mm512_set1_ps(0.693145751953125f), c);
    q = _mm512_fmadd_ps(n, _mm512_set1_ps(1.428606820309417232e-6f), q);
    __m512 p = _mm512_set1_ps(-8.369148708879948e-3f);
    p = _mm512_fmadd_ps(p, q, _mm512_set1_ps(4.1917506605386734e-2f));
    p = _mm512_fmadd_ps(p, q, _mm512_set1_ps(-0.16666504740715027f));
    p = _mm512_fmadd_ps(p, q, _mm512_set1_ps(0.49998870491981506f));
    p = _mm512_fmadd_ps(p, q, _mm512_set1_ps(-1.0f));
    p = _mm512_fmadd_ps(p, q, _mm512_set1_ps(1.0000001192092896f));
    __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_div_ps(x, _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
}

/* tanh(x) = sign(x) tanh(|x|): |x| < 0.625: |x| + |x|^3 P(x^2) (Cephes
 * tanhf); otherwise (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.29]. */
static inline __m512 mf512_tanh(__m512 x)
{
    __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 ax = _mm512_andnot_ps(sign, x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), ax, ax);
    __m512 e = mf512_exp_le89(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 big = _mm512_mul_ps(_mm512_sub_ps(one, e),
                               mf512_recip(_mm512_add_ps(one, e)));
    __mmask16 m = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm512_or_ps(_mm512_mask_blend_ps(m, big, small),
                        _mm512_and_ps(x, sign));
}

/* erfc(a) for a = |x| >= 0.5 (any a >= 0 or NaN computes): erfc(a) =
 * exp(-a^2) g(t), t = 1 / (1 + a/2), g a degree-9 polynomial fitted on
 * a in [0.5, 10.1] (relative error 1.2e-8 with these f32 coefficients);
 * a^2 is carried as s + lo (lo exact by FMA) and exp(-a^2) =
 * exp(-s) (1 - lo). a is clamped to 10.1, where erfc already rounds to 0. */
static inline __m512 mf512_erfc_tail(__m512 a)
{
    a = _mm512_min_ps(_mm512_set1_ps(10.1f), a);
    __m512 t = mf512_recip(_mm512_fmadd_ps(a, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
    __m512 g = _mm512_set1_ps(-7.728861272e-02f);
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(3.634350896e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(-6.333355904e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(4.296478331e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(-1.232236400e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(2.417527884e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(2.331139892e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(2.839283049e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(2.819534838e-01f));
    g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(4.770354735e-06f));
    __m512 s = _mm512_mul_ps(a, a);
    __m512 lo = _mm512_fmsub_ps(a, a, s);
    __m512 e = mf512_exp_le89(_mm512_sub_ps(_mm512_setzero_ps(), s));
    e = _mm512_fnmadd_ps(e, lo, e);
    return _mm512_mul_ps(e, g);
}

/* x P(x^2), the small-argument erf. */
static inline __m512 mf512_erf_small(__m512 x)
{
    __m512 z = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(4.719082732e-03f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-2.675773203e-02f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.128283143e-01f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.761260808e-01f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.128379107e+00f));
    return _mm512_mul_ps(x, p);
}

/* erf(x): |x| < 0.5: x P(x^2) (degree 4, fitted, error 1.5e-9);
 * otherwise sign(x) (1 - erfc(|x|)), erfc(|x|) <= 0.48. */
static inline __m512 mf512_erf(__m512 x)
{
    __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 ax = _mm512_andnot_ps(sign, x);
    __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f), mf512_erfc_tail(ax));
    big = _mm512_or_ps(big, _mm512_and_ps(x, sign));
    __mmask16 m = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(m, big, mf512_erf_small(x));
}

/* erfc(x): |x| < 0.5: 1 - x P(x^2); x >= 0.5: the tail form;
 * x <= -0.5: 2 - erfc(-x). */
static inline __m512 mf512_erfc(__m512 x)
{
    __m512 ax = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x);
    __m512 tail = mf512_erfc_tail(ax);
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    tail = _mm512_mask_sub_ps(tail, neg, _mm512_set1_ps(2.0f), tail);
    __m512 small = _mm512_sub_ps(_mm512_set1_ps(1.0f), mf512_erf_small(x));
    __mmask16 m = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
    return _mm512_mask_blend_ps(m, tail, small);
}

/* GELU (erf form): x * (0.5 * erfc(-x / sqrt 2)) — the erfc form has no
 * cancellation for negative x. The argument is the f32 product
 * x * -0x1.6a09e6p-1, as in the reference. */
static inline __m512 mf512_gelu_erf(__m512 x)
{
    __m512 c = mf512_erfc(_mm512_mul_ps(x, _mm512_set1_ps(-0.70710678118654752f)));
    return _mm512_mul_ps(x, _mm512_mul_ps(_mm512_set1_ps(0.5f), c));
}

/* GELU (tanh form): 0.5 x (1 + tanh(y')) = x * sigmoid(y), with
 * y = x * (c1 + c2 * (x * x)), c1 = 2 sqrt(2/pi), c2 = c1 * 0.044715,
 * computed with separate multiplies and adds in this order (no FMA) so it
 * rounds exactly as the reference does. */
static inline __m512 mf512_gelu_tanh(__m512 x)
{
    __m512 t = _mm512_mul_ps(x, x);
    t = _mm512_mul_ps(t, _mm512_set1_ps(0.0713548162726f));
    t = _mm512_add_ps(t, _mm512_set1_ps(1.5957691216057308f));
    return _mm512_mul_ps(x, mf512_sigmoid(_mm512_mul_ps(x, t)));
}

/* ---- f16 / bf16 <-> f32 (n = 16 lanes; the _m forms touch only the lanes
 * of the mask, the others load as 0). */

static inline __m512 mf512_load_f16(const void *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 mf512_load_f16_m(const void *p, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static inline void mf512_store_f16(void *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, MF512_RNE));
}

static inline void mf512_store_f16_m(void *p, __mmask16 m, __m512 v)
{
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, MF512_RNE));
}

static inline __m512 mf512_bf16_widen(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static inline __m512 mf512_load_bf16(const void *p)
{
    return mf512_bf16_widen(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 mf512_load_bf16_m(const void *p, __mmask16 m)
{
    return mf512_bf16_widen(_mm256_maskz_loadu_epi16(m, p));
}

/* Round to nearest even: x + 0x7fff + bit 16 of x, then the high half;
 * NaN: the high half with the quiet bit set. */
static inline __m256i mf512_bf16_narrow(__m512 v)
{
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x400000));
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

static inline void mf512_store_bf16(void *p, __m512 v)
{
    _mm256_storeu_si256((__m256i *)p, mf512_bf16_narrow(v));
}

static inline void mf512_store_bf16_m(void *p, __mmask16 m, __m512 v)
{
    _mm256_mask_storeu_epi16(p, m, mf512_bf16_narrow(v));
}

/* Mask of the first n lanes (0 <= n <= 16). */
static inline __mmask16 mf512_head(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

#endif
