/* Vector math for the neon kernel set (aarch64 Advanced SIMD): static
 * inline functions on 4 f32 lanes, for files of this directory only. The
 * content exists only when compiling for aarch64.
 *
 * Same algorithms as src/cpu/avx512/vmath.h: range-reduced exp with a
 * degree-6 polynomial, 2^n applied as two exact power-of-two factors (the
 * second product rounds once, so subnormal results stay correct), real
 * divisions. Accuracy against the correctly rounded result:
 *   mfq_exp       <= 2 ulp on [-87.3, 88.7]; below, the subnormal or zero
 *                 result within 1 unit of the smallest subnormal
 *   mfq_sigmoid   <= 3 ulp;  mfq_silu <= 4 ulp where sigmoid(x) is normal
 *   mfq_tanh      <= 3 ulp
 *   mfq_erf       <= 3 ulp;  mfq_erfc <= 6 ulp where erfc(x) >= 2^-126
 * Edges: NaN in gives NaN out (FMIN/FMAX propagate NaN); exp(+Inf) = +Inf,
 * exp(-Inf) = 0; sigmoid(-Inf) = 0, sigmoid(+Inf) = 1; tanh(+-Inf) = +-1;
 * erf(+-Inf) = +-1; erfc(-Inf) = 2, erfc(+Inf) = 0; silu(-Inf) = NaN as
 * x * sigmoid(x) evaluates in C (the GELUs likewise).
 *
 * Conversions: f16 by FCVT (round to nearest even under the default FPCR),
 * bf16 in integer arithmetic; both bit-identical to mf_f32_to_f16 /
 * mf_f32_to_bf16. */
#ifndef MF_CPU_NEON_VMATH_H
#define MF_CPU_NEON_VMATH_H

#if defined(__aarch64__)

#include <arm_neon.h>
#include <stdint.h>

/* exp(x) for x <= 89 or NaN (no upper clamp). Range reduction
 * x = n ln2 + r, |r| <= ln2/2, two-part ln2 (n * ln2_hi exact), degree-6
 * polynomial fitted on [-ln2/2, ln2/2] (error 2e-9), then
 * p * 2^(n/2) * 2^(n - n/2) for n in [-150, 128]. */
static inline float32x4_t mfq_exp_le89(float32x4_t x)
{
    x = vmaxq_f32(x, vdupq_n_f32(-104.0f));
    int32x4_t ni = vcvtnq_s32_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t n = vcvtq_f32_s32(ni);
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, n, vdupq_n_f32(1.428606820309417232e-6f));
    float32x4_t p = vdupq_n_f32(1.3941108e-3f);
    p = vfmaq_f32(vdupq_n_f32(8.3751259e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1666351e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666415e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t n1 = vshrq_n_s32(ni, 1);
    int32x4_t n2 = vsubq_s32(ni, n1);
    int32x4_t bias = vdupq_n_s32(127);
    float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
    float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

/* exp(x), any x (results beyond [-104, 89] are already 0 and +Inf). */
static inline float32x4_t mfq_exp(float32x4_t x)
{
    return mfq_exp_le89(vminq_f32(x, vdupq_n_f32(89.0f)));
}

/* sigmoid(x): e = exp(-|x|) in (0, 1]; x >= 0: 1 / (1 + e), x < 0:
 * e / (1 + e) (no cancellation in either tail). */
static inline float32x4_t mfq_sigmoid(float32x4_t x)
{
    float32x4_t e = mfq_exp_le89(vnegq_f32(vabsq_f32(x)));
    float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t num = vbslq_f32(vcltzq_f32(x), e, one);
    return vdivq_f32(num, vaddq_f32(one, e));
}

/* silu(x) = x * sigmoid(x). */
static inline float32x4_t mfq_silu(float32x4_t x)
{
    return vmulq_f32(x, mfq_sigmoid(x));
}

/* tanh(x) = sign(x) tanh(|x|): |x| < 0.625: |x| + |x|^3 P(x^2) (Cephes
 * tanhf); otherwise (1 - e) / (1 + e) with e = exp(-2|x|) in (0, 0.29]. */
static inline float32x4_t mfq_tanh(float32x4_t x)
{
    float32x4_t ax = vabsq_f32(x);
    float32x4_t z = vmulq_f32(x, x);
    float32x4_t p = vdupq_n_f32(-5.70498872745e-3f);
    p = vfmaq_f32(vdupq_n_f32(2.06390887954e-2f), p, z);
    p = vfmaq_f32(vdupq_n_f32(-5.37397155531e-2f), p, z);
    p = vfmaq_f32(vdupq_n_f32(1.33314422036e-1f), p, z);
    p = vfmaq_f32(vdupq_n_f32(-3.33332819422e-1f), p, z);
    float32x4_t small = vfmaq_f32(ax, vmulq_f32(p, z), ax);
    float32x4_t e = mfq_exp_le89(vmulq_n_f32(ax, -2.0f));
    float32x4_t one = vdupq_n_f32(1.0f);
    float32x4_t big = vdivq_f32(vsubq_f32(one, e), vaddq_f32(one, e));
    float32x4_t mag = vbslq_f32(vcltq_f32(ax, vdupq_n_f32(0.625f)), small, big);
    uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
    return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(mag), sign));
}

/* erfc(a) for a = |x| >= 0.5 (any a >= 0 or NaN computes): erfc(a) =
 * exp(-a^2) g(t), t = 1 / (1 + a/2), g a degree-9 polynomial fitted on
 * a in [0.5, 10.1] (relative error 1.2e-8 with these f32 coefficients);
 * a^2 is carried as s + lo (lo exact by FMA) and exp(-a^2) =
 * exp(-s) (1 - lo). a is clamped to 10.1, where erfc already rounds to 0. */
