#version 450
// mf_moe_gate_up on the device: for each (token t, slot j) pair p = t k + j
// with e = idx[p], h[p, f] = glu(Wg[e] x[t] + bg, Wu[e] x[t] + bu) for
// f < F. Gate and up rows of an output come from the SEPARATE tensors, or
// from one tensor's CONCAT ([g | u] rows per expert) or INTERLEAVED rows
// (g0 u0 g1 u1 ...); biases likewise.
//
// A workgroup computes R = WG / TPR * RPW outputs for up to M pairs of one
// expert; a group of TPR lanes computes RPW consecutive outputs, lane l
// taking blocks l, l + TPR, ...: per block it loads the pairs' activation
// blocks into registers, then the gate and up rows of its RPW outputs,
// decodes each weight block once and accumulates it with every pair's
// activations (w_acc_fixed); then the partial sums are added (subgroup
// butterfly: every lane finishes one output; or shared memory: lane 0
// finishes them) with biases and the GLU. Two modes (GROUPED, chosen per dispatch by the host):
//  - per pair (GROUPED = 0, M = 1): workgroups stride over (output blocks,
//    pairs) = (x, y). A pair streams its expert's rows on its own.
//  - per expert (GROUPED = 1): workgroups stride over (output blocks,
//    experts) = (x, y). The workgroup lists the pairs routed to its expert
//    (scanning idx, which may have been written by an earlier dispatch) in
//    shared memory, stops at once when there are none, and takes them M at
//    a time: each weight block is read and decoded once per M pairs.
// Each output gets the same operations in the same order in both modes
// (the same lanes and blocks, w_acc_fixed, the same reduction), so the
// modes give identical bits.
// A dispatch serves the experts [lo, hi): all of them, or those of one
// part of a weight tensor split over several buffers (the host records a
// dispatch per part, wcache.c); in per-pair mode it skips the other
// pairs. Which dispatch computes an output does not change its bits.
// Built with -DINT8 (MF_PREC_INT8, qint8.glsl): per chunk of KB blocks
// the pairs' activation blocks are quantized into shared memory, then the
// same lanes take the same blocks, integer dot products in place of the
// decode and the multiply-adds; the modes still give identical bits.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
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
layout(constant_id = 6) const uint GROUPED = 0;
layout(constant_id = 7) const uint M = 1;     // pairs per pass (1 per pair)

#ifdef INT8
layout(constant_id = 8) const uint KB = 64;   // staged activation blocks a
                                              // pair and chunk
const uint I8_ROWS = M;
const uint I8_KB = KB;
#else
layout(constant_id = 8) const uint XKB = 0;   // staged activation blocks a
                                              // pair and chunk (0: none)
layout(constant_id = 9) const uint NEXTB = 0; // 1: unstaged too, the next
                                              // block's weight loads in
                                              // flight (staged: always)
#endif

const uint R = WG / TPR * RPW;                // outputs per workgroup
const uint KIND = MODE & 15u;
const uint LAYOUT = (MODE >> 4u) & 15u;       // mf_glu_layout
const uint HAS_BG = (MODE >> 8u) & 1u;
const uint HAS_BU = (MODE >> 9u) & 1u;
const uint CAP = 2u * WG;                     // pair list entries
// both tensors quantized (qf_vecs <= 2): a block's loads are issued early
// (a function: glslc's optimizer mishandles this as a constant)
bool pre_loads() { return (FMT_G & 255u) >= 3u && (FMT_U & 255u) >= 3u; }

