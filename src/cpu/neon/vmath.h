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
 * Edges: NaN in gives NaN out (FMIN/FMAX propagate NaN); exp(+Inf) = +Inf,
 * exp(-Inf) = 0; sigmoid(-Inf) = 0, sigmoid(+Inf) = 1; tanh(+-Inf) = +-1;
 * silu(-Inf) = NaN as
 * x * sigmoid(x) evaluates in C.
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
