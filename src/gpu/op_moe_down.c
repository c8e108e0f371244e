/* mf_moe_down_combine on the device (shaders/moe_down.comp): the expert
 * weights and biases resident, per call h, idx, the routing weights and the
 * residual up and y back. Per pair (few pairs per expert): down projections
 * and the weighted combine in one dispatch per token; grouped (mf_qgroup):
 * the projections per expert into a device buffer v, then the combine. The
 * combine in slot order with every operation rounded (ops.h), the same
 * bits either way. EXACT math; MF_PREC_INT8 with quantized weights runs
 * the INT8 shaders where the device has integer dot products (mf_qint8),
 * else the EXACT ones (ops.h). */
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "shaders.h"

/* Slots per pass of the shader: their loads are in flight together. */
#define DOWN_KC 8
/* Workgroup size of the h quantize dispatch (one block an invocation). */
#define DOWN_QWG 64

typedef struct dn_key {
    uint32_t wid[4]; /* weights, bias */
    int64_t T;
    int32_t k, has_res;
    uint32_t group;      /* mf_dn_res.group */
    int32_t int8;        /* mf_dn_res.int8 */
    uint32_t rows;       /* mf_dn_res.rows (the phase and its rows) */
    int32_t preq;        /* mf_dn_res.quant set */
    uint64_t pipe;       /* the pipeline: its tuning (lanes, staging) */
} dn_key;

typedef struct dn_push {
    uint32_t H, T, k, E, nb, soff, boff, gpr;
    uint32_t hs, idx_off, w_off, res_off, y_off;
    uint32_t lo, hi, row0;
} dn_push;

/* The fused mode's form: phase 3 (slot groups, moe_down.comp) where every
 * lane group of a pass takes its own slot (k >= WG / TPR), else phase 0;
 * MOEFUSE_GPU_DN_SLOTS=1 / 0 forces phase 3 / phase 0 (tests: both give
 * the same bits); below it the measured form dn_slots (mf_gpu_forms_use).
 * On the H200 phase 3 took Qwen3-30B-A3B's T = 1 down from 10.0 to 9.6 us
 * (INT8) and 18.5 to 12.4 us (EXACT), DeepSeek-V3's from 62.0 to 43.7 us
 * (INT8); with k = 2 or 4 (Mixtral, GPT-OSS: its
 * row groups quantize each h block again) it lost at T = 1
 * (gpu-h200-dn-slots-gu-unroll-sweep.txt). */
static int slots_mode(const mf_vk *vk, int32_t k, uint32_t groups)
{
    int f = mf_gpu_form(vk, MF_GPU_FORM_DN_SLOTS); /* env, then forms */
    if (f != MF_GPU_FORM_AUTO)
        return f;
    return (uint32_t)k >= groups;
}

/* INT8: h quantized once by its own dispatch (i8quant.comp) rather than by
 * every workgroup of the down dispatch for each block it uses. Taken where
 * it was measured to win: from DOWN_PREQ_BLOCKS h blocks (pairs x blocks
 * a row) on, in slot groups (phase 3) and, per token (phase 0), with at
 * most 2 slots a pass. H200, INT8 Q4_0, chain step of down_combine, off ->
 * on (gpu-h200-dn-preq.txt):
 *   phase 3: Qwen3-30B-A3B T = 1 (192 blocks) 9.64 -> 11.04 us (the extra
 *            dispatch, about a chain step, is not won back), DeepSeek-V3
 *            T = 1 (512) 44.0 -> 40.7 us, Qwen3-30B-A3B T = 32 (6144)
 *            138.7 -> 107.5 us, DeepSeek-V3 T = 32 977 -> 698 us;
 *   phase 0: Mixtral-8x7B (k = 2) T = 1 (896) 48.8 -> 44.4 us, T = 32 940
 *            -> 792 us; GPT-OSS-20B (k = 4) lost at T = 1 (360) 18.2 ->
 *            26.6 us and T = 32 (11520) 315 -> 344 us.
 * Why GPT-OSS-20B loses is not established (its slots per pass, 4, and
 * its rows, 90 blocks, both differ from Mixtral's); the grouped form
 * (phase 1) was not measured and keeps the workgroups' quantization.
 * MOEFUSE_GPU_DN_PREQ=1 / 0 forces it on / off (tests: the same bits
 * either way). */
#define DOWN_PREQ_BLOCKS 512
static int preq_mode(uint64_t blocks, int phase, uint32_t kc)
{
    if (mf_gpu_env_is("MOEFUSE_GPU_DN_PREQ", "1"))
        return 1;
    if (mf_gpu_env_is("MOEFUSE_GPU_DN_PREQ", "0"))
        return 0;
    return blocks >= DOWN_PREQ_BLOCKS && (phase == 3 || (phase == 0 && kc <= 2));
}