static inline float32x4_t mfq_erfc_tail(float32x4_t a)
{
    a = vminq_f32(a, vdupq_n_f32(10.1f));
    float32x4_t t = vdivq_f32(vdupq_n_f32(1.0f), vfmaq_n_f32(vdupq_n_f32(1.0f), a, 0.5f));
    float32x4_t g = vdupq_n_f32(-7.728861272e-02f);
    g = vfmaq_f32(vdupq_n_f32(3.634350896e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(-6.333355904e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(4.296478331e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(-1.232236400e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(2.417527884e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(2.331139892e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(2.839283049e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(2.819534838e-01f), g, t);
    g = vfmaq_f32(vdupq_n_f32(4.770354735e-06f), g, t);
    float32x4_t s = vmulq_f32(a, a);
    float32x4_t lo = vnegq_f32(vfmsq_f32(s, a, a));
    float32x4_t e = mfq_exp_le89(vnegq_f32(s));
    e = vfmsq_f32(e, e, lo);
    return vmulq_f32(e, g);
}

/* x P(x^2), the small-argument erf. */
static inline float32x4_t mfq_erf_small(float32x4_t x)
{
    float32x4_t z = vmulq_f32(x, x);
    float32x4_t p = vdupq_n_f32(4.719082732e-03f);
    p = vfmaq_f32(vdupq_n_f32(-2.675773203e-02f), p, z);
    p = vfmaq_f32(vdupq_n_f32(1.128283143e-01f), p, z);
    p = vfmaq_f32(vdupq_n_f32(-3.761260808e-01f), p, z);
    p = vfmaq_f32(vdupq_n_f32(1.128379107e+00f), p, z);
    return vmulq_f32(x, p);
}

/* erf(x): |x| < 0.5: x P(x^2) (degree 4, fitted, error 1.5e-9);
 * otherwise sign(x) (1 - erfc(|x|)), erfc(|x|) <= 0.48. */
static inline float32x4_t mfq_erf(float32x4_t x)
{
    float32x4_t ax = vabsq_f32(x);
    float32x4_t big = vsubq_f32(vdupq_n_f32(1.0f), mfq_erfc_tail(ax));
    uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
    big = vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(big), sign));
    return vbslq_f32(vcltq_f32(ax, vdupq_n_f32(0.5f)), mfq_erf_small(x), big);
}

/* erfc(x): |x| < 0.5: 1 - x P(x^2); x >= 0.5: the tail form;
 * x <= -0.5: 2 - erfc(-x). */
static inline float32x4_t mfq_erfc(float32x4_t x)
{
    float32x4_t ax = vabsq_f32(x);
    float32x4_t tail = mfq_erfc_tail(ax);
    tail = vbslq_f32(vcltzq_f32(x), vsubq_f32(vdupq_n_f32(2.0f), tail), tail);
    float32x4_t small = vsubq_f32(vdupq_n_f32(1.0f), mfq_erf_small(x));
    return vbslq_f32(vcltq_f32(ax, vdupq_n_f32(0.5f)), small, tail);
}

/* GELU (erf form): x * (0.5 * erfc(-x / sqrt 2)) — the erfc form has no
 * cancellation for negative x. The argument is the f32 product
 * x * -0x1.6a09e6p-1, as in the reference. */
static inline float32x4_t mfq_gelu_erf(float32x4_t x)
{
    float32x4_t c = mfq_erfc(vmulq_n_f32(x, -0.70710678118654752f));
    return vmulq_f32(x, vmulq_n_f32(c, 0.5f));
}

/* GELU (tanh form): 0.5 x (1 + tanh(y')) = x * sigmoid(y), with
 * y = x * (c1 + c2 * (x * x)), c1 = 2 sqrt(2/pi), c2 = c1 * 0.044715,
 * computed with separate multiplies and adds in this order (no FMA) so it
 * rounds exactly as the reference does. */
static inline float32x4_t mfq_gelu_tanh(float32x4_t x)
{
    float32x4_t t = vmulq_f32(x, x);
    t = vmulq_n_f32(t, 0.0713548162726f);
    t = vaddq_f32(t, vdupq_n_f32(1.5957691216057308f));
    return vmulq_f32(x, mfq_sigmoid(vmulq_f32(x, t)));
}

/* ---- f16 / bf16 <-> f32, 4 lanes (p unaligned: byte loads). */

static inline float32x4_t mfq_load_f16(const void *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8((const uint8_t *)p)));
}

static inline void mfq_store_f16(void *p, float32x4_t v)
{
    vst1_u8((uint8_t *)p, vreinterpret_u8_f16(vcvt_f16_f32(v)));
}

static inline float32x4_t mfq_load_bf16(const void *p)
{
    uint16x4_t h = vreinterpret_u16_u8(vld1_u8((const uint8_t *)p));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* Round to nearest even: x + 0x7fff + bit 16 of x, then the high half;
 * NaN: the high half with the quiet bit set. */
static inline uint16x4_t mfq_bf16_narrow(float32x4_t v)
{
    uint32x4_t u = vreinterpretq_u32_f32(v);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vaddq_u32(vaddq_u32(u, vdupq_n_u32(0x7fff)), lsb);
    uint32x4_t q = vorrq_u32(u, vdupq_n_u32(0x400000));
    r = vbslq_u32(vceqq_f32(v, v), r, q);
    return vshrn_n_u32(r, 16);
}

static inline void mfq_store_bf16(void *p, float32x4_t v)
{
    vst1_u8((uint8_t *)p, vreinterpret_u8_u16(mfq_bf16_narrow(v)));
}

#endif
#endif
