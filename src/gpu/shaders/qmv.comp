#version 450
// mf_qmv on the device: y [M, N] = act(x [M, K] w^T + bias), w resident in
// the layout of qformat.glsl (read packed, one uvec4 per 16 bytes of codes;
// never expanded in memory).
//
// A workgroup computes R = WG / TPR output rows for a chunk of up to 32
// activation rows; TPR lanes share an output row, lane l taking its blocks
// l, l + TPR, ... (two at a time with one activation row, so two blocks'
// loads are in flight), each
// block decoded once per pass and dotted with the pass's MB activation
// rows. The passes over a chunk's rows follow each other in the workgroup,
// so after the first the row block's weights come from the cache: the
// weights stream from memory once per 32 activation rows. The lanes'
// partial sums are added by a subgroup butterfly (USE_SUBGROUP; the host
// keeps TPR within one subgroup, so there is no barrier) or through shared
// memory (none needed with one lane per row). Row blocks and chunks are
// strided over the dispatched workgroups (x: row blocks, y: chunks).
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint TPR = 32;     // lanes per row, power of 2
layout(constant_id = 2) const uint MB = 1;       // activation rows per pass
layout(constant_id = 3) const uint FMT = 3;      // type | group << 8 | st << 16

const uint R = WG / TPR;
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
shared float red[WG * MB];
#endif

void accum(uvec4 raw[8], float d, float sc, float bi, uint b, uint m0,
           inout float acc[MB])
{
    for (uint m = 0u; m < MB; m++) {
        if (m0 + m < pc.M) {
            vec4 xv[8];
            uint base = (m0 + m) * pc.xs + b * 8u;
            for (uint i = 0u; i < 8u; i++)
                xv[i] = xb[base + i];
            acc[m] += w_dot_raw(0u, raw, d, sc, bi, xv);
        }
    }
}

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
            uint row = rb * R + rl;
            bool ok = row < pc.N;
            uint rowc = ok ? row : pc.N - 1u;
            for (uint m0 = ch * CHUNK; m0 < mend; m0 += MB) {
                float acc[MB];
                for (uint m = 0u; m < MB; m++)
                    acc[m] = 0.0;
                uint b = lane;
                // two blocks per step for one activation row (the decode
                // case: memory-bound, loads in flight matter); one per step
                // otherwise (the code stays small)
                for (; MB == 1u && b + TPR < pc.nb; b += 2u * TPR) {
                    uvec4 r0[8], r1[8];
                    float d0, s0, c0, d1, s1, c1;
                    w_load(0u, rowc, b, r0, d0, s0, c0);
                    w_load(0u, rowc, b + TPR, r1, d1, s1, c1);
                    accum(r0, d0, s0, c0, b, m0, acc);
                    accum(r1, d1, s1, c1, b + TPR, m0, acc);
                }
                for (; b < pc.nb; b += TPR) {
                    uvec4 r0[8];
                    float d0, s0, c0;
                    w_load(0u, rowc, b, r0, d0, s0, c0);
                    accum(r0, d0, s0, c0, b, m0, acc);
                }
#ifdef USE_SUBGROUP
                for (uint m = 0u; m < MB; m++)
                    for (uint o = TPR / 2u; o > 0u; o >>= 1u)
                        acc[m] += subgroupShuffleXor(acc[m], o);
                if (lane == 0u && ok)
                    for (uint m = 0u; m < MB; m++)
                        if (m0 + m < mend)
                            store(row, m0 + m, acc[m]);
#else
                if (TPR == 1u) {
                    if (ok)
                        for (uint m = 0u; m < MB; m++)
                            if (m0 + m < mend)
                                store(row, m0 + m, acc[m]);
                } else {
                    for (uint m = 0u; m < MB; m++)
                        red[(rl * MB + m) * TPR + lane] = acc[m];
                    barrier();
                    for (uint i = tid; i < R * MB; i += WG) {
                        uint r = i / MB, m = i % MB;
                        float s = 0.0;
                        for (uint l = 0u; l < TPR; l++)
                            s += red[i * TPR + l];
                        uint orow = rb * R + r;
                        if (orow < pc.N && m0 + m < mend)
                            store(orow, m0 + m, s);
                    }
                    barrier();
                }
#endif
            }
        }
    }
}
