#version 450
// mf_moe_down_combine on the device: for token t and output row i,
// v_j = Wd[idx[t, j]][i] . h[t, j] + bd[idx[t, j]][i], then
// y[t, i] = sum_j w[t, j] v_j (+ residual[t, i]) in slot order j = 0..k-1
// with every product and sum rounded (`precise`: no fused multiply-add),
// mf_combine's exact sequence.
//
// A lane group of TPR lanes computes RPW consecutive rows, lane l taking
// blocks l, l + TPR, ...: per block it loads the rows' weights, decodes
// each block once and accumulates it with the h block of every pair it
// serves (w_acc_fixed), then the partial sums are added (subgroup
// butterfly or shared memory). Three phases (PHASE, one pipeline each):
//  0 fused, per token: a workgroup computes R = WG / TPR * RPW rows of one
//    token, its slots KC per pass (their loads in flight together), and
//    lane 0 folds each pass's slots into the rows' sums. Workgroups stride
//    over (row blocks, tokens) = (x, y). Every pair streams its expert's
//    rows on its own.
//  1 per expert: a workgroup computes R rows of v for up to M pairs of one
//    expert at a time (their h blocks in registers for the RPW rows) and
//    writes them to v [T k, H]. It lists the pairs
//    routed to its expert (scanning idx, which may have been written by an
//    earlier dispatch) in shared memory and stops at once when there are
//    none: each weight block is read and decoded once per M pairs.
//    Workgroups stride over (row blocks, experts) = (x, y), the experts
//    [lo, hi): all of them, or those of one part of a weight tensor split
//    over several buffers (a dispatch per part, wcache.c; phases 0 and 3
//    take one buffer).
//  2 the combine of phase 1's v, one output per invocation step.
// Phases 1 + 2 give phase 0's bits: each v_j gets the same operations in
// the same order (lanes, blocks, w_acc_fixed, reduction, bias add) and
// the combine is the same rounded sequence.
// Built with -DINT8 (MF_PREC_INT8, qint8.glsl), phases 0 and 1 quantize
// the h blocks of their pass's slots / pairs into shared memory per chunk
// of KB blocks and take integer dot products with them (phase 3: in
// registers); phases 1 + 2 still give phase 0's bits. With PREQ the h
// binding holds i8quant.comp's records of h instead (quantized once, by
// the same function, before this dispatch): every workgroup loads the
// codes rather than quantizing each block it uses again; the same bits.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint TPR = 32;
layout(constant_id = 2) const uint FMT = 3;
layout(constant_id = 3) const uint KC = 8;      // slots per pass (phase 0)
layout(constant_id = 4) const uint FLAGS = 0;   // 1: bias, 2: residual
layout(constant_id = 5) const uint RPW = 1;     // rows per lane group
layout(constant_id = 6) const uint PHASE = 0;
layout(constant_id = 7) const uint M = 1;       // pairs per pass (phase 1)

#ifdef INT8
layout(constant_id = 8) const uint KB = 32;     // staged h blocks a pair
                                                // and chunk
layout(constant_id = 9) const uint PREQ = 0;    // 1: h is quantized
                                                // (i8quant.comp)
const uint I8_ROWS = PHASE == 1u ? M : KC;
const uint I8_KB = KB;
#else
layout(constant_id = 8) const uint XKB = 0;     // phases 0 and 3: the
                                                // pass's h rows staged in
                                                // shared memory, XKB blocks
                                                // at a time (mf_qxkb; phase
                                                // 3 only whole rows); 0:
                                                // each lane loads its blocks
#endif

const uint R = WG / TPR * RPW;                  // rows per workgroup
const bool HAS_BIAS = (FLAGS & 1u) != 0u;
const bool HAS_RES = (FLAGS & 2u) != 0u;
const uint CAP = 2u * WG;                       // pair list entries
// quantized weights (qf_vecs <= 2): a block's loads are issued early
bool pre_loads() { return (FMT & 255u) >= 3u; }
const uint NA = PHASE == 1u ? M * RPW
               : PHASE == 3u ? RPW : KC * RPW;  // sums per lane
const uint NG = WG / TPR;                       // lane groups
const uint NRG = NG / KC;                       // phase 3: row groups
const uint RS = NRG * RPW;                      // phase 3: rows per workgroup
#ifdef USE_SUBGROUP
const bool SCATTER = RPW <= TPR;                // phase 3: reduce_rows scatters
#else
const bool SCATTER = false;
#endif

