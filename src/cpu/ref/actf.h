/* Scalar activations of the reference (and of the unfused baselines, which
 * run the same element functions in separate passes).
 *
 * Each transcendental factor (sigmoid, 0.5 erfc) is evaluated in double and
 * rounded once to f32, so it is within 0.5 ulp (+1e-16 relative) on any
 * libm; every other step is one f32 operation in the written order, with no
 * fused multiply-add (the library builds with -ffp-contract=off). The SIMD
 * kernels compute the same arguments with the same f32 operations, so their
 * results differ from these only by their polynomial factor's error.
 *
 *  sigmoid(x)   = (float)(1 / (1 + exp(-x)))
 *  silu(x)      = x * sigmoid(x)
 *  gelu_erf(x)  = x * (float)(0.5 erfc(z)),  z = x * -0x1.6a09e6p-1 (f32)
 *  gelu_tanh(x) = x * sigmoid(y),  y = x * (c1 + c2 * (x * x)) in f32 steps,
 *                 c1 = 2 sqrt(2/pi), c2 = c1 * 0.044715, which is
 *                 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) exactly
 *                 in real arithmetic but has no cancellation for x < 0.
 * Products follow IEEE: silu(-Inf) = gelu(-Inf) = -Inf * 0 = NaN. */
#ifndef MF_CPU_REF_ACTF_H
#define MF_CPU_REF_ACTF_H

#include <math.h>

#include <moefuse/moefuse.h>

#define MF_GELU_TANH_C1 1.5957691216057308f  /* 2 sqrt(2/pi) */
#define MF_GELU_TANH_C2 0.0713548162726f     /* c1 * 0.044715 */
#define MF_GELU_ERF_C (-0.70710678118654752f) /* -1/sqrt(2) */
#define MF_OAI_LIMIT 7.0f
#define MF_OAI_ALPHA 1.702f

static inline float mf_ref_sigmoid(float x)
{
    return (float)(1.0 / (1.0 + exp(-(double)x)));
}

static inline float mf_ref_silu(float x)
{
    return x * mf_ref_sigmoid(x);
}

static inline float mf_ref_gelu_erf(float x)
{
    float z = x * MF_GELU_ERF_C;
    float f = (float)(0.5 * erfc((double)z));
    return x * f;
}

static inline float mf_ref_gelu_tanh(float x)
{
    float t = x * x;
    t = t * MF_GELU_TANH_C2;
    t = t + MF_GELU_TANH_C1;
    float y = x * t;
    return x * mf_ref_sigmoid(y);
}

static inline float mf_ref_act(mf_act a, float x)
{
    switch (a) {
    case MF_ACT_SILU: return mf_ref_silu(x);
    case MF_ACT_GELU: return mf_ref_gelu_erf(x);
    case MF_ACT_GELU_TANH: return mf_ref_gelu_tanh(x);
    default: return x;
    }
}

/* SWIGLU_OAI's gate factor: min(g, limit) * sigmoid(alpha * min(g, limit));
 * a NaN g stays NaN (the comparison is false). */
static inline float mf_ref_oai_gate(float g, float limit, float alpha)
{
    if (g > limit)
        g = limit;
    return g * mf_ref_sigmoid(alpha * g);
}

/* SWIGLU_OAI's up factor: clamp(u, -limit, limit) + 1; NaN stays NaN. */
static inline float mf_ref_oai_up(float u, float limit)
{
    if (u > limit)
        u = limit;
    else if (u < -limit)
        u = -limit;
    return u + 1.0f;
}

#endif
