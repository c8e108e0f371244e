#version 450
// MF_PREC_INT8: the h rows of moe_down_combine quantized once, block by
// block (one invocation a block of 32), for moe_down.comp built with PREQ,
// whose workgroups then load the codes instead of each quantizing every h
// block they use again. Record of block b of pair p, at uvec4 3 (p nb + b):
// codes q0, q1 (qquant8.glsl), then (d bits, s bits, sum(q), 0).
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

layout(push_constant) uniform PC {
    uint n;   // blocks: pairs x nb
    uint nb;  // blocks a row
    uint hs;  // vec4s a row of h
} pc;

layout(std430, binding = 0) readonly buffer Hb { vec4 hb[]; };
layout(std430, binding = 1) writeonly buffer Hq { uvec4 hq[]; };

#include "qquant8.glsl"

void main()
{
    uint step = gl_NumWorkGroups.x * WG;
    for (uint i = gl_GlobalInvocationID.x; i < pc.n; i += step) {
        uint p = i / pc.nb, b = i - p * pc.nb;
        uint base = p * pc.hs + b * 8u;
        vec4 x[8];
        for (uint c = 0u; c < 8u; c++)
            x[c] = hb[base + c];
        uvec4 q0, q1;
        vec2 meta;
        int sum;
        i8_quantize(x, q0, q1, meta, sum);
        hq[3u * i] = q0;
        hq[3u * i + 1u] = q1;
        hq[3u * i + 2u] = uvec4(floatBitsToUint(meta.x),
                                floatBitsToUint(meta.y), uint(sum), 0u);
    }
}
