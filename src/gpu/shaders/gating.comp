#version 450
// mf_gating on the device: one workgroup per token row (rows strided over
// the dispatched workgroups). Selection compares the same f32 quantities as
// the reference (src/cpu/ref/gating.c), as order-preserving uint keys, with
// ties to the lower index:
//  - softmax modes: x = canon(logit + bias), the sum rounded exactly as the
//    CPU does (add_exact, denormals included): indices are exact.
//  - sigmoid mode: the reference scores with libm's expf, which the device
//    cannot reproduce bit for bit. The device selects on its own score and
//    proves the selection with bounds on the reference's score
//    ([s - d, s + d], d = s 2^-18 + 2^-125, rounded exactly through the
//    bias add and the group sums). A row whose selection the bounds cannot
//    prove gets flag 1 and the host recomputes it with the reference.
// Weights follow the reference's formulas with compensated sums.
//
// Built twice: USE_SUBGROUP (subgroup max/min for the arg-max) and without
// (shared-memory tree).
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;    // workgroup size, power of 2
layout(constant_id = 1) const uint PER = 1;    // experts per invocation
layout(constant_id = 2) const uint MODE = 0;   // mf_gating_mode
layout(constant_id = 3) const uint GMAX = 1;   // group capacity (>= G)
layout(constant_id = 4) const uint RANKN = 1;  // WG * PER for rank selection
                                               // (large k), else 1
layout(constant_id = 5) const uint SCAP = 1;   // WG * PER in sigmoid mode
                                               // where the score cache fits
                                               // in shared memory, else 1
layout(constant_id = 6) const uint LCAP = 1;   // WG * PER where the row's
                                               // logits fit in shared
                                               // memory, else 1
layout(constant_id = 7) const uint SELG = 0;   // 1 (k > 32): the selection
                                               // is kept in the output
                                               // buffer, else in shared
                                               // memory
layout(constant_id = 8) const uint MIRROR = 0; // 1: the row's results also
                                               // to binding 3 (the chain's
                                               // host-visible output)
layout(constant_id = 9) const uint SEQM = 0;   // 1: the group slices merged
                                               // in sequence even with
                                               // subgroups (A/B runs)

layout(push_constant) uniform PC {
    uint T, E, k, renorm, has_bias, G, topk_group;
    float scale;
} pc;

// in: the logits [T, E] from float E on (the words before are not read)
layout(std430, binding = 0) readonly buffer In { float v_in[]; };
// out: idx [T, k], then w [T, k] (float bits), then flags [T]
layout(std430, binding = 1) coherent buffer Out { uint v_out[]; };
// the bias [E] (zeros without bias): the chain reads it where the host
// wrote it, the logits where the router wrote them
layout(std430, binding = 2) readonly buffer Bi { float v_bias[]; };
// MIRROR: out's layout again, written once a row is final
layout(std430, binding = 3) writeonly buffer Mo { uint v_mir[]; };

#include "common.glsl"

const uint SOFTMAX_TOPK = 0u, TOPK_SOFTMAX = 1u, SIGMOID = 2u;
const uint NONE = 0xffffffffu;

shared uint r_key[2 * WG];
shared uint r_idx[2 * WG];
shared vec2 s_sum[2 * WG];
// The selection of the arg-max path (k <= 32): index and, in the softmax
// modes, its selection value.
const uint KSH = 32u;
shared uint s_sel[KSH];
shared float s_selx[KSH];
shared float g_mid[GMAX];
shared float g_lo[GMAX];
shared float g_hi[GMAX];
shared uint g_kept[GMAX];
shared uint s_keys[RANKN];
// The row's weights while they are formed (small k): the output buffer
// may be host memory, where every read is a bus round trip.
shared uint s_w[KSH];
// Sigmoid mode: each expert's score and its bounds, computed once a row.
shared float s_mid[SCAP];
shared float s_lo[SCAP];
shared float s_hi[SCAP];
// The row's logits (bits), read from the input buffer once a row.
shared uint s_lg[LCAP];
// Group selection with several invocations a group: each one's top-2
// keys of mid, lo and hi over its slice of the group.
// (two steps: glslc's optimizer fails on the combined condition)
const uint TG_ = WG >= 2u * GMAX ? WG / GMAX : 1u;
const uint TG = GMAX > 1u ? TG_ : 1u;   // only with groups
shared uint s_top2[TG > 1u ? 6u * WG : 1u];
shared uint s_flag;
shared uint s_ninf;