layout(push_constant) uniform PC {
    uint H, T, k, E, nb, soff, boff, gpr;
    uint hs;      // vec4s per h row
    uint idx_off; // uint index of idx[0]
    uint w_off;   // float index of the routing weights
    uint res_off; // float index of residual[0]
    uint y_off;   // float index of y[0]
    uint lo, hi;  // phase 1: the experts [lo, hi) this dispatch serves
    uint row0;    // the first row of the bound weight buffer (parts)
} pc;

layout(std430, binding = 0) readonly buffer Wd { uvec4 wd[]; };
layout(std430, binding = 1) readonly buffer Hb { vec4 hb[]; };
#ifdef INT8
// PREQ: the same binding as i8quant.comp's records, 3 uvec4 a block
layout(std430, binding = 1) readonly buffer Hq { uvec4 hq[]; };
#endif
layout(std430, binding = 2) readonly buffer Ib { uint ib[]; };
layout(std430, binding = 3) readonly buffer Rw { float rw[]; };
layout(std430, binding = 4) readonly buffer Bd { float bd[]; };
layout(std430, binding = 5) readonly buffer Rs { float rs[]; };
layout(std430, binding = 6) writeonly buffer Yb { float yb[]; };
layout(std430, binding = 7) buffer Vb { float vb[]; };  // v [T k, H]

#include "common.glsl"
#include "qformat.glsl"

uvec4 w_vec(uint which, uint i) { return wd[i]; }
uint w_fmt(uint which) { return FMT; }
uint w_soff(uint which) { return pc.soff; }
uint w_boff(uint which) { return pc.boff; }
uint w_nb(uint which) { return pc.nb; }
uint w_gpr(uint which) { return pc.gpr; }
uint w_row0(uint which) { return pc.row0; }

#include "qload.glsl"
#ifdef INT8
#include "qint8.glsl"
#endif

#ifndef USE_SUBGROUP
shared float red[WG * NA];
#endif
shared uint plist[CAP];
shared uint pcount;
shared float vs[NG * RPW];                      // phase 3: v of the pass
#ifndef INT8
const uint XS = XKB | 1u;                       // vec4s per staged element
                                                // row (odd: no bank
                                                // conflicts when staging)
shared vec4 xsh[(XKB == 0u ? 1u : KC * 8u) * XS];
#endif

// Phase 3: the quantized weight loads of block B of the lane group's RPW
// rows into pw and pf (a macro: arrays sized by specialization constants
// do not pass through out parameters).
#define DN_LOADS(B)                                                          \
    [[unroll]] for (uint q = 0u; q < RPW; q++) {                             \
        uvec4 r[8];                                                          \
        w_load(0u, base_row + min(i0 + q, H - 1u), B, r, pf[3u * q],         \
               pf[3u * q + 1u], pf[3u * q + 2u]);                            \
        pw[2u * q] = r[0];                                                   \
        pw[2u * q + 1u] = r[1];                                              \
    }

uint expert_of(uint p) { return min(ib[pc.idx_off + p], pc.E - 1u); }

#ifndef INT8
// Stages blocks [c0, c0 + kbn) of the h rows of pairs t k + j0 + [0, nj)
// element-major into xsh (the caller's barriers order it with the reads).
void stage_h_rows(uint t, uint j0, uint nj, uint c0, uint kbn)
{
    uint per = kbn * 8u;
    for (uint i = gl_LocalInvocationID.x; i < nj * per; i += WG) {
        uint ss = i / per, r = i - ss * per;
        uint bl = r >> 3u, c = r & 7u;
        xsh[(ss * 8u + c) * XS + bl] =
            hb[(t * pc.k + j0 + ss) * pc.hs + (c0 + bl) * 8u + c];
    }
}
#endif

void load_h(uint p, uint b, out vec4 xv[8])
{
    uint base = p * pc.hs + b * 8u;
    for (uint c = 0u; c < 8u; c++)
        xv[c] = hb[base + c];
}

#ifdef INT8
// h block b of pair p quantized: its record (PREQ) or quantized here.
void h_block_i8(uint p, uint b, out uvec4 x0, out uvec4 x1, out vec2 meta,
                out int sum)
{
    if (PREQ != 0u) {
        uint o = 3u * (p * pc.nb + b);
        x0 = hq[o];
        x1 = hq[o + 1u];
        uvec4 m = hq[o + 2u];
        meta = uintBitsToFloat(m.xy);
        sum = int(m.z);
    } else {
        vec4 xv[8];
        load_h(p, b, xv);
        i8_quantize(xv, x0, x1, meta, sum);
    }
}