/* Rows per lane group of phase 3: the most, up to `cap` and the lanes (so
 * that reduce_rows scatters), that keep MF_QMIN_GROUPS workgroups. INT8
 * takes up to 8 (each workgroup quantizes the pass's h blocks once: fewer
 * workgroups quantize less; 4 rows 10.8 us, 8 rows 9.6 us), EXACT up to 4
 * (12.4 us, 8 rows 16.4 us): Qwen3-30B-A3B T = 1 on the H200. */
static uint32_t slots_rpw(uint64_t rows, uint32_t row_groups, uint64_t tokens,
                          uint32_t tpr, uint32_t cap)
{
    uint32_t want = mf_gpu_env_pow2("MOEFUSE_GPU_QRPW", 1, 16);
    if (want)
        return want;
    for (uint32_t rpw = cap; rpw > 1; rpw >>= 1) {
        uint64_t per = (uint64_t)row_groups * rpw;
        if (rpw <= tpr && (rows + per - 1) / per * tokens >= MF_QMIN_GROUPS)
            return rpw;
    }
    return 1;
}

/* Shared memory (bytes) of the slot-group form (phase 3): the reduction
 * array (shared-memory reductions only), the pass's v, the pair list. */
static size_t slots_shared(int sg, uint32_t wg, uint32_t ng, uint32_t rpw)
{
    return 4 * ((sg ? 0 : (size_t)wg * rpw) + (size_t)ng * rpw + 2 * (size_t)wg + 1);
}

/* Shared memory (bytes) of the per-token form (phase 0): KC RPW floats an
 * invocation for the reduction (shared-memory reductions only), the pair
 * list (unused there). */
static size_t fused_shared(int sg, uint32_t wg, uint32_t kc, uint32_t rpw)
{
    return 4 * ((sg ? 0 : (size_t)wg * kc * rpw) + 2 * (size_t)wg + 1);
}

