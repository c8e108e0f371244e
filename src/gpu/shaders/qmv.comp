#version 450
// mf_qmv on the device: y [M, N] = act(x [M, K] w^T + bias), w resident in
// the layout of qformat.glsl (read packed, one uvec4 per 16 bytes of codes;
// never expanded in memory).
//
// A workgroup computes R = WG / TPR * RPW output rows for a chunk of up to
// 32 activation rows; a group of TPR lanes computes RPW consecutive rows,
// lane l taking blocks l, l + TPR, ... With one activation row per pass
// (decode) the lane loads the activation block once and the RPW rows'
// weight blocks (all in flight together); with MB rows per pass each
// weight block is decoded once and dotted with the MB activation blocks.
// The passes over a chunk follow each other in the workgroup, so after the
// first the row block's weights come from the cache: the weights stream
// from memory once per 32 activation rows. The lanes' partial sums are
// added by a subgroup butterfly (USE_SUBGROUP; the host keeps TPR within
// one subgroup, so there is no barrier) or through shared memory (none
// needed with one lane per row). Row blocks and chunks are strided over
// the dispatched workgroups (x: row blocks, y: chunks).
// With one activation row per pass and XKB > 0 (the form qmv_xstage), the
// row is first staged in shared memory, XKB blocks at a time (loads by
// consecutive invocations of consecutive vec4s, element-major with an odd
// stride so that a lane group's reads of one vec4 of consecutive blocks
// are consecutive words): from device memory each lane would read 128
// contiguous bytes, and a warp's load touch a cache line per lane. XKB is
// nb or a multiple of TPR, so every lane takes the same blocks in the same
// order: the bits do not depend on it.
// Built with -DINT8 (MF_PREC_INT8, qint8.glsl): the pass's activation rows
// are quantized into shared memory per chunk of KB blocks, and each weight
// block's integer dot products with them replace the f32 ones.
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
layout(constant_id = 4) const uint RPW = 1;      // rows per lane group

#ifdef INT8
layout(constant_id = 5) const uint KB = 64;      // staged x blocks a row
                                                 // and chunk
const uint I8_ROWS = MB;
const uint I8_KB = KB;
#else
layout(constant_id = 5) const uint XKB = 0;      // staged x blocks a chunk
                                                 // (MB = 1); 0: none
const uint XS = XKB | 1u;                        // stride of xsh
shared vec4 xsh[XKB > 0u ? 8u * XS : 1u];
#endif

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
uint w_row0(uint which) { return 0u; }  // the host binds a part's rows

#include "qload.glsl"
#ifdef INT8
#include "qint8.glsl"
#endif

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

void load_x(uint m, uint b, out vec4 xv[8])
{
    uint base = m * pc.xs + b * 8u;
    for (uint i = 0u; i < 8u; i++)
        xv[i] = xb[base + i];
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
#ifdef INT8
                // the pass's activation rows quantized into shared memory,
                // KB blocks at a time; each weight block's integer dot
                // products with all of them
                uint nm = min(MB, mend - m0);
                for (uint c0 = 0u; c0 < pc.nb; c0 += KB) {
                    uint kbn = min(KB, pc.nb - c0);
                    barrier();
                    for (uint s = tid; s < nm * kbn; s += WG) {
                        uint m = s / kbn, bl = s - m * kbn;
                        vec4 xv[8];
                        load_x(m0 + m, c0 + bl, xv);
                        i8_stage(m * KB + bl, xv);
                    }
                    barrier();
                    for (uint b = c0 + lane; b < c0 + kbn; b += TPR)
                        for (uint q = 0u; q < RPW; q++) {
                            uvec4 raw[8];
                            float d, sc, bi;
                            w_load(0u, min(r0 + q, pc.N - 1u), b, raw, d, sc, bi);
                            for (uint m = 0u; m < MB; m++)
                                if (m < nm)
                                    acc[q * MB + m] = i8_block(FMT & 255u, raw[0], raw[1],
                                                               d, sc, bi, m * KB + b - c0,
                                                               acc[q * MB + m]);
                        }
                }
#else
                if (MB == 1u && XKB > 0u) {
                    // the row staged XKB blocks at a time
                    for (uint c0 = 0u; c0 < pc.nb; c0 += XKB) {
                        uint kbn = min(XKB, pc.nb - c0);
                        barrier();
                        for (uint s = tid; s < kbn * 8u; s += WG)
                            xsh[(s & 7u) * XS + (s >> 3u)] =
                                xb[m0 * pc.xs + c0 * 8u + s];
                        barrier();
                        for (uint b = c0 + lane; b < c0 + kbn; b += TPR) {
                            vec4 xv[8];
                            for (uint i = 0u; i < 8u; i++)
                                xv[i] = xsh[i * XS + (b - c0)];
                            for (uint q = 0u; q < RPW; q++) {
                                uvec4 raw[8];
                                float d, sc, bi;
                                w_load(0u, min(r0 + q, pc.N - 1u), b, raw, d, sc, bi);
                                acc[q] += w_dot_raw(0u, raw, d, sc, bi, xv);
                            }
                        }
                    }
                } else
                for (uint b = lane; b < pc.nb; b += TPR) {
                    if (MB == 1u) {
                        // one activation row: its block stays in registers
                        // for the RPW weight rows
                        vec4 xv[8];
                        load_x(m0, b, xv);
                        for (uint q = 0u; q < RPW; q++) {
                            uvec4 raw[8];
                            float d, sc, bi;
                            w_load(0u, min(r0 + q, pc.N - 1u), b, raw, d, sc, bi);
                            acc[q] += w_dot_raw(0u, raw, d, sc, bi, xv);
                        }
                    } else {
                        // several activation rows: each weight block is
                        // decoded once for all of them
                        for (uint q = 0u; q < RPW; q++) {
                            uvec4 raw[8];
                            float d, sc, bi;
                            w_load(0u, min(r0 + q, pc.N - 1u), b, raw, d, sc, bi);
                            vec4 w[8];
                            uint t = FMT & 255u;
                            qf_decode(t, FMT >> 16u, raw, sc, bi, w);
                            for (uint m = 0u; m < MB; m++) {
                                if (m0 + m < mend) {
                                    vec4 xv[8];
                                    load_x(m0 + m, b, xv);
                                    float s = qf_dot8(w, xv);
                                    acc[q * MB + m] += qf_has_d(t) ? d * s : s;
                                }
                            }
                        }
                    }
                }
#endif
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