// h block b of pair p into staged slot `slot`.
void stage_h(uint slot, uint p, uint b)
{
    uvec4 x0, x1;
    vec2 meta;
    int sum;
    h_block_i8(p, b, x0, x1, meta, sum);
    i8_stage_q(slot, x0, x1, meta, sum);
}
#endif

// Adds the lanes' partial sums acc[0..na) (na uniform over the workgroup);
// lane 0 gets the totals.
void reduce(inout float acc[NA], uint na)
{
    uint tid = gl_LocalInvocationID.x;
#ifdef USE_SUBGROUP
    // the host keeps TPR <= the subgroup size
    [[unroll]] for (uint a = 0u; a < NA; a++)
        if (a < na)
            [[unroll]] for (uint o = TPR / 2u; o > 0u; o >>= 1u)
                acc[a] += subgroupShuffleXor(acc[a], o);
#else
    if (TPR > 1u) {
        [[unroll]] for (uint a = 0u; a < NA; a++)
            red[tid * NA + a] = acc[a];
        barrier();
        if (tid % TPR == 0u)
            [[unroll]] for (uint a = 0u; a < NA; a++) {
                float s = 0.0;
                for (uint l = 0u; l < TPR; l++)
                    s += red[(tid + l) * NA + a];
                acc[a] = s;
            }
        barrier();
    }
#endif
}

// v of row `row` (of the stacked [E H] rows) from its reduced sum.
float with_bias(float v, uint row)
{
    if (HAS_BIAS) {
        precise float vb = v + bd[row];
        v = vb;
    }
    return v;
}

void fused()
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
                float acc[NA];
                uint base_row[KC];
                for (uint jj = 0u; jj < KC; jj++) {
                    uint j = min(j0 + jj, k - 1u);
                    base_row[jj] = expert_of(t * k + j) * H;
                    for (uint q = 0u; q < RPW; q++)
                        acc[jj * RPW + q] = 0.0;
                }
#ifdef INT8
                // the slots' h blocks quantized into shared memory, KB
                // blocks at a time
                uint nj = min(KC, k - j0);
                for (uint c0 = 0u; c0 < pc.nb; c0 += KB) {
                    uint kbn = min(KB, pc.nb - c0);
                    barrier();
                    for (uint s = tid; s < nj * kbn; s += WG) {
                        uint jj = s / kbn, bl = s - jj * kbn;
                        stage_h(jj * KB + bl, t * k + j0 + jj, c0 + bl);
                    }
                    barrier();
                    for (uint b = c0 + lane; b < c0 + kbn; b += TPR)
                        for (uint jj = 0u; jj < KC; jj++)
                            if (jj < nj)
                                for (uint q = 0u; q < RPW; q++) {
                                    uvec4 raw[8];
                                    float d, sc, bi;
                                    w_load(0u, base_row[jj] + min(i0 + q, H - 1u), b,
                                           raw, d, sc, bi);
                                    uint a = jj * RPW + q;
                                    acc[a] = i8_block(FMT & 255u, raw[0], raw[1], d, sc,
                                                      bi, jj * KB + b - c0, acc[a]);
                                }
                }
#else
                // XKB != 0: the pass's h rows staged in shared memory per
                // chunk of XKB blocks (XKB = nb or a multiple of TPR: every
                // lane takes the same blocks in the same order)
                uint nj = min(KC, k - j0);
                uint step = XKB == 0u ? pc.nb : XKB;
                for (uint c0 = 0u; c0 < pc.nb; c0 += step) {
                  uint kbn = min(step, pc.nb - c0);
                  if (XKB != 0u) {
                    barrier();
                    stage_h_rows(t, j0, nj, c0, kbn);
                    barrier();
                  }
                  for (uint b = c0 + lane; b < c0 + kbn; b += TPR) {
                    for (uint jj = 0u; jj < KC; jj++) {
                        if (j0 + jj < k) {
                            vec4 xv[8];
                            if (XKB != 0u)
                                [[unroll]] for (uint c = 0u; c < 8u; c++)
                                    xv[c] = xsh[(jj * 8u + c) * XS + b - c0];
                            else
                                load_h(t * k + j0 + jj, b, xv);
                            for (uint q = 0u; q < RPW; q++) {
                                uvec4 raw[8];
                                float d, sc, bi;
                                w_load(0u, base_row[jj] + min(i0 + q, H - 1u), b,
                                       raw, d, sc, bi);
                                vec4 w[8];
                                w_decode(0u, raw, sc, bi, w);
                                uint a = jj * RPW + q;
                                acc[a] = w_acc_fixed(0u, w, d, xv, acc[a]);
                            }
                        }
                    }
                  }
                }