mf_status mf_gpu_down_prepare(mf_gpu *g, const mf_moe_down_desc *d,
                              int64_t T, int32_t k, int has_res,
                              mf_dn_res *out)
{
    memset(out, 0, sizeof *out);
    mf_status st = mf_wcache_get(g, d->w_down, &out->wd);
    if (st == MF_OK && d->b_down)
        st = mf_wcache_get_f32(g, d->b_down, d->w_down->e * d->w_down->n,
                               &out->bd);
    if (st == MF_OK && !mf_wres_by_expert(out->wd))
        st = MF_ERR_DEVICE_OOM; /* one expert over a binding */
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    const int sg = mf_quse_subgroup(vk);
    const int want8 = mf_qint8(vk, d->prec, &d->w_down, 1);
    /* weights in several buffers: the grouped form, whose projections
     * take one dispatch per part (the per-token forms sum every slot's
     * projection in one workgroup) */
    const int split = out->wd->nparts > 1;
    uint32_t wg = want8 ? mf_qwg_i8(vk) : mf_qwg(vk);
    uint32_t tpr = mf_qlanes(vk, out->wd->lay.nb);
    const uint64_t E = (uint64_t)d->w_down->e, P = (uint64_t)T * (uint64_t)k;
    const uint32_t flags = (uint32_t)(out->bd != NULL) | (uint32_t)has_res << 1;
    /* never faster measured (quant.h) */
    uint32_t m = mf_qgroup(P, E, 0, MF_GPU_FORM_AUTO);
    if (split && !m)
        m = 1;
    if ((uint64_t)d->w_down->n * P * 4 > vk->max_binding) {
        if (split)
            return MF_ERR_DEVICE_OOM;
        m = 0; /* v would not fit one binding */
    }
    mf_vk_pipe_desc pd = {
        .shader = sg ? &mf_shader_moe_down_sg : &mf_shader_moe_down_sh,
        .n_bindings = 8,
        .push_bytes = sizeof(dn_push),
        .n_spec = 8,
    };
    uint32_t rpw, staged, slot_rows = 0;
    int phase = 1;        /* moe_down.comp's PHASE */
    uint32_t kc_pass = 1; /* its KC */
    size_t other;
    if (m) {
        /* grouped: at most min(E, P) experts' workgroups have work */
        rpw = mf_qrpw((uint64_t)d->w_down->n, wg / tpr, P < E ? P : E);
        mf_qgroup_fit(vk, sg, wg, 1, 2 * (size_t)wg + 1, &m, &rpw);
        if (!m)
            return MF_ERR_UNSUPPORTED;
        uint32_t spec[8] = {wg, tpr, mf_wfmt(d->w_down), 1, flags, rpw, 1, m};
        memcpy(pd.spec, spec, sizeof spec);
        staged = m;
        other = 4 * ((sg ? 0 : (size_t)wg * m * rpw) + 2 * (size_t)wg + 1);
    } else if (slots_mode(vk, k, wg / tpr)) {
        /* slot groups: a lane group per slot of the pass */
        uint32_t ng = wg / tpr;
        uint32_t kc = (uint32_t)k < ng ? (uint32_t)k : ng;
        rpw = slots_rpw((uint64_t)d->w_down->n, ng / kc, (uint64_t)T, tpr,
                        want8 ? 8 : 4);
        /* fewer rows per lane group where the shared memory is small */
        while (rpw > 1 && slots_shared(sg, wg, ng, rpw) > vk->shared_bytes)
            rpw >>= 1;
        if (slots_shared(sg, wg, ng, rpw) > vk->shared_bytes)
            return MF_ERR_UNSUPPORTED;
        uint32_t spec[8] = {wg, tpr, mf_wfmt(d->w_down), kc, flags, rpw, 3, 1};
        memcpy(pd.spec, spec, sizeof spec);
        staged = 1;
        other = slots_shared(sg, wg, ng, rpw);
        slot_rows = ng / kc * rpw;
        phase = 3;
        kc_pass = kc;
    } else {
        uint32_t kc = k < DOWN_KC ? (uint32_t)k : DOWN_KC;
        rpw = mf_qrpw((uint64_t)d->w_down->n, wg / tpr, (uint64_t)T);
        /* where the shared memory is small, fewer rows per lane group,
         * then fewer slots per pass */
        while (rpw > 1 && fused_shared(sg, wg, kc, rpw) > vk->shared_bytes)
            rpw >>= 1;
        while (kc > 1 && fused_shared(sg, wg, kc, rpw) > vk->shared_bytes)
            kc >>= 1;
        if (fused_shared(sg, wg, kc, rpw) > vk->shared_bytes)
            return MF_ERR_UNSUPPORTED;
        uint32_t spec[8] = {wg, tpr, mf_wfmt(d->w_down), kc, flags, rpw, 0, 1};
        memcpy(pd.spec, spec, sizeof spec);
        staged = kc;
        other = fused_shared(sg, wg, kc, rpw);
        phase = 0;
        kc_pass = kc;
    }
    /* INT8: the staged h blocks of the pass's pairs (slots) */
    uint32_t kb = 0;
    if (want8)
        kb = slot_rows ? 1 : mf_qkb(vk, out->wd->lay.nb, staged, other);
    /* (48 bytes a block against h's 128: the records fit one binding
     * wherever h does, which the callers check) */
    const int preq = kb && preq_mode(P * out->wd->lay.nb, phase, kc_pass);
    /* EXACT per token: the pass's h rows staged (slot groups: whole) where
     * the form dn_xstage says so; built-in: not staged (on the H100
     * staging was 1.04x slower at Qwen3 T = 1 and 1.24x at T = 32, the
     * same run; on lavapipe a tie) */
    if (!kb && phase != 1) {
        uint32_t xkb = mf_gpu_form(vk, MF_GPU_FORM_DN_XSTAGE) != 1
                           ? 0
                           : mf_qxkb(vk, out->wd->lay.nb, kc_pass, tpr, other);
        pd.n_spec = 9;
        pd.spec[8] = slot_rows && xkb != out->wd->lay.nb ? 0 : xkb;
    }
    if (kb) {
        pd.shader = sg ? &mf_shader_moe_down_i8_sg : &mf_shader_moe_down_i8_sh;
        pd.n_spec = 10;
        pd.spec[8] = kb;
        pd.spec[9] = (uint32_t)preq;
    }
    if (preq) {
        out->hq_bytes = P * out->wd->lay.nb * 48;
        mf_vk_pipe_desc qd = {.shader = &mf_shader_i8quant, .n_bindings = 2,
                              .push_bytes = 3 * sizeof(uint32_t), .n_spec = 1,
                              .spec = {DOWN_QWG}};
        st = mf_vk_pipe_get(vk, &qd, &out->quant);
        if (st != MF_OK)
            return st;
    }
    out->rows = slot_rows ? slot_rows : wg / tpr * rpw;
    out->group = m;
    out->int8 = kb != 0;
    out->slots = slot_rows != 0;
    st = mf_vk_pipe_get(vk, &pd, &out->pipe);
    if (st != MF_OK || !m)
        return st;
    /* the combine (phase 2 reads no weights: the f32 shader) */
    uint32_t spec[8] = {wg, 1, mf_wfmt(d->w_down), 1, flags, 1, 2, 1};
    pd.shader = sg ? &mf_shader_moe_down_sg : &mf_shader_moe_down_sh;
    pd.n_spec = 8;
    memcpy(pd.spec, spec, sizeof spec);
    return mf_vk_pipe_get(vk, &pd, &out->comb);
}