uint tid;
uint par;
uint spar;

// The winner (largest key, then lowest index) of one candidate per
// invocation, returned to every invocation. Workgroup-uniform control flow.
uvec2 wg_argmax(uint key, uint idx)
{
    uint base = par * WG;
    par ^= 1u;
#ifdef USE_SUBGROUP
    uint mk = subgroupMax(key);
    uint mi = subgroupMin(key == mk ? idx : NONE);
    if (subgroupElect()) {
        r_key[base + gl_SubgroupID] = mk;
        r_idx[base + gl_SubgroupID] = mi;
    }
    barrier();
    uint bk = 0u, bi = NONE;
    for (uint s = 0u; s < gl_NumSubgroups; s++) {
        uint k2 = r_key[base + s], i2 = r_idx[base + s];
        if (k2 > bk || (k2 == bk && i2 < bi)) {
            bk = k2;
            bi = i2;
        }
    }
    return uvec2(bk, bi);
#else
    r_key[base + tid] = key;
    r_idx[base + tid] = idx;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            uint k2 = r_key[base + tid + s], i2 = r_idx[base + tid + s];
            uint k1 = r_key[base + tid], i1 = r_idx[base + tid];
            if (k2 > k1 || (k2 == k1 && i2 < i1)) {
                r_key[base + tid] = k2;
                r_idx[base + tid] = i2;
            }
        }
        barrier();
    }
    return uvec2(r_key[base], r_idx[base]);
#endif
}

// The largest a and the largest b over the workgroup (two maxima in one
// reduction), returned to every invocation. Workgroup-uniform control flow.
uvec2 wg_max2(uint a, uint b)
{
    uint base = par * WG;
    par ^= 1u;
#ifdef USE_SUBGROUP
    uint ma = subgroupMax(a), mb = subgroupMax(b);
    if (subgroupElect()) {
        r_key[base + gl_SubgroupID] = ma;
        r_idx[base + gl_SubgroupID] = mb;
    }
    barrier();
    uvec2 m = uvec2(0u);
    for (uint s = 0u; s < gl_NumSubgroups; s++)
        m = max(m, uvec2(r_key[base + s], r_idx[base + s]));
    return m;
#else
    r_key[base + tid] = a;
    r_idx[base + tid] = b;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            r_key[base + tid] = max(r_key[base + tid], r_key[base + tid + s]);
            r_idx[base + tid] = max(r_idx[base + tid], r_idx[base + tid + s]);
        }
        barrier();
    }
    return uvec2(r_key[base], r_idx[base]);
#endif
}

// Compensated workgroup sum of (hi, lo) pairs, returned to everyone (the
// same value in every invocation).
vec2 wg_sum2(vec2 v)
{
    uint base = spar * WG;
    spar ^= 1u;
#ifdef USE_SUBGROUP
    for (uint off = 1u; off < gl_SubgroupSize; off <<= 1u)
        v = sum2(v, subgroupShuffleXor(v, off));
    if (subgroupElect())
        s_sum[base + gl_SubgroupID] = v;
    barrier();
    vec2 t = s_sum[base];
    for (uint s = 1u; s < gl_NumSubgroups; s++)
        t = sum2(t, s_sum[base + s]);
    return t;
#else
    s_sum[base + tid] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s)
            s_sum[base + tid] = sum2(s_sum[base + tid], s_sum[base + tid + s]);
        barrier();
    }
    return s_sum[base];