#endif
                reduce(acc, NA);
                if (lane == 0u) {
                    for (uint jj = 0u; jj < KC; jj++) {
                        uint j = j0 + jj;
                        if (j >= k)
                            continue;
                        float wj = rw[pc.w_off + t * k + j];
                        for (uint q = 0u; q < RPW; q++) {
                            float v = with_bias(acc[jj * RPW + q],
                                                base_row[jj] + min(i0 + q, H - 1u));
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

// The sums acc[0..RPW) of a lane group added over its TPR lanes; returns
// 1 in the lanes that hold a total, its row in `row`. The subgroup form
// scatters the rows while it reduces: each step of the butterfly sends
// half of the lane's sums to its partner, keeping the other half, while
// rows remain to split (RPW <= TPR), so a row's total is the butterfly's
// (the same pairs added in the same order) in fewer shuffles.
bool reduce_rows(inout float acc[NA], out uint row)
{
    uint lane = gl_LocalInvocationID.x % TPR;
    row = 0u;
#ifdef USE_SUBGROUP
    if (SCATTER) {
        uint n = RPW;
        [[unroll]] for (uint o = TPR / 2u; o > 0u; o >>= 1u) {
            if (n > 1u) {
                uint half_ = n / 2u;
                bool up = (lane & o) != 0u;
                [[unroll]] for (uint i = 0u; i < NA / 2u; i++)
                    if (i < half_) {
                        float send = up ? acc[i] : acc[i + half_];
                        float keep = up ? acc[i + half_] : acc[i];
                        float got = subgroupShuffleXor(send, o);
                        acc[i] = keep + got;
                    }
                if (up)
                    row += half_;
                n = half_;
            } else {
                acc[0] += subgroupShuffleXor(acc[0], o);
            }
        }
        // every lane holds its row's total; one lane a row stores it
        return (lane & (TPR / RPW - 1u)) == 0u;
    }
#endif
    reduce(acc, NA);
    return lane == 0u;
}

// Phase 3, fused per token with slot groups: lane group g takes slot
// s = g % KC of each pass and the RPW rows of row group g / KC; its
// lane l quantizes (INT8) or loads the slot's h blocks l, l + TPR, ...
// itself, in registers, while the weight loads of its RPW rows are in
// flight. The slots' v meet in shared memory, where RS threads fold them
// into y in slot order: phase 0's operations for every v and y.
void fused_slots()
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, g = tid / TPR;
    uint s = g % KC, rg = g / KC;
    uint H = pc.H, k = pc.k;
    uint nrb = (H + RS - 1u) / RS;
    const uint t8 = FMT & 255u;
    for (uint t = gl_WorkGroupID.y; t < pc.T; t += gl_NumWorkGroups.y) {
        for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x) {
            uint i0 = rb * RS + rg * RPW;
            float y = 0.0;
            for (uint j0 = 0u; j0 < k; j0 += KC) {
                bool live = rg < NRG && j0 + s < k;
                uint p = t * k + min(j0 + s, k - 1u);
                uint base_row = expert_of(p) * H;
                float acc[NA];
                [[unroll]] for (uint q = 0u; q < NA; q++)
                    acc[q] = 0.0;
                // the weight loads of the lane's first block in flight
                // while the pass's h rows are staged
                uvec4 pw[2u * RPW];
                float pf[3u * RPW];
                if (live && pre_loads() && lane < pc.nb)
                    DN_LOADS(lane)
#ifndef INT8
                if (XKB != 0u) {
                    // the pass's h rows, element-major (the previous
                    // pass's readers are past two barriers)
                    stage_h_rows(t, j0, min(KC, k - j0), 0u, pc.nb);
                    barrier();
                }
#endif
                if (live) {
                    for (uint b = lane; b < pc.nb; b += TPR) {
                        if (pre_loads() && b != lane)
                            DN_LOADS(b)
#ifdef INT8
                        uvec4 x0, x1;
                        vec2 meta;
                        int xsum;
                        h_block_i8(p, b, x0, x1, meta, xsum);
                        [[unroll]] for (uint q = 0u; q < RPW; q++) {
                            int isum = i8_idot(t8, pw[2u * q], pw[2u * q + 1u], x0, x1, xsum);
                            acc[q] = i8_acc(t8, isum, pf[3u * q], pf[3u * q + 1u],
                                            pf[3u * q + 2u], meta, acc[q]);
                        }
#else
                        vec4 xv[8];
                        if (XKB != 0u)
                            [[unroll]] for (uint c = 0u; c < 8u; c++)
                                xv[c] = xsh[(s * 8u + c) * XS + b];
                        else
                            load_h(p, b, xv);
                        [[unroll]] for (uint q = 0u; q < RPW; q++) {
                            uvec4 raw[8];
                            float d, sc, bi;
                            if (pre_loads()) {
                                [[unroll]] for (uint c = 0u; c < 8u; c++)
                                    raw[c] = c < 2u ? pw[2u * q + c] : uvec4(0u);
                                d = pf[3u * q];
                                sc = pf[3u * q + 1u];
                                bi = pf[3u * q + 2u];
                            } else {
                                w_load(0u, base_row + min(i0 + q, H - 1u), b, raw, d,
                                       sc, bi);
                            }
                            vec4 w[8];
                            w_decode(0u, raw, sc, bi, w);
                            acc[q] = w_acc_fixed(0u, w, d, xv, acc[q]);
                        }
#endif
                    }
                }
                uint row;
                bool holds = reduce_rows(acc, row);
                barrier(); // the previous pass's vs read
                if (live && holds) {
                    if (SCATTER)
                        vs[s * RS + rg * RPW + row] =
                            with_bias(acc[0], base_row + min(i0 + row, H - 1u));
                    else
                        [[unroll]] for (uint q = 0u; q < RPW; q++)
                            vs[s * RS + rg * RPW + q] =
                                with_bias(acc[q], base_row + min(i0 + q, H - 1u));
                }
                barrier();
                if (tid < RS)
                    for (uint ss = 0u; ss < KC; ss++) {
                        uint j = j0 + ss;
                        if (j >= k)
                            break;
                        float wj = rw[pc.w_off + t * k + j];
                        precise float pr = wj * vs[ss * RS + tid];
                        precise float sum = y + pr;
                        y = j == 0u ? pr : sum;
                    }
            }
            uint i = rb * RS + tid;
            if (tid < RS && i < H) {
                float o = y;
                if (HAS_RES) {
                    precise float r = o + rs[pc.res_off + t * H + i];
                    o = r;
                }
                yb[pc.y_off + t * H + i] = o;
            }
        }
    }
}

// Phase 1: row block rb of v for the n <= M pairs pr[0..n) of expert e.
void row_block(uint e, uint rb, uint pr[M], uint n)
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, rl = tid / TPR;
    uint H = pc.H;
    uint i0 = rb * R + rl * RPW;
    float acc[NA];
    [[unroll]] for (uint a = 0u; a < NA; a++)
        acc[a] = 0.0;
#ifdef INT8
    for (uint c0 = 0u; c0 < pc.nb; c0 += KB) {
        uint kbn = min(KB, pc.nb - c0);
        barrier();
        for (uint s = tid; s < n * kbn; s += WG) {
            uint m = s / kbn, bl = s - m * kbn;
            stage_h(m * KB + bl, pr[m], c0 + bl);
        }
        barrier();
        for (uint b = c0 + lane; b < c0 + kbn; b += TPR) {
            uvec4 pw[2u * RPW];
            float pf[3u * RPW];
            [[unroll]] for (uint q = 0u; q < RPW; q++) {
                uvec4 r[8];
                w_load(0u, e * H + min(i0 + q, H - 1u), b, r, pf[3u * q],
                       pf[3u * q + 1u], pf[3u * q + 2u]);
                pw[2u * q] = r[0];
                pw[2u * q + 1u] = r[1];
            }
            [[unroll]] for (uint m = 0u; m < M; m++)
                if (m < n)
                    [[unroll]] for (uint q = 0u; q < RPW; q++) {
                        uint a = m * RPW + q;
                        acc[a] = i8_block(FMT & 255u, pw[2u * q], pw[2u * q + 1u],
                                          pf[3u * q], pf[3u * q + 1u], pf[3u * q + 2u],
                                          m * KB + b - c0, acc[a]);
                    }
        }
    }
#else
    for (uint b = lane; b < pc.nb; b += TPR) {
        // the pairs' h blocks stay in registers for the RPW rows; each
        // weight block is decoded once for all the pairs
        vec4 xs[M * 8u];
        [[unroll]] for (uint m = 0u; m < M; m++)
            if (m < n) {
                uint base = pr[m] * pc.hs + b * 8u;
                [[unroll]] for (uint c = 0u; c < 8u; c++)
                    xs[m * 8u + c] = hb[base + c];
            }
        // quantized rows (at most 2 uvec4 a block): every weight load of
        // the block in flight before the first is used
        uvec4 pw[2u * RPW];
        float pf[3u * RPW];
        if (pre_loads())
            [[unroll]] for (uint q = 0u; q < RPW; q++) {
                uvec4 r[8];
                w_load(0u, e * H + min(i0 + q, H - 1u), b, r, pf[3u * q],
                       pf[3u * q + 1u], pf[3u * q + 2u]);
                pw[2u * q] = r[0];
                pw[2u * q + 1u] = r[1];
            }
        [[unroll]] for (uint q = 0u; q < RPW; q++) {
            uvec4 raw[8];
            float d, sc, bi;
            if (pre_loads()) {
                [[unroll]] for (uint c = 0u; c < 8u; c++)
                    raw[c] = c < 2u ? pw[2u * q + c] : uvec4(0u);
                d = pf[3u * q];
                sc = pf[3u * q + 1u];
                bi = pf[3u * q + 2u];
            } else {
                w_load(0u, e * H + min(i0 + q, H - 1u), b, raw, d, sc, bi);
            }
            vec4 w[8], xv[8];
            w_decode(0u, raw, sc, bi, w);
            [[unroll]] for (uint m = 0u; m < M; m++)
                if (m < n) {
                    [[unroll]] for (uint c = 0u; c < 8u; c++)
                        xv[c] = xs[m * 8u + c];
                    uint a = m * RPW + q;
                    acc[a] = w_acc_fixed(0u, w, d, xv, acc[a]);
                }
        }
    }
#endif
    reduce(acc, n * RPW);
    if (lane == 0u)
        [[unroll]] for (uint m = 0u; m < M; m++)
            [[unroll]] for (uint q = 0u; q < RPW; q++) {
                uint i = i0 + q;
                if (m < n && i < H)
                    vb[pr[m] * H + i] = with_bias(acc[m * RPW + q], e * H + i);
            }
}