void mf_gpu_down_record(mf_vk *vk, mf_vk_prog *p, const mf_dn_res *r,
                        int64_t T, int32_t k, const mf_vk_bind *h,
                        uint32_t hs, const mf_vk_bind *idx, uint32_t idx_off,
                        const mf_vk_bind *w, uint32_t w_off,
                        const mf_vk_bind *res, uint32_t res_off,
                        const mf_vk_bind *y, uint32_t y_off,
                        const mf_vk_bind *v, const mf_vk_bind *hq)
{
    const mf_wkey *wk = &r->wd->key;
    dn_push pc = {
        .H = (uint32_t)wk->n, .T = (uint32_t)T, .k = (uint32_t)k,
        .E = (uint32_t)wk->e, .nb = r->wd->lay.nb,
        .gpr = wk->group_size ? (uint32_t)(wk->k / wk->group_size) : 0,
        .hs = hs, .idx_off = idx_off, .w_off = w_off, .res_off = res_off,
        .y_off = y_off};
    if (r->quant) {
        uint32_t qpc[3] = {(uint32_t)(T * k) * pc.nb, pc.nb, hs};
        mf_vk_bind qb[2] = {*h, *hq};
        uint64_t qx = ((uint64_t)qpc[0] + DOWN_QWG - 1) / DOWN_QWG;
        if (qx > vk->max_groups_x)
            qx = vk->max_groups_x;
        mf_vk_cmd_dispatch(vk, p, r->quant, qb, qpc, (uint32_t)qx, 1, 1);
        mf_vk_cmd_barrier(p);
        h = hq;
    }
    mf_vk_bind b[8] = {{0}, *h, *idx, *w,
                       r->bd ? (mf_vk_bind){.buf = mf_wres_buf(r->bd)} : *h,
                       res ? *res : *h, *y, r->group ? *v : *y};
    uint64_t gx = ((uint64_t)wk->n + r->rows - 1) / r->rows;
    if (gx > vk->max_groups_x)
        gx = vk->max_groups_x;
    /* a dispatch per weight part (one unless split, then grouped): their
     * v rows are disjoint, so no barrier between them */
    for (uint32_t i = 0; i < r->wd->nparts; i++) {
        const mf_wpart *wp = &r->wd->part[i];
        pc.lo = wp->e0;
        pc.hi = wp->e0 + wp->ne;
        pc.row0 = (uint32_t)wp->r0;
        pc.soff = (uint32_t)(wp->lay.soff / 4);
        pc.boff = (uint32_t)(wp->lay.boff / 4);
        b[0] = (mf_vk_bind){.buf = &wp->buf};
        uint64_t gy = r->group ? (uint64_t)wp->ne : (uint64_t)T;
        if (gy > 65535)
            gy = 65535;
        mf_vk_cmd_dispatch(vk, p, r->pipe, b, &pc, (uint32_t)gx,
                           (uint32_t)gy, 1);
    }
    if (!r->group)
        return;
    mf_vk_cmd_barrier(p);
    const uint32_t wg = r->comb->desc.spec[0];
    gx = ((uint64_t)T * wk->n + wg - 1) / wg;
    if (gx > vk->max_groups_x)
        gx = vk->max_groups_x;
    mf_vk_cmd_dispatch(vk, p, r->comb, b, &pc, (uint32_t)gx, 1, 1);
}

uint32_t mf_gpu_down_dispatches(const mf_dn_res *r)
{
    return (r->quant != NULL) + r->wd->nparts + (r->group != 0);
}

