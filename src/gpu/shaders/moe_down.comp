#version 450
// mf_moe_down_combine on the device, fused: for token t and output row i,
// v_j = Wd[idx[t, j]][i] . h[t, j] + bd[idx[t, j]][i], then
// y[t, i] = sum_j w[t, j] v_j (+ residual[t, i]) in slot order j = 0..k-1
// with every product and sum rounded (`precise`: no fused multiply-add),
// mf_combine's exact sequence.
//
// A workgroup computes R = WG / TPR rows of one token; TPR lanes share a
// row, lane l taking blocks l, l + TPR, ... of the KC slots of a pass (the
// slots' loads of a block are in flight together), then the partial sums
// are added (subgroup butterfly or shared memory) and lane 0 folds the
// pass's slots into the row's sum. Workgroups stride over (row blocks,
// tokens) = (x, y).
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

const uint R = WG / TPR;
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
shared float red[WG * KC];
#endif

void main()
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, rl = tid / TPR;
    uint H = pc.H, k = pc.k;
    uint nrb = (H + R - 1u) / R;
    for (uint t = gl_WorkGroupID.y; t < pc.T; t += gl_NumWorkGroups.y) {
        for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x) {
            uint i = rb * R + rl;
            bool ok = i < H;
            uint ic = ok ? i : H - 1u;
            float y = 0.0;
            for (uint j0 = 0u; j0 < k; j0 += KC) {
                float acc[KC];
                uint rows[KC];
                for (uint jj = 0u; jj < KC; jj++) {
                    acc[jj] = 0.0;
                    uint j = min(j0 + jj, k - 1u);
                    uint e = min(ib[pc.idx_off + t * k + j], pc.E - 1u);
                    rows[jj] = e * H + ic;
                }
                for (uint b = lane; b < pc.nb; b += TPR) {
                    for (uint jj = 0u; jj < KC; jj++) {
                        if (j0 + jj < k) {
                            uvec4 raw[8];
                            float d, sc, bi;
                            w_load(0u, rows[jj], b, raw, d, sc, bi);
                            vec4 xv[8];
                            uint base = (t * k + j0 + jj) * pc.hs + b * 8u;
                            for (uint q = 0u; q < 8u; q++)
                                xv[q] = hb[base + q];
                            acc[jj] += w_dot_raw(0u, raw, d, sc, bi, xv);
                        }
                    }
                }
#ifdef USE_SUBGROUP
                // the host keeps TPR <= the subgroup size
                for (uint jj = 0u; jj < KC; jj++)
                    for (uint o = TPR / 2u; o > 0u; o >>= 1u)
                        acc[jj] += subgroupShuffleXor(acc[jj], o);
#else
                if (TPR > 1u) {
                    for (uint jj = 0u; jj < KC; jj++)
                        red[tid * KC + jj] = acc[jj];
                    barrier();
                    if (lane == 0u)
                        for (uint jj = 0u; jj < KC; jj++) {
                            float s = 0.0;
                            for (uint l = 0u; l < TPR; l++)
                                s += red[(tid + l) * KC + jj];
                            acc[jj] = s;
                        }
                    barrier();
                }
#endif
                if (lane == 0u) {
                    for (uint jj = 0u; jj < KC; jj++) {
                        uint j = j0 + jj;
                        if (j < k) {
                            float v = acc[jj];
                            if (HAS_BIAS) {
                                precise float vb = v + bd[rows[jj]];
                                v = vb;
                            }
                            precise float pr = rw[pc.w_off + t * k + j] * v;
                            precise float sum = y + pr;
                            y = j == 0u ? pr : sum;
                        }
                    }
                }
            }
            if (lane == 0u && ok) {
                if (HAS_RES) {
                    precise float o = y + rs[pc.res_off + t * H + i];
                    y = o;
                }
                yb[pc.y_off + t * H + i] = y;
            }
        }
    }
}