#endif
}

float logit_mem(uint row, uint i) { return v_in[pc.E + row * pc.E + i]; }
// From the row's copy in shared memory once the first pass stored it (and
// a barrier passed), else from the buffer.
float logit_at(uint row, uint i)
{
    return LCAP > 1u ? uintBitsToFloat(s_lg[i]) : logit_mem(row, i);
}
float bias_at(uint i) { return v_bias[i]; }

// Softmax modes: the selection value x = canon(logit + bias) of expert i
// whose logit is l.
float xval_of(float l, uint i)
{
    return canon(pc.has_bias != 0u ? add_exact(l, bias_at(i)) : l);
}
float xval(uint row, uint i) { return xval_of(logit_at(row, i), i); }

// Sigmoid mode: the device's s and exactness (the reference's value is
// known exactly for NaN, +-Inf logits).
float sig_s(float l, out bool exact)
{
    uint u = floatBitsToUint(l);
    exact = true;
    if ((u & F_ABS) > F_INF || u == 0xff800000u)
        return 0.0;
    if (u == F_INF)
        return 1.0;
    exact = false;
    return sigmoid(l);
}

// The reference's f32 sigmoid of a logit (subnormal included) times 2^64.
float sig_scaled(float l)
{
    bool exact;
    float s = sig_s(l, exact);
    if (exact || l >= -80.0)
        return s * uintBitsToFloat(0x5f800000u);   // s is 0, 1 or normal
    // l < -80: 1 / (1 + exp(-l)) rounds to exp(l) < 2^-115
    return sub_round64(exp_core(l, 64));
}

// Score (device value) and bounds on the reference's score of expert i
// whose logit is l.
void sig_score(float l, uint i, out float s, out float mid, out float lo,
               out float hi)
{
    bool exact;
    s = sig_s(l, exact);
    float d = exact ? 0.0 : s * (1.0 / 262144.0) + uintBitsToFloat(0x01000000u);
    float slo = s - d, shi = s + d;
    if (pc.has_bias != 0u) {
        float b = canon(bias_at(i));
        mid = add_exact(s, b);
        lo = add_exact(slo, b);
        hi = add_exact(shi, b);
    } else {
        mid = s;
        lo = slo;
        hi = shi;
    }
}

// Expert i's score and bounds: from the cache (filled, and a barrier
// passed, before the first call) or computed again without one.
void sc_get(uint row, uint i, out float mid, out float lo, out float hi)
{
    if (SCAP > 1u) {
        mid = s_mid[i];
        lo = s_lo[i];
        hi = s_hi[i];
    } else {
        float s;
        sig_score(logit_at(row, i), i, s, mid, lo, hi);
    }
}

// True when expert a surely ranks ahead of b in the reference: its score
// is surely larger, or both have identical inputs and a < b.
bool surely_ahead(uint row, uint a, uint b)
{
    float m, lo_a, hi_a, lo_b, hi_b;
    sc_get(row, a, m, lo_a, hi_a);
    sc_get(row, b, m, lo_b, hi_b);
    if (lo_a > hi_b)
        return true;
    bool same = floatBitsToUint(logit_at(row, a)) ==
                floatBitsToUint(logit_at(row, b));
    if (pc.has_bias != 0u)
        same = same && floatBitsToUint(canon(bias_at(a))) ==
                           floatBitsToUint(canon(bias_at(b)));
    return same && a < b;
}

// Inserts key v into the top-2 pair (a.x >= a.y) of a multiset of keys.
uvec2 top2_add(uvec2 a, uint v)
{
    if (v > a.x)
        return uvec2(v, a.x);
    return v > a.y ? uvec2(a.x, v) : a;
}

// The top-2 pair of the union of two multisets from their top-2 pairs.
uvec2 top2_merge(uvec2 a, uvec2 b)
{
    return uvec2(max(a.x, b.x), max(min(a.x, b.x), max(a.y, b.y)));
}