mf_status mf_gpu_moe_down_combine(mf_gpu *g, const mf_moe_down_desc *d,
                                  int64_t T, int32_t k, const float *h,
                                  const int32_t *idx, const float *w,
                                  const float *residual, float *y)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    mf_wcache_begin(g);
    const int has_res = residual != NULL;
    mf_dn_res r;
    st = mf_gpu_down_prepare(g, d, T, k, has_res, &r);
    if (st != MF_OK)
        return st;
    const int64_t H = d->w_down->n, F = d->w_down->k;
    const int64_t F32 = (int64_t)r.wd->lay.nb * 32;
    const uint64_t P = (uint64_t)T * (uint64_t)k;
    /* in: h rows (padded to whole blocks) | idx | w | residual */
    const uint64_t hb = P * (uint64_t)F32 * 4;
    const uint64_t idx_at = mf_qalign((size_t)hb);
    const uint64_t w_at = mf_qalign((size_t)(idx_at + P * 4));
    const uint64_t res_at = mf_qalign((size_t)(w_at + P * 4));
    const uint64_t in_bytes = has_res ? res_at + (uint64_t)(T * H) * 4
                                      : w_at + P * 4;
    const uint64_t out_bytes = (uint64_t)(T * H) * 4;
    if (in_bytes > vk->max_binding || out_bytes > vk->max_binding ||
        P > UINT32_MAX / 2)
        return MF_ERR_DEVICE_OOM;

    dn_key key;
    memset(&key, 0, sizeof key);
    key.wid[0] = r.wd->id;
    key.wid[1] = r.bd ? r.bd->id : 0;
    key.T = T;
    key.k = k;
    key.has_res = has_res;
    key.group = r.group;
    key.int8 = r.int8;
    key.rows = r.rows | (uint32_t)r.slots << 31;
    key.preq = r.quant != NULL;
    key.pipe = (uint64_t)(uintptr_t)r.pipe;
    mf_vk_plans *c = &g->plans[MF_GPU_OP_MOE_DOWN];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        int in = mf_vk_plan_io(vk, pl, (size_t)in_bytes, MF_VK_IN, &st);
        int out = -1;
        if (in >= 0)
            out = mf_vk_plan_io(vk, pl, (size_t)out_bytes, MF_VK_OUT, &st);
        /* the grouped mode's v [P, H], then the quantized h */
        const size_t v_bytes = mf_dn_v_bytes(&r, P, H);
        if (out >= 0 && (r.group || r.quant))
            st = mf_vk_plan_scratch(vk, pl, v_bytes + (size_t)r.hq_bytes);
        if (out >= 0 && st == MF_OK)
            st = mf_vk_prog_init(vk, &pl->prog, mf_gpu_down_dispatches(&r));
        if (out >= 0 && st == MF_OK)
            st = mf_vk_prog_begin(vk, &pl->prog);
        if (out >= 0 && st == MF_OK) {
            memset(pl->io[in].map, 0, (size_t)in_bytes);
            const mf_vk_buf *ib = &pl->io[in].dev;
            mf_vk_bind hbnd = {.buf = ib, .range = hb};
            mf_vk_bind ibnd = {.buf = ib, .offset = idx_at};
            mf_vk_bind wbnd = {.buf = ib, .offset = w_at};
            mf_vk_bind rbnd = {.buf = ib, .offset = res_at};
            mf_vk_bind ybnd = {.buf = &pl->io[out].dev};
            mf_vk_bind vbnd = {.buf = &pl->scratch, .range = v_bytes};
            mf_vk_bind qbnd = {.buf = &pl->scratch, .offset = v_bytes,
                               .range = r.hq_bytes};
            mf_vk_cmd_upload(vk, &pl->prog, &pl->io[in]);
            mf_gpu_down_record(vk, &pl->prog, &r, T, k, &hbnd,
                               (uint32_t)(F32 / 4), &ibnd, 0, &wbnd, 0,
                               has_res ? &rbnd : NULL, 0, &ybnd, 0, &vbnd,
                               &qbnd);
            mf_vk_cmd_download(vk, &pl->prog, &pl->io[out]);
            st = mf_vk_prog_end(vk, &pl->prog);
        }
        if (st != MF_OK) {
            mf_vk_plans_drop(vk, c, pl);
            return st;
        }
        pl->ready = 1;
    }
    unsigned char *in = pl->io[0].map;
    if (F == F32) {
        memcpy(in, h, (size_t)(P * (uint64_t)F) * 4);
    } else {
        for (uint64_t p = 0; p < P; p++)
            memcpy(in + (size_t)(p * (uint64_t)F32) * 4, h + p * (uint64_t)F,
                   (size_t)F * 4);
    }
    memcpy(in + idx_at, idx, (size_t)P * 4);
    memcpy(in + w_at, w, (size_t)P * 4);
    if (has_res)
        memcpy(in + res_at, residual, (size_t)(T * H) * 4);
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    memcpy(y, pl->io[1].map, (size_t)out_bytes);
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}
