#version 450
// mf_qmv on the device: y [M, N] = act(x [M, K] w^T + bias), w resident in
// the layout of qformat.glsl (read packed, one uvec4 per 16 bytes of codes;
// never expanded in memory).
//
// A workgroup computes R = WG / TPR * RPW output rows for a chunk of up to
// 32 activation rows; a group of TPR lanes computes RPW consecutive rows.
// QL lanes read each block (qload.glsl's lane parts: lane l takes part
// l % QL of blocks l / QL, + TPR / QL, ...), U block steps per pass with
// their loads in flight together: per step a lane loads its part of the
// MB activation rows and of the RPW rows' weights, decodes each weight
// part once and dots it with the MB activation parts. The passes over a
// chunk follow each other in the workgroup, so after the first the row
// block's weights come from the cache: the weights stream from memory
// once per 32 activation rows. The lanes' partial sums are added by a
// subgroup butterfly (USE_SUBGROUP; the host keeps TPR within one
// subgroup, so there is no barrier) or through shared memory. Row blocks
// and chunks are strided over the dispatched workgroups (x: row blocks,
// y: chunks).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint TPR = 32;     // lanes per row, power of 2
layout(constant_id = 2) const uint MB = 1;       // activation rows per pass
layout(constant_id = 3) const uint FMT = 3;      // type | group << 8 | st << 16
layout(constant_id = 4) const uint RPW = 1;      // rows per lane group
layout(constant_id = 5) const uint U = 1;        // block steps per pass

const uint R = WG / TPR * RPW;                   // rows per workgroup
const uint CHUNK = 32u;

layout(push_constant) uniform PC {
    uint N, M, nb, soff, boff, gpr;
    uint xs;      // vec4s per activation row
    uint ys;      // floats per output row
    uint y_off;   // float index of y[0, 0]
    uint b_off;   // float index of bias[0]
    uint act;     // mf_act
    uint has_bias;
} pc;

layout(std430, binding = 0) readonly buffer Wt { uvec4 wt[]; };
layout(std430, binding = 1) readonly buffer Xb { vec4 xb[]; };
layout(std430, binding = 2) writeonly buffer Yb { float yb[]; };
layout(std430, binding = 3) readonly buffer Bb { float bb[]; };

#include "common.glsl"
#include "qformat.glsl"
#include "act.glsl"

uvec4 w_vec(uint which, uint i) { return wt[i]; }
uint w_fmt(uint which) { return FMT; }
uint w_soff(uint which) { return pc.soff; }
uint w_boff(uint which) { return pc.boff; }
uint w_nb(uint which) { return pc.nb; }
uint w_gpr(uint which) { return pc.gpr; }

#include "qload.glsl"

#ifndef USE_SUBGROUP
shared float red[WG * MB * RPW];
#endif

void store(uint row, uint m, float s)
{
    if (pc.has_bias != 0u) {
        precise float v = s + bb[pc.b_off + row];
        s = v;
    }
    yb[pc.y_off + m * pc.ys + row] = act_apply(pc.act, s);
}

void main()
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, rl = tid / TPR;
    uint nrb = (pc.N + R - 1u) / R;
    uint nch = (pc.M + CHUNK - 1u) / CHUNK;
    for (uint ch = gl_WorkGroupID.y; ch < nch; ch += gl_NumWorkGroups.y) {
        uint mend = min(pc.M, (ch + 1u) * CHUNK);
        for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x) {
            uint r0 = rb * R + rl * RPW;
            for (uint m0 = ch * CHUNK; m0 < mend; m0 += MB) {
                float acc[RPW * MB];
                for (uint a = 0u; a < RPW * MB; a++)
                    acc[a] = 0.0;
                // QL lanes a block, U block steps per pass with their
                // loads (clamped indices) in flight together; each weight
                // part is decoded once for the MB activation rows
                uint ql = wp_lanes(0u), nch = wp_nchunk(0u);
                uint c = lane % ql, bs = TPR / ql, nb = pc.nb;
                for (uint b0 = lane / ql; b0 < nb; b0 += U * bs) {
                    [[unroll]] for (uint u = 0u; u < U; u++) {
                        uint b = b0 + u * bs, bb = min(b, nb - 1u);
                        vec4 xs[2u * MB];
                        [[unroll]] for (uint m = 0u; m < MB; m++) {
                            uint base = min(m0 + m, mend - 1u) * pc.xs + bb * 8u;
                            [[unroll]] for (uint i = 0u; i < 2u; i++)
                                xs[2u * m + i] = i < nch ? xb[base + wp_chunk(0u, c, i)]
                                                         : vec4(0.0);
                        }
                        uvec4 rw[RPW];
                        float d[RPW], sc[RPW], bi[RPW];
                        [[unroll]] for (uint q = 0u; q < RPW; q++)
                            wp_load(0u, min(r0 + q, pc.N - 1u), bb, c, rw[q],
                                    d[q], sc[q], bi[q]);
                        if (b >= nb)
                            continue;
                        [[unroll]] for (uint q = 0u; q < RPW; q++) {
                            vec4 w[2], xv[2];
                            wp_decode(0u, rw[q], sc[q], bi[q], w);
                            [[unroll]] for (uint m = 0u; m < MB; m++)
                                if (m0 + m < mend) {
                                    xv[0] = xs[2u * m];
                                    xv[1] = xs[2u * m + 1u];
                                    uint a = q * MB + m;
                                    acc[a] = wp_acc(0u, w, d[q], xv, acc[a]);
                                }
                        }
                    }
                }
#ifdef USE_SUBGROUP
                for (uint a = 0u; a < RPW * MB; a++)
                    for (uint o = TPR / 2u; o > 0u; o >>= 1u)
                        acc[a] += subgroupShuffleXor(acc[a], o);
#else
                if (TPR > 1u) {
                    for (uint a = 0u; a < RPW * MB; a++)
                        red[tid * RPW * MB + a] = acc[a];
                    barrier();
                    if (lane == 0u)
                        for (uint a = 0u; a < RPW * MB; a++) {
                            float s = 0.0;
                            for (uint l = 0u; l < TPR; l++)
                                s += red[(tid + l) * RPW * MB + a];
                            acc[a] = s;
                        }
                    barrier();
                }
#endif
                if (lane == 0u)
                    for (uint q = 0u; q < RPW; q++)
                        for (uint m = 0u; m < MB; m++)
                            if (r0 + q < pc.N && m0 + m < mend)
                                store(r0 + q, m0 + m, acc[q * MB + m]);
            }
        }
    }
}
