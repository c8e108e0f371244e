#version 450
// mf_dequant_act on the device: out [rows, K] = act(dequant(w)), w resident
// (qformat.glsl). One invocation per output word (one f32, or two 16-bit
// values, which may belong to consecutive rows when K is odd). Each element
// is decoded exactly as the reference does it, denormal products and sums
// included (common.glsl's mul_exact / add_exact), so with no activation and
// f32 output the result is bit-identical; f16/bf16 outputs are rounded in
// integer arithmetic like mf_f32_to_f16 / mf_f32_to_bf16.
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint FMT = 3;
layout(constant_id = 2) const uint ACT = 0;    // mf_act
layout(constant_id = 3) const uint OUT_T = 0;  // mf_type: F32, F16, BF16

layout(push_constant) uniform PC {
    uint total;   // elements
    uint K, nb, soff, boff, gpr;
} pc;

layout(std430, binding = 0) readonly buffer Wt { uvec4 wt[]; };
layout(std430, binding = 1) writeonly buffer Ob { uint ob[]; };

#include "common.glsl"
#include "qformat.glsl"
#include "act.glsl"

uvec4 w_vec(uint which, uint i) { return wt[i]; }
uint w_fmt(uint which) { return FMT; }
uint w_soff(uint which) { return pc.soff; }
uint w_boff(uint which) { return pc.boff; }
uint w_nb(uint which) { return pc.nb; }
uint w_gpr(uint which) { return pc.gpr; }
uint w_row0(uint which) { return 0u; }  // the host binds a part's rows

#include "qload.glsl"

float element(uint e)
{
    uint t = FMT & 255u;
    uint row = e / pc.K, k = e - row * pc.K;
    uint b = k >> 5u, j = k & 31u;
    uint blk = row * pc.nb + b;
    uint word = w_word(0u, blk * qf_vecs(t) * 4u + qf_elem_word(t, j));
    float d = 1.0, sc = 1.0, bi = 0.0;
    if (qf_has_d(t)) {
        uint wd = w_word(0u, pc.soff + (blk >> 1u));
        d = f16_to_f32((blk & 1u) != 0u ? wd >> 16u : wd & 0xffffu);
    } else if (qf_is_mlx(t)) {
        uint gs = (FMT >> 8u) & 255u;
        uint gi = row * pc.gpr + k / gs;
        sc = w_param(0u, pc.soff, gi);
        bi = w_param(0u, pc.boff, gi);
    }
    return act_apply(ACT, qf_elem_exact(t, word, j, d, sc, bi));
}

uint narrow(float v) { return OUT_T == 1u ? f32_to_f16(v) : f32_to_bf16(v); }

void main()
{
    uint words = OUT_T == 0u ? pc.total : (pc.total + 1u) / 2u;
    uint step = gl_NumWorkGroups.x * WG;
    for (uint w = gl_GlobalInvocationID.x; w < words; w += step) {
        if (OUT_T == 0u) {
            ob[w] = floatBitsToUint(element(w));
        } else {
            uint e = 2u * w;
            uint lo = narrow(element(e));
            uint hi = e + 1u < pc.total ? narrow(element(e + 1u)) : 0u;
            ob[w] = lo | (hi << 16u);
        }
    }
}