void per_expert()
{
    uint tid = gl_LocalInvocationID.x;
    uint nrb = (pc.H + R - 1u) / R;
    uint P = pc.T * pc.k;
    for (uint e = pc.lo + gl_WorkGroupID.y; e < pc.hi; e += gl_NumWorkGroups.y) {
        uint pos = 0u;
        for (;;) {
            // list the next pairs of expert e: whole scans of WG entries
            // while the list has room for one more
            if (tid == 0u)
                pcount = 0u;
            uint n;
            for (;;) {
                barrier();
                n = pcount;
                barrier();
                if (pos >= P || n > CAP - WG)
                    break;
                uint p = pos + tid;
                if (p < P && expert_of(p) == e)
                    plist[atomicAdd(pcount, 1u)] = p;
                pos += WG;
            }
            if (n == 0u)
                break;
            for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x)
                for (uint c = 0u; c < n; c += M) {
                    uint pr[M];
                    for (uint m = 0u; m < M; m++)
                        pr[m] = plist[min(c + m, n - 1u)];
                    row_block(e, rb, pr, min(M, n - c));
                }
            // a further scan writes the list only after its barriers
            if (pos >= P)
                break;
        }
    }
}

// Phase 2: y[t, i] from v, as phase 0's lane 0 folds its sums.
void combine()
{
    uint H = pc.H, k = pc.k;
    uint total = pc.T * H;
    uint step = gl_NumWorkGroups.x * WG;
    for (uint o = gl_GlobalInvocationID.x; o < total; o += step) {
        uint t = o / H, i = o - t * H;
        float y = 0.0;
        for (uint j = 0u; j < k; j++) {
            float wj = rw[pc.w_off + t * k + j];
            float v = vb[(t * k + j) * H + i];
            precise float pr = wj * v;
            precise float sum = y + pr;
            y = j == 0u ? pr : sum;
        }
        if (HAS_RES) {
            precise float r = y + rs[pc.res_off + o];
            y = r;
        }
        yb[pc.y_off + o] = y;
    }
}

void main()
{
    if (PHASE == 0u)
        fused();
    else if (PHASE == 3u)
        fused_slots();
    else if (PHASE == 1u)
        per_expert();
    else
        combine();
}
