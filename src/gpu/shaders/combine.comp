#version 450
// mf_combine on the device: out[t, :] = sum_j w[t, j] x[t, j, :] (+ res).
// One output element per invocation step (grid-stride over T * D).
//  EXACT = 1: the reference's sequence, every product and sum rounded to
//    f32, no FMA; subnormal operands and results are computed exactly
//    (mul_exact / add_exact) so the result is bit-identical to the CPU
//    even on devices that flush subnormals.
//  EXACT = 0: FMA accumulation, except elements with a product that may be
//    tiny (below 2^-90), which take the exact sequence: a flushed subnormal
//    there could exceed the tolerance of ops.h.
// The residual add is exact in both.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint EXACT = 1;
layout(constant_id = 2) const uint HAS_RES = 0;

layout(push_constant) uniform PC {
    uint T, k, D, x_off, res_off;  // x_off, res_off: word offsets in v_in
} pc;

// in: w [T, k], then x [T, k, D] at x_off, then residual [T, D] at res_off
layout(std430, binding = 0) readonly buffer In { float v_in[]; };
layout(std430, binding = 1) writeonly buffer Out { float v_out[]; };

#include "common.glsl"

// Biased exponent field (0 for zero and subnormals).
uint bexp(float v) { return (floatBitsToUint(v) >> 23) & 255u; }

float exact_sum(uint t, uint d)
{
    uint wb = t * pc.k, xb = pc.x_off + t * pc.k * pc.D + d;
    float acc = mul_exact(v_in[wb], v_in[xb]);
    for (uint j = 1u; j < pc.k; j++)
        acc = add_exact(acc, mul_exact(v_in[wb + j], v_in[xb + j * pc.D]));
    return acc;
}

void main()
{
    uint total = pc.T * pc.D;
    uint step = gl_NumWorkGroups.x * WG;
    for (uint e = gl_GlobalInvocationID.x; e < total; e += step) {
        uint t = e / pc.D, d = e - t * pc.D;
        float acc;
        if (EXACT != 0u) {
            acc = exact_sum(t, d);
        } else {
            uint wb = t * pc.k, xb = pc.x_off + t * pc.k * pc.D + d;
            float w0 = v_in[wb], x0 = v_in[xb];
            uint small = bexp(w0) + bexp(x0) < 164u ? 1u : 0u;
            acc = w0 * x0;
            for (uint j = 1u; j < pc.k; j++) {
                float wj = v_in[wb + j], xj = v_in[xb + j * pc.D];
                small |= bexp(wj) + bexp(xj) < 164u ? 1u : 0u;
                acc = fma(wj, xj, acc);
            }
            if (small != 0u)
                acc = exact_sum(t, d);
        }
        if (HAS_RES != 0u)
            acc = add_exact(acc, v_in[pc.res_off + e]);
        v_out[e] = acc;
    }
}
