#version 450
// mf_glu on the device: out [T, n] = glu(gate, up). An invocation step
// writes one output word: one element of an f32 output, two of a 16-bit
// one, so a subgroup's stores cover contiguous words (shaders that write
// into host memory over the bus do so in whole transactions). Inputs
// are widened exactly, the math is f32 with the reference's formulas
// (src/cpu/ref/actf.h) and the CPU kernels' polynomials, and the output is
// rounded once to its type in integer arithmetic (bit-identical to
// mf_f32_to_f16 / mf_f32_to_bf16). NaN passes through every clamp.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint KIND = 0;    // mf_glu_kind
layout(constant_id = 2) const uint LAYOUT = 0;  // mf_glu_layout
layout(constant_id = 3) const uint IN_T = 0;    // mf_type: F32, F16, BF16
layout(constant_id = 4) const uint OUT_T = 0;

layout(push_constant) uniform PC {
    uint T, n, up_off;  // up_off: element offset of `up` (SEPARATE)
    float limit, alpha;
} pc;

layout(std430, binding = 0) readonly buffer In { uint v_in[]; };
layout(std430, binding = 1) writeonly buffer Out { uint v_out[]; };

#include "common.glsl"

const float GELU_TANH_C1 = 1.5957691216057308;
const float GELU_TANH_C2 = 0.0713548162726;
const float GELU_ERF_C = -0.70710678118654752;

// Input element h (in elements of IN_T).
float load(uint h)
{
    if (IN_T == 0u)
        return uintBitsToFloat(v_in[h]);
    uint w = v_in[h >> 1u];
    uint b = (h & 1u) != 0u ? w >> 16u : w & 0xffffu;
    return IN_T == 1u ? f16_to_f32(b) : bf16_to_f32(b);
}

// The products (g * factor) * u go through gate_sigmoid / gate_erfc, which
// form them as the CPU does, subnormals included, even where the device
// flushes subnormals (otherwise a subnormal times an infinite operand would
// give NaN instead of +-Inf).
float glu(float g, float u)
{
    if (KIND == 1u) {          // GEGLU_TANH: gelu_tanh(g) * u
        precise float t = g * g;
        t = t * GELU_TANH_C2;
        t = t + GELU_TANH_C1;
        precise float y = g * t;
        return gate_sigmoid(g, y, u);
    }
    if (KIND == 2u) {          // GEGLU_ERF: g * (0.5 erfc(g * -1/sqrt2)) * u
        precise float z = g * GELU_ERF_C;
        return gate_erfc(g, z, u);
    }
    if (KIND == 3u) {          // SWIGLU_OAI
        float L = pc.limit, A = pc.alpha;
        if (!is_nan(g) && g > L)
            g = L;
        if (!is_nan(u)) {
            if (u > L)
                u = L;
            else if (u < -L)
                u = -L;
        }
        precise float up = u + 1.0;
        precise float a = A * g;
        return gate_sigmoid(g, a, up);
    }
    return gate_sigmoid(g, g, u);  // SWIGLU
}

float element(uint e)
{
    uint row = e / pc.n, i = e - row * pc.n;
    float g, u;
    if (LAYOUT == 0u) {        // SEPARATE
        g = load(e);
        u = load(pc.up_off + e);
    } else if (LAYOUT == 1u) { // CONCAT: [g | u] rows of 2n
        g = load(row * 2u * pc.n + i);
        u = load(row * 2u * pc.n + pc.n + i);
    } else {                   // INTERLEAVED: g0 u0 g1 u1 ...
        g = load(row * 2u * pc.n + 2u * i);
        u = load(row * 2u * pc.n + 2u * i + 1u);
    }
    return glu(g, u);
}

uint narrow(float v) { return OUT_T == 1u ? f32_to_f16(v) : f32_to_bf16(v); }

void main()
{
    uint total = pc.T * pc.n;
    uint step = gl_NumWorkGroups.x * WG;
    if (OUT_T == 0u) {
        for (uint e = gl_GlobalInvocationID.x; e < total; e += step)
            v_out[e] = floatBitsToUint(element(e));
        return;
    }
    uint pairs = (total + 1u) / 2u;
    for (uint p = gl_GlobalInvocationID.x; p < pairs; p += step) {
        uint e = 2u * p;
        float a = element(e);
        float b = e + 1u < total ? element(e + 1u) : 0.0;
        v_out[p] = narrow(a) | (narrow(b) << 16u);
    }
}
