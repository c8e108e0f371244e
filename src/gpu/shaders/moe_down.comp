#version 450
// mf_moe_down_combine on the device, fused: for token t and output row i,
// v_j = Wd[idx[t, j]][i] . h[t, j] + bd[idx[t, j]][i], then
// y[t, i] = sum_j w[t, j] v_j (+ residual[t, i]) in slot order j = 0..k-1
// with every product and sum rounded (`precise`: no fused multiply-add),
// mf_combine's exact sequence.
//
// A workgroup computes R = WG / TPR * RPW rows of one token; a group of TPR
// lanes computes RPW consecutive rows, lane l taking blocks l, l + TPR, ...
// of the KC slots of a pass: per block and slot it loads the slot's
// activations once (kept in registers) and the RPW rows' weights (all
// loads of a block in flight together), then the partial sums are added
// (subgroup butterfly or shared memory) and lane 0 folds the pass's slots
// into each row's sum. Workgroups stride over (row blocks, tokens) = (x, y).
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint TPR = 32;
layout(constant_id = 2) const uint FMT = 3;
layout(constant_id = 3) const uint KC = 8;      // slots per pass
layout(constant_id = 4) const uint FLAGS = 0;   // 1: bias, 2: residual
layout(constant_id = 5) const uint RPW = 1;     // rows per lane group

const uint R = WG / TPR * RPW;                  // rows per workgroup
const bool HAS_BIAS = (FLAGS & 1u) != 0u;
const bool HAS_RES = (FLAGS & 2u) != 0u;

layout(push_constant) uniform PC {
    uint H, T, k, E, nb, soff, boff, gpr;
    uint hs;      // vec4s per h row
    uint idx_off; // uint index of idx[0]
    uint w_off;   // float index of the routing weights
    uint res_off; // float index of residual[0]
    uint y_off;   // float index of y[0]
} pc;

layout(std430, binding = 0) readonly buffer Wd { uvec4 wd[]; };
layout(std430, binding = 1) readonly buffer Hb { vec4 hb[]; };
layout(std430, binding = 2) readonly buffer Ib { uint ib[]; };
layout(std430, binding = 3) readonly buffer Rw { float rw[]; };
layout(std430, binding = 4) readonly buffer Bd { float bd[]; };
layout(std430, binding = 5) readonly buffer Rs { float rs[]; };
layout(std430, binding = 6) writeonly buffer Yb { float yb[]; };

#include "common.glsl"
#include "qformat.glsl"

uvec4 w_vec(uint which, uint i) { return wd[i]; }
uint w_fmt(uint which) { return FMT; }
uint w_soff(uint which) { return pc.soff; }
uint w_boff(uint which) { return pc.boff; }
uint w_nb(uint which) { return pc.nb; }
uint w_gpr(uint which) { return pc.gpr; }

#include "qload.glsl"

#ifndef USE_SUBGROUP
shared float red[WG * KC * RPW];
#endif

void main()
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, rl = tid / TPR;
    uint H = pc.H, k = pc.k;
    uint nrb = (H + R - 1u) / R;
    for (uint t = gl_WorkGroupID.y; t < pc.T; t += gl_NumWorkGroups.y) {
        for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x) {
            uint i0 = rb * R + rl * RPW;
            float y[RPW];
            for (uint q = 0u; q < RPW; q++)
                y[q] = 0.0;
            for (uint j0 = 0u; j0 < k; j0 += KC) {
                float acc[KC * RPW];
                uint base_row[KC];
                for (uint jj = 0u; jj < KC; jj++) {
                    uint j = min(j0 + jj, k - 1u);
                    uint e = min(ib[pc.idx_off + t * k + j], pc.E - 1u);
                    base_row[jj] = e * H;
                    for (uint q = 0u; q < RPW; q++)
                        acc[jj * RPW + q] = 0.0;
                }
                for (uint b = lane; b < pc.nb; b += TPR) {
                    for (uint jj = 0u; jj < KC; jj++) {
                        if (j0 + jj < k) {
                            vec4 xv[8];
                            uint base = (t * k + j0 + jj) * pc.hs + b * 8u;
                            for (uint c = 0u; c < 8u; c++)
                                xv[c] = hb[base + c];
                            for (uint q = 0u; q < RPW; q++) {
                                uvec4 raw[8];
                                float d, sc, bi;
                                w_load(0u, base_row[jj] + min(i0 + q, H - 1u), b,
                                       raw, d, sc, bi);
                                acc[jj * RPW + q] += w_dot_raw(0u, raw, d, sc, bi, xv);
                            }
                        }
                    }
                }
#ifdef USE_SUBGROUP
                // the host keeps TPR <= the subgroup size
                for (uint a = 0u; a < KC * RPW; a++)
                    for (uint o = TPR / 2u; o > 0u; o >>= 1u)
                        acc[a] += subgroupShuffleXor(acc[a], o);
#else
                if (TPR > 1u) {
                    for (uint a = 0u; a < KC * RPW; a++)
                        red[tid * KC * RPW + a] = acc[a];
                    barrier();
                    if (lane == 0u)
                        for (uint a = 0u; a < KC * RPW; a++) {
                            float s = 0.0;
                            for (uint l = 0u; l < TPR; l++)
                                s += red[(tid + l) * KC * RPW + a];
                            acc[a] = s;
                        }
                    barrier();
                }
#endif
                if (lane == 0u) {
                    for (uint jj = 0u; jj < KC; jj++) {
                        uint j = j0 + jj;
                        if (j >= k)
                            continue;
                        float wj = rw[pc.w_off + t * k + j];
                        for (uint q = 0u; q < RPW; q++) {
                            float v = acc[jj * RPW + q];
                            if (HAS_BIAS) {
                                precise float vb = v + bd[base_row[jj] + min(i0 + q, H - 1u)];
                                v = vb;
                            }
                            precise float pr = wj * v;
                            precise float sum = y[q] + pr;
                            y[q] = j == 0u ? pr : sum;
                        }
                    }
                }
            }
            if (lane == 0u)
                for (uint q = 0u; q < RPW; q++) {
                    uint i = i0 + q;
                    if (i >= H)
                        continue;
                    float o = y[q];
                    if (HAS_RES) {
                        precise float r = o + rs[pc.res_off + t * H + i];
                        o = r;
                    }
                    yb[pc.y_off + t * H + i] = o;
                }
        }
    }
}
