#version 450
// mf_moe_gate_up on the device: for each (token t, slot j) pair p = t k + j
// with e = idx[p], h[p, f] = glu(Wg[e] x[t] + bg, Wu[e] x[t] + bu) for
// f < F. Gate and up rows of an output come from the SEPARATE tensors, or
// from one tensor's CONCAT ([g | u] rows per expert) or INTERLEAVED rows
// (g0 u0 g1 u1 ...); biases likewise.
//
// A workgroup computes R = WG / TPR * RPW outputs of one pair; a group of
// TPR lanes computes RPW consecutive outputs, lane l taking blocks l,
// l + TPR, ...: per block it loads the activations once (kept in registers)
// and the gate and up rows of its RPW outputs (2 RPW loads in flight), then
// the partial sums are added (subgroup butterfly or shared memory) and lane
// 0 applies biases and the GLU. Workgroups stride over (output blocks,
// pairs) = (x, y).
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint TPR = 32;
layout(constant_id = 2) const uint FMT_G = 3;
layout(constant_id = 3) const uint FMT_U = 3;
layout(constant_id = 4) const uint MODE = 0;  // glu | layout << 4 |
                                              // gate bias << 8 | up bias << 9
layout(constant_id = 5) const uint RPW = 1;   // outputs per lane group

const uint R = WG / TPR * RPW;                // outputs per workgroup
const uint KIND = MODE & 15u;
const uint LAYOUT = (MODE >> 4u) & 15u;       // mf_glu_layout
const uint HAS_BG = (MODE >> 8u) & 1u;
const uint HAS_BU = (MODE >> 9u) & 1u;

layout(push_constant) uniform PC {
    uint F, P, k, E, nb;
    uint soff_g, boff_g, gpr_g, soff_u, boff_u, gpr_u;
    uint xs;      // vec4s per activation row
    uint hs;      // floats per h row
    uint idx_off; // uint index of idx[0]
    float limit, alpha;
} pc;

layout(std430, binding = 0) readonly buffer Wg { uvec4 wg[]; };
layout(std430, binding = 1) readonly buffer Wu { uvec4 wu[]; };
layout(std430, binding = 2) readonly buffer Xb { vec4 xb[]; };
layout(std430, binding = 3) readonly buffer Ib { uint ib[]; };
layout(std430, binding = 4) readonly buffer Bg { float bg[]; };
layout(std430, binding = 5) readonly buffer Bu { float bu[]; };
layout(std430, binding = 6) writeonly buffer Hb { float hb[]; };

#include "common.glsl"
#include "qformat.glsl"
#include "act.glsl"

uvec4 w_vec(uint which, uint i)
{
    if (which == 0u)
        return wg[i];
    return wu[i];
}
uint w_fmt(uint which) { return which == 0u ? FMT_G : FMT_U; }
uint w_soff(uint which) { return which == 0u ? pc.soff_g : pc.soff_u; }
uint w_boff(uint which) { return which == 0u ? pc.boff_g : pc.boff_u; }
uint w_nb(uint which) { return pc.nb; }
uint w_gpr(uint which) { return which == 0u ? pc.gpr_g : pc.gpr_u; }

#include "qload.glsl"

#ifndef USE_SUBGROUP
shared float red[2u * RPW * WG];
#endif

// Gate and up rows of output f of expert e.
void rows_of(uint e, uint f, out uint rg, out uint ru)
{
    uint F = pc.F;
    if (LAYOUT == 0u) {
        rg = e * F + f;
        ru = rg;
    } else if (LAYOUT == 1u) {
        rg = e * 2u * F + f;
        ru = rg + F;
    } else {
        rg = e * 2u * F + 2u * f;
        ru = rg + 1u;
    }
}

void main()
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, rl = tid / TPR;
    uint F = pc.F;
    uint nrb = (F + R - 1u) / R;
    for (uint p = gl_WorkGroupID.y; p < pc.P; p += gl_NumWorkGroups.y) {
        uint t = p / pc.k;
        uint e = min(ib[pc.idx_off + p], pc.E - 1u);
        for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x) {
            uint f0 = rb * R + rl * RPW;
            uint rg[RPW], ru[RPW];
            float ag[RPW], au[RPW];
            for (uint q = 0u; q < RPW; q++) {
                rows_of(e, min(f0 + q, F - 1u), rg[q], ru[q]);
                ag[q] = 0.0;
                au[q] = 0.0;
            }
            for (uint b = lane; b < pc.nb; b += TPR) {
                vec4 xv[8];
                uint base = t * pc.xs + b * 8u;
                for (uint i = 0u; i < 8u; i++)
                    xv[i] = xb[base + i];
                for (uint q = 0u; q < RPW; q++) {
                    uvec4 r0[8], r1[8];
                    float d0, s0, c0, d1, s1, c1;
                    w_load(0u, rg[q], b, r0, d0, s0, c0);
                    w_load(1u, ru[q], b, r1, d1, s1, c1);
                    ag[q] += w_dot_raw(0u, r0, d0, s0, c0, xv);
                    au[q] += w_dot_raw(1u, r1, d1, s1, c1, xv);
                }
            }
#ifdef USE_SUBGROUP
            // the host keeps TPR <= the subgroup size
            for (uint q = 0u; q < RPW; q++)
                for (uint o = TPR / 2u; o > 0u; o >>= 1u) {
                    ag[q] += subgroupShuffleXor(ag[q], o);
                    au[q] += subgroupShuffleXor(au[q], o);
                }
#else
            if (TPR > 1u) {
                for (uint q = 0u; q < RPW; q++) {
                    red[2u * (tid * RPW + q)] = ag[q];
                    red[2u * (tid * RPW + q) + 1u] = au[q];
                }
                barrier();
                if (lane == 0u)
                    for (uint q = 0u; q < RPW; q++) {
                        ag[q] = 0.0;
                        au[q] = 0.0;
                        for (uint l = 0u; l < TPR; l++) {
                            ag[q] += red[2u * ((tid + l) * RPW + q)];
                            au[q] += red[2u * ((tid + l) * RPW + q) + 1u];
                        }
                    }
                barrier();
            }
#endif
            if (lane == 0u)
                for (uint q = 0u; q < RPW; q++) {
                    uint f = f0 + q;
                    if (f >= F)
                        continue;
                    float g = ag[q], u = au[q];
                    if (HAS_BG != 0u) {
                        precise float v = g + bg[rg[q]];
                        g = v;
                    }
                    if (HAS_BU != 0u) {
                        precise float v = u + bu[ru[q]];
                        u = v;
                    }
                    hb[p * pc.hs + f] = glu_apply(KIND, g, u, pc.limit, pc.alpha);
                }
        }
    }
}
