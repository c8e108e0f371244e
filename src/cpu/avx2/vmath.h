/* Vector math for the avx2 kernel set (AVX2 + FMA + F16C): static inline
 * functions on 8 f32 lanes, for files of this directory only.
 *
 * Same algorithms as src/cpu/avx512/vmath.h, with two differences: 2^n is
 * applied as two exact power-of-two factors (the second product rounds once,
 * so subnormal results stay correct), and divisions are real divisions.
 * Accuracy against the correctly rounded result (measured over a sweep of
 * every 61st f32 bit pattern, against double-precision libm):
 *   mf256_exp       <= 2 ulp on [-87.3, 88.7]; below, the subnormal or zero
 *                   result within 1 unit of the smallest subnormal
 *   mf256_sigmoid   <= 3 ulp;  mf256_silu <= 4 ulp where sigmoid(x) is
 *                   normal (x > -87.3), absolute |x| 2^-149 below
 *   mf256_tanh      <= 3 ulp
 *   mf256_erf       <= 3 ulp;  mf256_erfc <= 6 ulp where erfc(x) >= 2^-126
 * Edges: NaN in gives NaN out; exp(+Inf) = +Inf, exp(-Inf) = 0;
 * sigmoid(-Inf) = 0, sigmoid(+Inf) = 1; tanh(+-Inf) = +-1;
 * erf(+-Inf) = +-1; erfc(-Inf) = 2, erfc(+Inf) = 0;
 * silu(-Inf) = -Inf * 0 = NaN as in C (the GELUs likewise).
 *
 * Conversions: f16 by F16C (round to nearest even), bf16 in integer
 * arithmetic; both bit-identical to mf_f32_to_f16 / mf_f32_to_bf16.
 *
 * min/max keep the constant as the FIRST operand: x86 returns the second
 * operand when either is NaN, so a NaN input passes through every clamp. */
#ifndef MF_CPU_AVX2_VMATH_H
#define MF_CPU_AVX2_VMATH_H

#include <immintrin.h>
#include <stdint.h>

#define MF256_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* exp(x) for x <= 89 or NaN (no upper clamp). Range reduction
 * x = n ln2 + r, |r| <= ln2/2, two-part ln2 (n * ln2_hi exact), degree-6
 * polynomial fitted on [-ln2/2, ln2/2] (error 2e-9), then
 * p * 2^(n/2) * 2^(n - n/2) for n in [-150, 128]. */
static inline __m256 mf256_exp_le89(__m256 x)
{
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x);
    __m256 n = _mm256_round_ps(
        _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), MF256_RNE);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606820309417232e-6f), r);
    __m256 p = _mm256_set1_ps(1.3941108e-3f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3751259e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1666351e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666415e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* exp(x), any x (results beyond [-104, 89] are already 0 and +Inf). */
static inline __m256 mf256_exp(__m256 x)
{
    return mf256_exp_le89(_mm256_min_ps(_mm256_set1_ps(89.0f), x));
}

/* sigmoid(x): e = exp(-|x|) in (0, 1]; x >= 0: 1 / (1 + e), x < 0:
 * e / (1 + e) (no cancellation in either tail). */
static inline __m256 mf256_sigmoid(__m256 x)
{
    __m256 e = mf256_exp_le89(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 num = _mm256_blendv_ps(one, e, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_div_ps(num, _mm256_add_ps(one, e));
}

/* silu(x) = x * sigmoid(x). */
static inline __m256 mf256_silu(__m256 x)
{
    return _mm256_mul_ps(x, mf256_sigmoid(x));
}

/* tanh(x) = sign(x) tanh(|x|): |x| < 0.625: |x| + |x|^3 P(x^2) (Cephes
 * tanhf); otherwise (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.29]. */
static inline __m256 mf256_tanh(__m256 x)
{
    __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), ax, ax);
    __m256 e = mf256_exp_le89(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 big = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    __m256 m = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
    return _mm256_or_ps(_mm256_blendv_ps(big, small, m), _mm256_and_ps(x, sign));
}

/* erfc(a) for a = |x| >= 0.5 (any a >= 0 or NaN computes): erfc(a) =
 * exp(-a^2) g(t), t = 1 / (1 + a/2), g a degree-9 polynomial fitted on
 * a in [0.5, 10.1] (relative error 1.2e-8 with these f32 coefficients);
 * a^2 is carried as s + lo (lo exact by FMA) and exp(-a^2) =
 * exp(-s) (1 - lo). a is clamped to 10.1, where erfc already rounds to 0. */
static inline __m256 mf256_erfc_tail(__m256 a)
{
    a = _mm256_min_ps(_mm256_set1_ps(10.1f), a);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(a, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    __m256 g = _mm256_set1_ps(-7.728861272e-02f);
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(3.634350896e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(-6.333355904e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(4.296478331e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(-1.232236400e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(2.417527884e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(2.331139892e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(2.839283049e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(2.819534838e-01f));
    g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(4.770354735e-06f));
    __m256 s = _mm256_mul_ps(a, a);
    __m256 lo = _mm256_fmsub_ps(a, a, s);
    __m256 e = mf256_exp_le89(_mm256_sub_ps(_mm256_setzero_ps(), s));
    e = _mm256_fnmadd_ps(e, lo, e);
    return _mm256_mul_ps(e, g);
}

/* x P(x^2), the small-argument erf. */
static inline __m256 mf256_erf_small(__m256 x)
{
    __m256 z = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(4.719082732e-03f);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-2.675773203e-02f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.128283143e-01f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.761260808e-01f));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.128379107e+00f));
    return _mm256_mul_ps(x, p);
}

/* erf(x): |x| < 0.5: x P(x^2) (degree 4, fitted, error 1.5e-9);
 * otherwise sign(x) (1 - erfc(|x|)), erfc(|x|) <= 0.48. */
static inline __m256 mf256_erf(__m256 x)
{
    __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign, x);
    __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f), mf256_erfc_tail(ax));
    big = _mm256_or_ps(big, _mm256_and_ps(x, sign));
    __m256 m = _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ);
    return _mm256_blendv_ps(big, mf256_erf_small(x), m);
}

