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
 * Edges: NaN in gives NaN out; exp(+Inf) = +Inf, exp(-Inf) = 0;
 * sigmoid(-Inf) = 0, sigmoid(+Inf) = 1; tanh(+-Inf) = +-1;
 * silu(-Inf) = -Inf * 0 = NaN as in C.
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