// The group scores g_mid, g_lo, g_hi of group g from the top-2 pairs of
// mid, lo and hi over its experts.
void group_score(uint g, uvec2 m, uvec2 l, uvec2 h)
{
    if (pc.E / pc.G == 1u) {
        g_mid[g] = key_float(m.x);
        g_lo[g] = key_float(l.x);
        g_hi[g] = key_float(h.x);
    } else {
        g_mid[g] = canon(add_exact(key_float(m.x), key_float(m.y)));
        g_lo[g] = canon(add_exact(key_float(l.x), key_float(l.y)));
        g_hi[g] = canon(add_exact(key_float(h.x), key_float(h.y)));
    }
}

// The top-2 pairs of mid, lo and hi over experts e0, e0 + step, ... of
// group g (0 is below every real key).
void group_slice(uint row, uint g, uint e0, uint step, out uvec2 m,
                 out uvec2 l, out uvec2 h)
{
    uint gs = pc.E / pc.G;
    m = uvec2(0u);
    l = uvec2(0u);
    h = uvec2(0u);
    for (uint e = e0; e < gs; e += step) {
        float mid, lo, hi;
        sc_get(row, g * gs + e, mid, lo, hi);
        m = top2_add(m, fkey(mid));
        l = top2_add(l, fkey(lo));
        h = top2_add(h, fkey(hi));
    }
}

// Groups (sigmoid mode, G > 1): group scores, the kept groups (g_kept),
// and whether the kept set is proven.
bool select_groups(uint row)
{
    uint G = pc.G;
    if (TG > 1u) {
        // TG invocations a group (G TG <= WG), each over a strided slice;
        // the slices' pairs are merged (the top-2 of a multiset is the
        // same whatever the order its members are inserted in): with
        // subgroups, by a butterfly over the group's lanes that share a
        // subgroup (consecutive invocations), then the first merges the
        // TG / W partial pairs left; without, the first merges all TG.
        // Invocations are numbered by subgroup and lane (vid), so that a
        // butterfly's partners share a group whatever the driver's
        // mapping of invocations to subgroups.
        uint vid = tid;
#ifdef USE_SUBGROUP
        vid = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
#endif
        uint g = vid / TG, part = vid % TG;
        uvec2 m, l, h;
        group_slice(row, min(g, G - 1u), part, TG, m, l, h);
        uint W = 1u;
#ifdef USE_SUBGROUP
        W = SEQM != 0u ? 1u : min(TG, gl_SubgroupSize);
        for (uint o = 1u; o < W; o <<= 1u) {
            m = top2_merge(m, subgroupShuffleXor(m, o));
            l = top2_merge(l, subgroupShuffleXor(l, o));
            h = top2_merge(h, subgroupShuffleXor(h, o));
        }
#endif
        if (W < TG) {
            uint o = 6u * vid;
            s_top2[o] = m.x;
            s_top2[o + 1u] = m.y;
            s_top2[o + 2u] = l.x;
            s_top2[o + 3u] = l.y;
            s_top2[o + 4u] = h.x;
            s_top2[o + 5u] = h.y;
            barrier();
            if (part == 0u && g < G)
                for (uint q = W; q < TG; q += W) {
                    uint oq = o + 6u * q;
                    m = top2_merge(m, uvec2(s_top2[oq], s_top2[oq + 1u]));
                    l = top2_merge(l, uvec2(s_top2[oq + 2u], s_top2[oq + 3u]));
                    h = top2_merge(h, uvec2(s_top2[oq + 4u], s_top2[oq + 5u]));
                }
        }
        if (part == 0u && g < G)
            group_score(g, m, l, h);
    } else {
        for (uint g = tid; g < G; g += WG) {
            uvec2 m, l, h;
            group_slice(row, g, 0u, 1u, m, l, h);
            group_score(g, m, l, h);
        }
    }
    barrier();
    // kept: the topk_group best group scores (rank < topk_group, ties to
    // the lower group index)
    // (the ranks read g_mid only: g_kept, every group's, is written as
    // they go)
    for (uint g = tid; g < G; g += WG) {
        uint kk = fkey(g_mid[g]), rank = 0u;
        for (uint o = 0u; o < G && rank < pc.topk_group; o++) {
            uint ko = fkey(g_mid[o]);
            rank += ko > kk || (ko == kk && o < g) ? 1u : 0u;
        }
        g_kept[g] = rank < pc.topk_group ? 1u : 0u;
    }
    barrier();
    // proof: the lowest bound of a kept group above the highest bound of
    // every other group
    uint kmin = 0u, kmax = 0u;
    for (uint g = tid; g < G; g += WG) {
        if (g_kept[g] != 0u)
            kmin = max(kmin, ~fkey(g_lo[g]));
        else
            kmax = max(kmax, fkey(g_hi[g]));
    }
    uvec2 m = wg_max2(kmin, kmax);
    uint lo_min = ~m.x, hi_max = m.y;
    if (pc.topk_group >= G)
        return true;
    return key_float(lo_min) > key_float(hi_max);
}