/* erfc(x): |x| < 0.5: 1 - x P(x^2); x >= 0.5: the tail form;
 * x <= -0.5: 2 - erfc(-x). */
static inline __m256 mf256_erfc(__m256 x)
{
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 tail = mf256_erfc_tail(ax);
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    tail = _mm256_blendv_ps(tail, _mm256_sub_ps(_mm256_set1_ps(2.0f), tail), neg);
    __m256 small = _mm256_sub_ps(_mm256_set1_ps(1.0f), mf256_erf_small(x));
    __m256 m = _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ);
    return _mm256_blendv_ps(tail, small, m);
}

/* GELU (erf form): x * (0.5 * erfc(-x / sqrt 2)) — the erfc form has no
 * cancellation for negative x. The argument is the f32 product
 * x * -0x1.6a09e6p-1, as in the reference. */
static inline __m256 mf256_gelu_erf(__m256 x)
{
    __m256 c = mf256_erfc(_mm256_mul_ps(x, _mm256_set1_ps(-0.70710678118654752f)));
    return _mm256_mul_ps(x, _mm256_mul_ps(_mm256_set1_ps(0.5f), c));
}

/* GELU (tanh form): 0.5 x (1 + tanh(y')) = x * sigmoid(y), with
 * y = x * (c1 + c2 * (x * x)), c1 = 2 sqrt(2/pi), c2 = c1 * 0.044715,
 * computed with separate multiplies and adds in this order (no FMA) so it
 * rounds exactly as the reference does. */
static inline __m256 mf256_gelu_tanh(__m256 x)
{
    __m256 t = _mm256_mul_ps(x, x);
    t = _mm256_mul_ps(t, _mm256_set1_ps(0.0713548162726f));
    t = _mm256_add_ps(t, _mm256_set1_ps(1.5957691216057308f));
    return _mm256_mul_ps(x, mf256_sigmoid(_mm256_mul_ps(x, t)));
}

/* ---- f16 / bf16 <-> f32, 8 lanes (p unaligned). */

static inline __m256 mf256_load_f16(const void *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline void mf256_store_f16(void *p, __m256 v)
{
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, MF256_RNE));
}

static inline __m256 mf256_bf16_widen(__m128i h)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline __m256 mf256_load_bf16(const void *p)
{
    return mf256_bf16_widen(_mm_loadu_si128((const __m128i *)p));
}

/* Round to nearest even: x + 0x7fff + bit 16 of x, then the high half;
 * NaN: the high half with the quiet bit set. */
static inline __m128i mf256_bf16_narrow(__m256 v)
{
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    __m256i q = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_srli_epi32(_mm256_blendv_epi8(r, q, nan), 16);
    /* values are < 2^16: the unsigned-saturating pack is exact */
    __m256i pk = _mm256_packus_epi32(r, r);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(pk, 0x08));
}

static inline void mf256_store_bf16(void *p, __m256 v)
{
    _mm_storeu_si128((__m128i *)p, mf256_bf16_narrow(v));
}

#endif