layout(push_constant) uniform PC {
    uint F, P, k, E, nb;
    uint soff_g, boff_g, gpr_g, soff_u, boff_u, gpr_u;
    uint xs;      // vec4s per activation row
    uint hs;      // floats per h row
    uint idx_off; // uint index of idx[0]
    float limit, alpha;
    uint lo, hi;  // the experts [lo, hi) this dispatch serves (parts)
    uint row0_g, row0_u; // first rows of the bound gate / up buffers
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
uint w_row0(uint which) { return which == 0u ? pc.row0_g : pc.row0_u; }

#include "qload.glsl"
#ifdef INT8
#include "qint8.glsl"
#endif

#ifndef USE_SUBGROUP
shared float red[2u * M * RPW * WG];
#endif
shared uint plist[CAP];
shared uint pcount;
#ifndef INT8
const uint XS = XKB | 1u;                     // vec4s per staged element
                                              // row (odd: no bank conflicts
                                              // when staging)
shared vec4 xsh[M * 8u * XS];

// The quantized gate and up rows' loads of block B for the RPW outputs
// into pw and pf (a macro: arrays sized by specialization constants do
// not pass through out parameters)
#define GU_LOADS(B)                                                          \
    [[unroll]] for (uint q = 0u; q < RPW; q++) {                             \
        uvec4 r[8];                                                          \
        w_load(0u, rg[q], B, r, pf[6u * q], pf[6u * q + 1u], pf[6u * q + 2u]); \
        pw[4u * q] = r[0];                                                   \
        pw[4u * q + 1u] = r[1];                                              \
        w_load(1u, ru[q], B, r, pf[6u * q + 3u], pf[6u * q + 4u],            \
               pf[6u * q + 5u]);                                             \
        pw[4u * q + 2u] = r[0];                                              \
        pw[4u * q + 3u] = r[1];                                              \
    }
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

uint expert_of(uint p) { return min(ib[pc.idx_off + p], pc.E - 1u); }

// h[p, f] from the gate and up sums of output f (< F, else nothing) of
// expert e.
void finish(uint e, uint f, uint p, float g, float u)
{
    if (f >= pc.F)
        return;
    uint rg, ru;
    rows_of(e, f, rg, ru);
    if (HAS_BG != 0u) {
        precise float v = g + bg[rg];
        g = v;
    }
    if (HAS_BU != 0u) {
        precise float v = u + bu[ru];
        u = v;
    }
    hb[p * pc.hs + f] = glu_apply(KIND, g, u, pc.limit, pc.alpha);
}

// Row block rb of the n <= M pairs pr[0..n) of expert e (n uniform over
// the workgroup).
void row_block(uint e, uint rb, uint pr[M], uint n)
{
    uint tid = gl_LocalInvocationID.x;
    uint lane = tid % TPR, rl = tid / TPR;
    uint F = pc.F;
    uint f0 = rb * R + rl * RPW;
    uint rg[RPW], ru[RPW];
    float ag[M * RPW], au[M * RPW];
    [[unroll]] for (uint q = 0u; q < RPW; q++)
        rows_of(e, min(f0 + q, F - 1u), rg[q], ru[q]);
    [[unroll]] for (uint a = 0u; a < M * RPW; a++) {
        ag[a] = 0.0;
        au[a] = 0.0;
    }
#ifdef INT8
    // INT8: per chunk of KB blocks the pairs' activation blocks are
    // quantized into shared memory (one block per invocation), then every
    // lane takes its blocks of the chunk as below, integer dot products
    // replacing the decode and the multiply-adds
    const uint tg = FMT_G & 255u, tu = FMT_U & 255u;
    for (uint c0 = 0u; c0 < pc.nb; c0 += KB) {
        uint kbn = min(KB, pc.nb - c0);
        barrier();
        for (uint i = tid; i < n * kbn; i += WG) {
            uint m = i / kbn, bl = i - m * kbn;
            uint base = (pr[m] / pc.k) * pc.xs + (c0 + bl) * 8u;
            vec4 xv[8];
            [[unroll]] for (uint c = 0u; c < 8u; c++)
                xv[c] = xb[base + c];
            i8_stage(m * KB + bl, xv);
        }
        barrier();
        for (uint b = c0 + lane; b < c0 + kbn; b += TPR) {
            uvec4 pw[4u * RPW];
            float pf[6u * RPW];
            [[unroll]] for (uint q = 0u; q < RPW; q++) {
                uvec4 r[8];
                w_load(0u, rg[q], b, r, pf[6u * q], pf[6u * q + 1u], pf[6u * q + 2u]);
                pw[4u * q] = r[0];
                pw[4u * q + 1u] = r[1];
                w_load(1u, ru[q], b, r, pf[6u * q + 3u], pf[6u * q + 4u], pf[6u * q + 5u]);
                pw[4u * q + 2u] = r[0];
                pw[4u * q + 3u] = r[1];
            }
            uint bl = b - c0;
            [[unroll]] for (uint m = 0u; m < M; m++)
                if (m < n)
                    [[unroll]] for (uint q = 0u; q < RPW; q++) {
                        uint a = m * RPW + q;
                        ag[a] = i8_block(tg, pw[4u * q], pw[4u * q + 1u], pf[6u * q],
                                         pf[6u * q + 1u], pf[6u * q + 2u], m * KB + bl, ag[a]);
                        au[a] = i8_block(tu, pw[4u * q + 2u], pw[4u * q + 3u],
                                         pf[6u * q + 3u], pf[6u * q + 4u], pf[6u * q + 5u],
                                         m * KB + bl, au[a]);
                    }
        }
    }
#else
    // XKB != 0: per chunk of XKB blocks the pairs' activation blocks are
    // staged in shared memory (coalesced loads; element-major, so a lane
    // group's reads of one vec4 of consecutive blocks are consecutive);
    // else every lane loads its blocks' activations itself. Staged, the
    // weight loads of a lane's next block are in flight while it computes
    // the current one (across the staging's barriers); unstaged, a block's
    // loads are issued at the top of its iteration unless NEXTB says
    // otherwise (holding two blocks doubles the registers: on the H100 the
    // T = 32 gate_up ran 1.26x slower with them, and gu_xstage off is the
    // built-in form). Every lane takes the same blocks in the same order
    // whatever XKB is (XKB = nb or a multiple of TPR), so the bits do not
    // depend on it.
    const bool NEXT = XKB != 0u || NEXTB != 0u;
    uint step = XKB == 0u ? pc.nb : XKB;
    for (uint c0 = 0u; c0 < pc.nb; c0 += step) {
        uint kbn = min(step, pc.nb - c0);
        uint b = c0 + lane;
        // quantized rows (at most 2 uvec4 a block): every weight load of
        // the block in flight before the first is used
        uvec4 pw[4u * RPW];
        float pf[6u * RPW];
        if (NEXT && pre_loads() && b < c0 + kbn)
            { GU_LOADS(b) }
        if (XKB != 0u) {
            barrier();
            for (uint i = tid; i < n * kbn * 8u; i += WG) {
                uint m = i / (kbn * 8u), r = i - m * (kbn * 8u);
                uint bl = r >> 3u, c = r & 7u;
                xsh[(m * 8u + c) * XS + bl] =
                    xb[(pr[m] / pc.k) * pc.xs + (c0 + bl) * 8u + c];
            }
            barrier();
        }
        for (; b < c0 + kbn; b += TPR) {
            // the pairs' activation blocks stay in registers for the RPW
            // outputs; each weight block is decoded once for all the pairs
            vec4 xs[M * 8u];
            [[unroll]] for (uint m = 0u; m < M; m++)
                if (m < n) {
                    uint base = (pr[m] / pc.k) * pc.xs + b * 8u;
                    [[unroll]] for (uint i = 0u; i < 8u; i++)
                        xs[m * 8u + i] = XKB != 0u ? xsh[(m * 8u + i) * XS + b - c0]
                                                   : xb[base + i];
                }
            uvec4 cw[4u * RPW];
            float cf[6u * RPW];
            if (pre_loads()) {
                if (!NEXT)
                    { GU_LOADS(b) }
                [[unroll]] for (uint i = 0u; i < 4u * RPW; i++)
                    cw[i] = pw[i];
                [[unroll]] for (uint i = 0u; i < 6u * RPW; i++)
                    cf[i] = pf[i];
                if (NEXT && b + TPR < c0 + kbn)
                    { GU_LOADS(b + TPR) }
            }
            [[unroll]] for (uint q = 0u; q < RPW; q++) {
                uvec4 r0[8], r1[8];
                float d0, s0, c0_, d1, s1, c1;
                if (pre_loads()) {
                    [[unroll]] for (uint i = 0u; i < 8u; i++) {
                        r0[i] = i < 2u ? cw[4u * q + i] : uvec4(0u);
                        r1[i] = i < 2u ? cw[4u * q + 2u + i] : uvec4(0u);
                    }
                    d0 = cf[6u * q];
                    s0 = cf[6u * q + 1u];
                    c0_ = cf[6u * q + 2u];
                    d1 = cf[6u * q + 3u];
                    s1 = cf[6u * q + 4u];
                    c1 = cf[6u * q + 5u];
                } else {
                    w_load(0u, rg[q], b, r0, d0, s0, c0_);
                    w_load(1u, ru[q], b, r1, d1, s1, c1);
                }
                vec4 w[8], xv[8];
                w_decode(0u, r0, s0, c0_, w);
                [[unroll]] for (uint m = 0u; m < M; m++)
                    if (m < n) {
                        [[unroll]] for (uint i = 0u; i < 8u; i++)
                            xv[i] = xs[m * 8u + i];
                        uint a = m * RPW + q;
                        ag[a] = w_acc_fixed(0u, w, d0, xv, ag[a]);
                    }
                w_decode(1u, r1, s1, c1, w);
                [[unroll]] for (uint m = 0u; m < M; m++)
                    if (m < n) {
                        [[unroll]] for (uint i = 0u; i < 8u; i++)
                            xv[i] = xs[m * 8u + i];
                        uint a = m * RPW + q;
                        au[a] = w_acc_fixed(1u, w, d1, xv, au[a]);
                    }
            }
        }
    }
#endif
#ifdef USE_SUBGROUP
    // the host keeps TPR <= the subgroup size
    [[unroll]] for (uint a = 0u; a < M * RPW; a++)
        if (a < n * RPW)
            [[unroll]] for (uint o = TPR / 2u; o > 0u; o >>= 1u) {
                ag[a] += subgroupShuffleXor(ag[a], o);
                au[a] += subgroupShuffleXor(au[a], o);
            }
#else
    if (TPR > 1u) {
        [[unroll]] for (uint a = 0u; a < M * RPW; a++) {
            red[2u * (tid * M * RPW + a)] = ag[a];
            red[2u * (tid * M * RPW + a) + 1u] = au[a];
        }
        barrier();
        if (lane == 0u)
            [[unroll]] for (uint a = 0u; a < M * RPW; a++) {
                ag[a] = 0.0;
                au[a] = 0.0;
                for (uint l = 0u; l < TPR; l++) {
                    ag[a] += red[2u * ((tid + l) * M * RPW + a)];
                    au[a] += red[2u * ((tid + l) * M * RPW + a) + 1u];
                }
            }
        barrier();
    }
#endif
#ifdef USE_SUBGROUP
    // every lane of the group holds the totals (each step of the butterfly
    // adds the same two values in both lanes): lane a finishes output a
    for (uint a0 = 0u; a0 < n * RPW; a0 += TPR) {
        uint a = a0 + lane;
        float g = 0.0, u = 0.0;
        uint p = pr[0];
        [[unroll]] for (uint i = 0u; i < M * RPW; i++)
            if (i == a) {
                g = ag[i];
                u = au[i];
            }
        [[unroll]] for (uint m = 0u; m < M; m++)
            if (m == a / RPW)
                p = pr[m];
        if (a < n * RPW)
            finish(e, f0 + a % RPW, p, g, u);
    }
#else
    if (lane == 0u)
        [[unroll]] for (uint m = 0u; m < M; m++)
            [[unroll]] for (uint q = 0u; q < RPW; q++)
                if (m < n)
                    finish(e, f0 + q, pr[m], ag[m * RPW + q], au[m * RPW + q]);
#endif
}

void main()
{
    uint nrb = (pc.F + R - 1u) / R;
    if (GROUPED == 0u) {
        for (uint p = gl_WorkGroupID.y; p < pc.P; p += gl_NumWorkGroups.y) {
            uint pr[M];
            for (uint m = 0u; m < M; m++)
                pr[m] = p;
            uint e = expert_of(p);
            if (e - pc.lo >= pc.hi - pc.lo)
                continue; // another part's expert
            for (uint rb = gl_WorkGroupID.x; rb < nrb; rb += gl_NumWorkGroups.x)
                row_block(e, rb, pr, 1u);
        }
        return;
    }
    uint tid = gl_LocalInvocationID.x;
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
                if (pos >= pc.P || n > CAP - WG)
                    break;
                uint p = pos + tid;
                if (p < pc.P && expert_of(p) == e)
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
            if (pos >= pc.P)
                break;
        }
    }
}