// Weight j of the row being formed: shared memory for small k, else the
// output words at wbase (large k: written and read by the same invocation
// in every loop below, so no barrier is needed between them).
uint w_get(uint wbase, uint j) { return SELG == 0u ? s_w[j] : v_out[wbase + j]; }
void w_set(uint wbase, uint j, uint v)
{
    if (SELG == 0u)
        s_w[j] = v;
    else
        v_out[wbase + j] = v;
}

// The j-th selected expert, and its selection value (softmax modes).
uint sel_idx(uint ibase, uint j)
{
    return SELG == 0u ? s_sel[j] : v_out[ibase + j];
}

float sel_x(uint row, uint ibase, uint j)
{
    return SELG == 0u ? s_selx[j] : xval(row, v_out[ibase + j]);
}

void finish(uint row, uint k, bool renorm)
{
    uint wbase = pc.T * pc.k + row * pc.k;
    if (renorm) {
        vec2 acc = vec2(0.0);
        for (uint j = tid; j < k; j += WG)
            acc = sum2(acc, vec2(uintBitsToFloat(w_get(wbase, j)), 0.0));
        float t = wg_sum2(acc).x;
        if (t > 0.0)
            for (uint j = tid; j < k; j += WG)
                w_set(wbase, j, floatBitsToUint(
                    div_acc(uintBitsToFloat(w_get(wbase, j)), t)));
    }
    float sc = pc.scale == 0.0 ? 1.0 : pc.scale;
    if (sc != 1.0)
        for (uint j = tid; j < k; j += WG)
            w_set(wbase, j, floatBitsToUint(uintBitsToFloat(w_get(wbase, j)) * sc));
}

void main()
{
    tid = gl_LocalInvocationID.x;
    par = 0u;
    spar = 0u;
    uint E = pc.E, k = pc.k;
    for (uint row = gl_WorkGroupID.x; row < pc.T; row += gl_NumWorkGroups.x) {
        if (tid == 0u) {
            s_flag = 0u;
            s_ninf = 0u;
        }
        barrier();
        bool bad = false;
        uint key[PER];
        float xs[PER];
        uint ninf = 0u;
        // every load of the row in flight before the first is used
        float lg[PER];
        for (uint j = 0u; j < PER; j++) {
            uint i = tid + j * WG;
            lg[j] = i < E ? logit_mem(row, i) : 0.0;
            if (LCAP > 1u && i < E)
                s_lg[i] = floatBitsToUint(lg[j]);
        }
        for (uint j = 0u; j < PER; j++) {
            uint i = tid + j * WG;
            key[j] = 0u;
            if (i < E) {
                if (MODE == SIGMOID) {
                    float s, mid, lo, hi;
                    sig_score(lg[j], i, s, mid, lo, hi);
                    key[j] = fkey(mid);
                    if (SCAP > 1u) {
                        s_mid[i] = mid;
                        s_lo[i] = lo;
                        s_hi[i] = hi;
                    }
                } else {
                    float x = xval_of(lg[j], i);
                    xs[j] = x;
                    key[j] = fkey(x);
                    ninf += is_pinf(x) ? 1u : 0u;
                }
            }
        }
        if (ninf != 0u)
            atomicAdd(s_ninf, ninf);
        if (SCAP > 1u || LCAP > 1u)
            barrier();  // the score and logit caches are complete
        if (MODE == SIGMOID && pc.G > 1u) {
            bad = !select_groups(row);
            uint gs = E / pc.G;
            for (uint j = 0u; j < PER; j++) {
                uint i = tid + j * WG;
                if (i < E && g_kept[i / gs] == 0u)
                    key[j] = 0u;
            }
        }

        uint first = 0u;
        if (RANKN > 1u) {
            // rank selection: each eligible expert counts the experts
            // ranked ahead of it (larger key, or equal key and lower index)
            // and writes itself at that rank when it is below k: one pass
            // and one barrier for any k (into the output buffer for
            // k > 32, SELG; else into shared memory, as the rounds do).
            for (uint j = 0u; j < PER; j++)
                s_keys[tid + j * WG] = key[j];
            barrier();
            for (uint j = 0u; j < PER; j++) {
                uint i = tid + j * WG, kk = key[j], rank = 0u;
                if (kk == 0u)
                    continue;
                // four keys a step: lavapipe caps the iterations of one
                // loop per invocation at 65535
                for (uint o = 0u; o < RANKN && rank < k; o += 4u) {
                    for (uint q = 0u; q < 4u; q++) {
                        uint ko = s_keys[o + q];
                        rank += ko > kk || (ko == kk && o + q < i) ? 1u : 0u;
                    }
                }
                if (rank < k) {
                    if (SELG != 0u) {
                        v_out[row * k + rank] = i;
                    } else {
                        s_sel[rank] = i;
                        s_selx[rank] = key_float(kk);
                    }
                    key[j] = 0u;
                }
            }
            uint bk = 0u;
            for (uint o = tid; o < RANKN; o += WG)
                bk = max(bk, s_keys[o]);
            first = wg_argmax(bk, 0u).x;
        } else {
            // k rounds of a workgroup arg-max (where the keys do not fit
            // in shared memory for the rank pass); the winner's owner
            // clears its key (0 is below every real key: -Inf maps to
            // 0x007fffff).
            for (uint r = 0u; r < k; r++) {
                uint bk = 0u, bi = NONE;
                for (uint j = 0u; j < PER; j++)
                    if (key[j] > bk) {
                        bk = key[j];
                        bi = tid + j * WG;
                    }
                uvec2 win = wg_argmax(bk, bi);
                if (r == 0u)
                    first = win.x;
                if (tid == 0u) {
                    if (SELG != 0u) {
                        v_out[row * k + r] = win.y;
                    } else {
                        s_sel[r] = win.y;
                        s_selx[r] = key_float(win.x);
                    }
                }
                // (no dynamic index into key: it stays in registers)
                for (uint j = 0u; j < PER; j++)
                    if (win.y == tid + j * WG)
                        key[j] = 0u;
            }
        }
        // SELG reads back the indices it wrote; otherwise they stay in
        // shared memory and go out with the weights (the output may be
        // host memory: no barrier waits for those stores).
        if (SELG != 0u)
            memoryBarrierBuffer();
        barrier();

        uint ibase = row * k, wbase = pc.T * k + row * k;
        if (MODE == SIGMOID) {
            for (uint j = tid; j + 1u < k; j += WG)
                if (!surely_ahead(row, sel_idx(ibase, j), sel_idx(ibase, j + 1u)))
                    bad = true;
            uint last = sel_idx(ibase, k - 1u);
            for (uint j = 0u; j < PER; j++)
                if (key[j] != 0u && !surely_ahead(row, last, tid + j * WG))
                    bad = true;
            // w = s (the reference's f32 sigmoid, subnormal included), then
            // w / sum(w), then * scale. Held scaled by 2^64 so that rows
            // whose scores are all subnormal renormalize as on the CPU
            // even where the device flushes subnormals.
            // (each invocation keeps its first score for the
            // renormalization: with k <= WG it is the only one)
            vec2 acc = vec2(0.0);
            float ss0 = 0.0;
            for (uint j = tid; j < k; j += WG) {
                float ss = sig_scaled(logit_at(row, sel_idx(ibase, j)));
                if (j == tid)
                    ss0 = ss;
                w_set(wbase, j, scale_down64_bits(ss));
                acc = sum2(acc, vec2(ss, 0.0));
            }
            if (pc.renorm != 0u) {
                float t = sub_round64(wg_sum2(acc).x);
                if (t > 0.0)
                    for (uint j = tid; j < k; j += WG) {
                        float ss = j == tid
                            ? ss0
                            : sig_scaled(logit_at(row, sel_idx(ibase, j)));
                        w_set(wbase, j, floatBitsToUint(div_acc(ss, t)));
                    }
            }
            float sc = pc.scale == 0.0 ? 1.0 : pc.scale;
            if (sc != 1.0)
                for (uint j = tid; j < k; j += WG)
                    w_set(wbase, j, mul_bits(uintBitsToFloat(w_get(wbase, j)), sc));
        } else {
            float m = key_float(first);
            bool all = MODE == SOFTMAX_TOPK;
            if (is_ninf(m)) {
                for (uint j = tid; j < k; j += WG)
                    w_set(wbase, j, 0u);
            } else if (is_pinf(m)) {
                uint n = 0u;
                if (all) {
                    n = s_ninf;
                } else {
                    for (uint j = 0u; j < k; j++)
                        n += is_pinf(sel_x(row, ibase, j)) ? 1u : 0u;
                }
                float p = div_acc(1.0, float(n));
                for (uint j = tid; j < k; j += WG)
                    w_set(wbase, j, floatBitsToUint(
                        is_pinf(sel_x(row, ibase, j)) ? p : 0.0));
            } else {
                vec2 acc = vec2(0.0);
                if (all) {
                    for (uint j = 0u; j < PER; j++) {
                        uint i = tid + j * WG;
                        if (i < E)
                            acc = sum2(acc, vec2(exp_any(xs[j] - m), 0.0));
                    }
                } else {
                    for (uint j = tid; j < k; j += WG)
                        acc = sum2(acc, vec2(exp_any(sel_x(row, ibase, j) - m), 0.0));
                }
                float S = wg_sum2(acc).x;
                for (uint j = tid; j < k; j += WG)
                    w_set(wbase, j, floatBitsToUint(
                        div_acc(exp_any(sel_x(row, ibase, j) - m), S)));
            }
            finish(row, k, all && pc.renorm != 0u);
        }
        if (SELG == 0u)  // each weight by the invocation that formed it
            for (uint j = tid; j < k; j += WG) {
                v_out[row * k + j] = s_sel[j];
                v_out[wbase + j] = s_w[j];
                if (MIRROR != 0u) {
                    v_mir[row * k + j] = s_sel[j];
                    v_mir[wbase + j] = s_w[j];
                }
            }
        if (bad)
            atomicOr(s_flag, 1u);
        if (SELG != 0u && MIRROR != 0u)
            memoryBarrierBuffer();  // the row's words, read back below
        barrier();
        if (SELG != 0u && MIRROR != 0u)
            for (uint j = tid; j < k; j += WG) {
                v_mir[row * k + j] = v_out[row * k + j];
                v_mir[wbase + j] = v_out[wbase + j];
            }
        if (tid == 0u) {
            v_out[2u * pc.T * k + row] = s_flag;
            if (MIRROR != 0u)
                v_mir[2u * pc.T * k + row] = s_flag;
        }
        barrier();
    }
}
