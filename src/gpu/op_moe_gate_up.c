/* mf_moe_gate_up on the device (shaders/moe_gate_up.comp): the expert
 * weights and biases resident, per call x and idx up and h back. Every
 * layout, GLU kind and bias combination; per pair or grouped by expert
 * (mf_qgroup), the same bits either way. EXACT math; MF_PREC_INT8
 * with quantized weights runs the INT8 shader where the device has integer
 * dot products (mf_qint8), else the EXACT one (ops.h). */
#include <string.h>

#include "quant.h"
#include "shaders.h"

typedef struct gu_key {
    uint32_t wid[4]; /* gate, up, gate bias, up bias */
    int64_t T;
    int32_t k, glu, layout, group; /* group: mf_gu_res.group */
    int32_t int8;                  /* mf_gu_res.int8 */
    uint32_t limit_bits, alpha_bits;
    uint64_t pipe; /* the pipeline: its tuning (lanes, rows, staging) */
} gu_key;

typedef struct gu_push {
    uint32_t F, P, k, E, nb;
    uint32_t soff_g, boff_g, gpr_g, soff_u, boff_u, gpr_u;
    uint32_t xs, hs, idx_off;
    float limit, alpha;
    uint32_t lo, hi, row0_g, row0_u;
} gu_push;

static uint32_t gpr_of(const mf_wres *r)
{
    return r->key.group_size ? (uint32_t)(r->key.k / r->key.group_size) : 0;
}

mf_status mf_gpu_gate_up_prepare(mf_gpu *g, const mf_moe_gate_up_desc *d,
                                 int64_t pairs, mf_gu_res *out)
{
    const int sep = d->layout == MF_GLU_SEPARATE;
    memset(out, 0, sizeof *out);
    mf_status st = mf_wcache_get(g, d->w_gate, &out->wg);
    if (st == MF_OK)
        st = sep ? mf_wcache_get(g, d->w_up, &out->wu) : MF_OK;
    if (!sep)
        out->wu = out->wg;
    /* parts of rows inside one expert: no dispatch serves them */
    if (st == MF_OK &&
        (!mf_wres_by_expert(out->wg) || !mf_wres_by_expert(out->wu)))
        st = MF_ERR_DEVICE_OOM;
    const int64_t nb = d->w_gate->e * d->w_gate->n;
    if (st == MF_OK && d->b_gate)
        st = mf_wcache_get_f32(g, d->b_gate, nb, &out->bg);
    if (st == MF_OK && sep && d->b_up)
        st = mf_wcache_get_f32(g, d->b_up, nb, &out->bu);
    if (!sep)
        out->bu = out->bg;
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    const mf_tensor *ws[2] = {d->w_gate, sep ? d->w_up : d->w_gate};
    const int want8 = mf_qint8(vk, d->prec, ws, 2);
    uint32_t wg = want8 ? mf_qwg_i8(vk) : mf_qwg(vk);
    uint32_t tpr = want8 ? mf_qlanes_gu_i8(vk, out->wg->lay.nb)
                         : mf_qlanes(vk, out->wg->lay.nb);
    const uint64_t F = (uint64_t)(sep ? d->w_gate->n : d->w_gate->n / 2);
    const uint64_t E = (uint64_t)d->w_gate->e;
    /* built-in grouping from 16 pairs an expert on (EXACT), 2 (INT8: on
     * the H100 at Qwen3 T = 32, 2 pairs an expert, grouped INT8 gate_up
     * took 0.74x the time of per pair, EXACT 1.20x) */
    uint32_t m = mf_qgroup((uint64_t)pairs, E, want8 ? 2 : 16,
                           mf_gpu_form(vk, MF_GPU_FORM_GU_GROUP));
    /* grouped: at most min(E, pairs) experts' workgroups have work */
    uint32_t rpw = mf_qrpw(F, wg / tpr,
                           m ? ((uint64_t)pairs < E ? (uint64_t)pairs : E)
                             : (uint64_t)pairs);
    /* red: 2 M RPW floats per thread (shared-memory variant); the pair
     * list: 2 WG + 1 words */
    const int sg = mf_quse_subgroup(vk);
    if (m) {
        mf_qgroup_fit(vk, sg, wg, 2, 2 * (size_t)wg + 1, &m, &rpw);
        if (!m)
            return MF_ERR_UNSUPPORTED;
    }
    uint32_t mode = (uint32_t)d->glu | (uint32_t)d->layout << 4 |
                    (uint32_t)(out->bg != NULL) << 8 |
                    (uint32_t)(out->bu != NULL) << 9;
    /* INT8: the staged activation blocks of M pairs beside the reduction
     * and the pair list */
    uint32_t kb = 0;
    if (want8) {
        size_t other = 4 * ((sg ? 0 : (size_t)2 * (m ? m : 1) * rpw * wg) +
                            2 * (size_t)wg + 1);
        kb = mf_qkb(vk, out->wg->lay.nb, m ? m : 1, other);
    }
    /* EXACT: the staged activations beside the reduction and the list,
     * where the form gu_xstage says so; built-in: not staged (on the H100
     * staging was 1.03x slower at Qwen3 T = 1 and 1.14x at T = 32, 0.93x
     * at T = 2-4, where a profiled machine keeps it; on lavapipe 1.2-1.6x
     * slower) */
    uint32_t xkb = 0;
    if (!kb && mf_gpu_form(vk, MF_GPU_FORM_GU_XSTAGE) == 1)
        xkb = mf_qxkb(vk, out->wg->lay.nb, m ? m : 1, tpr,
                      4 * ((sg ? 0 : (size_t)2 * (m ? m : 1) * rpw * wg) +
                           2 * (size_t)wg + 2));
    /* EXACT unstaged: the next block's weight loads in flight while a
     * lane computes the current one, where MOEFUSE_GPU_GU_NEXT=1 says so
     * (built-in: not; the registers double) */
    const uint32_t next = !kb && mf_gpu_env_is("MOEFUSE_GPU_GU_NEXT", "1");
    mf_vk_pipe_desc pd = {
        .shader = kb ? (sg ? &mf_shader_moe_gate_up_i8_sg
                           : &mf_shader_moe_gate_up_i8_sh)
                     : (sg ? &mf_shader_moe_gate_up_sg
                           : &mf_shader_moe_gate_up_sh),
        .n_bindings = 7,
        .push_bytes = sizeof(gu_push),
        .n_spec = 10,
        .spec = {wg, tpr, mf_wfmt(d->w_gate),
                 mf_wfmt(sep ? d->w_up : d->w_gate), mode, rpw, m != 0,
                 m ? m : 1, kb ? kb : xkb, next},
    };
    out->rows = wg / tpr * rpw;
    out->group = m;
    out->int8 = kb != 0;
    return mf_vk_pipe_get(vk, &pd, &out->pipe);
}

void mf_gpu_gate_up_record(mf_vk *vk, mf_vk_prog *p,
                           const mf_moe_gate_up_desc *d, const mf_gu_res *r,
                           int64_t T, int32_t k, const mf_vk_bind *x,
                           const mf_vk_bind *idx, uint32_t idx_off,
                           const mf_vk_bind *h, uint32_t hs)
{
    const int sep = d->layout == MF_GLU_SEPARATE;
    const uint32_t F = (uint32_t)(sep ? d->w_gate->n : d->w_gate->n / 2);
    gu_push pc = {
        .F = F, .P = (uint32_t)(T * k), .k = (uint32_t)k,
        .E = (uint32_t)d->w_gate->e, .nb = r->wg->lay.nb,
        .gpr_g = gpr_of(r->wg), .gpr_u = gpr_of(r->wu),
        .xs = r->wg->lay.nb * 8, .hs = hs, .idx_off = idx_off,
        .limit = d->limit != 0.0f ? d->limit : 7.0f,
        .alpha = d->alpha != 0.0f ? d->alpha : 1.702f};
    mf_vk_bind none = *x;
    mf_vk_bind b[7] = {
        {0}, {0}, *x, *idx,
        r->bg ? (mf_vk_bind){.buf = mf_wres_buf(r->bg)} : none,
        r->bu ? (mf_vk_bind){.buf = mf_wres_buf(r->bu)} : none, *h};
    uint64_t gx = (F + r->rows - 1) / r->rows;
    if (gx > vk->max_groups_x)
        gx = vk->max_groups_x;
    /* a dispatch per range of experts that one gate part and one up part
     * both hold (the two tensors may split differently); the outputs of
     * different ranges are disjoint, so no barrier between them */
    uint32_t ig = 0, iu = 0;
    while (ig < r->wg->nparts && iu < r->wu->nparts) {
        const mf_wpart *pg = &r->wg->part[ig], *pu = &r->wu->part[iu];
        const uint32_t eg1 = r->wg->nparts == 1 ? pc.E : pg->e0 + pg->ne;
        const uint32_t eu1 = r->wu->nparts == 1 ? pc.E : pu->e0 + pu->ne;
        pc.lo = pg->e0 > pu->e0 ? pg->e0 : pu->e0;
        pc.hi = eg1 < eu1 ? eg1 : eu1;
        pc.soff_g = (uint32_t)(pg->lay.soff / 4);
        pc.boff_g = (uint32_t)(pg->lay.boff / 4);
        pc.soff_u = (uint32_t)(pu->lay.soff / 4);
        pc.boff_u = (uint32_t)(pu->lay.boff / 4);
        pc.row0_g = (uint32_t)pg->r0;
        pc.row0_u = (uint32_t)pu->r0;
        b[0] = (mf_vk_bind){.buf = &pg->buf};
        b[1] = (mf_vk_bind){.buf = &pu->buf};
        uint64_t gy = r->group ? (uint64_t)(pc.hi - pc.lo) : (uint64_t)pc.P;
        if (gy > 65535)
            gy = 65535;
        if (pc.hi > pc.lo)
            mf_vk_cmd_dispatch(vk, p, r->pipe, b, &pc, (uint32_t)gx,
                               (uint32_t)gy, 1);
        if (eg1 <= eu1)
            ig++;
        if (eu1 <= eg1)
            iu++;
    }
}

uint32_t mf_gpu_gate_up_dispatches(const mf_gu_res *r)
{
    /* the ranges' ends are the parts' ends: at most one per part end */
    return r->wg->nparts + r->wu->nparts - 1;
}

static uint32_t id_of(const mf_wres *r) { return r ? r->id : 0; }

mf_status mf_gpu_moe_gate_up(mf_gpu *g, const mf_moe_gate_up_desc *d,
                             int64_t T, int32_t k, const float *x,
                             const int32_t *idx, float *h)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    mf_wcache_begin(g);
    mf_gu_res r;
    st = mf_gpu_gate_up_prepare(g, d, T * k, &r);
    if (st != MF_OK)
        return st;
    const int sep = d->layout == MF_GLU_SEPARATE;
    const int64_t H = d->w_gate->k, H32 = (int64_t)r.wg->lay.nb * 32;
    const int64_t F = sep ? d->w_gate->n : d->w_gate->n / 2;
    const uint64_t P = (uint64_t)T * (uint64_t)k;
    const uint64_t xb = (uint64_t)T * (uint64_t)H32 * 4;
    const uint64_t idx_at = mf_qalign((size_t)xb);
    const uint64_t in_bytes = idx_at + P * 4;
    const uint64_t out_bytes = P * (uint64_t)F * 4;
    if (in_bytes > vk->max_binding || out_bytes > vk->max_binding ||
        P > UINT32_MAX / 2)
        return MF_ERR_DEVICE_OOM;

    gu_key key;
    memset(&key, 0, sizeof key);
    key.wid[0] = id_of(r.wg);
    key.wid[1] = id_of(r.wu);
    key.wid[2] = id_of(r.bg);
    key.wid[3] = id_of(r.bu);
    key.T = T;
    key.k = k;
    key.glu = (int32_t)d->glu;
    key.layout = (int32_t)d->layout;
    key.group = (int32_t)r.group;
    key.int8 = r.int8;
    key.pipe = (uint64_t)(uintptr_t)r.pipe;
    float lim = d->limit != 0.0f ? d->limit : 7.0f;
    float alp = d->alpha != 0.0f ? d->alpha : 1.702f;
    memcpy(&key.limit_bits, &lim, 4);
    memcpy(&key.alpha_bits, &alp, 4);
    mf_vk_plans *c = &g->plans[MF_GPU_OP_MOE_GATE_UP];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        int in = mf_vk_plan_io(vk, pl, (size_t)in_bytes, MF_VK_IN, &st);
        int out = -1;
        if (in >= 0)
            out = mf_vk_plan_io(vk, pl, (size_t)out_bytes, MF_VK_OUT, &st);
        if (out >= 0)
            st = mf_vk_prog_init(vk, &pl->prog,
                                 mf_gpu_gate_up_dispatches(&r));
        if (out >= 0 && st == MF_OK)
            st = mf_vk_prog_begin(vk, &pl->prog);
        if (out >= 0 && st == MF_OK) {
            memset(pl->io[in].map, 0, (size_t)in_bytes);
            mf_vk_bind xbnd = {.buf = &pl->io[in].dev, .range = xb};
            mf_vk_bind ibnd = {.buf = &pl->io[in].dev, .offset = idx_at};
            mf_vk_bind hbnd = {.buf = &pl->io[out].dev};
            mf_vk_cmd_upload(vk, &pl->prog, &pl->io[in]);
            mf_gpu_gate_up_record(vk, &pl->prog, d, &r, T, k, &xbnd, &ibnd,
                                  0, &hbnd, (uint32_t)F);
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
    if (H == H32) {
        memcpy(in, x, (size_t)(T * H) * 4);
    } else {
        for (int64_t t = 0; t < T; t++)
            memcpy(in + (size_t)(t * H32) * 4, x + t * H, (size_t)H * 4);
    }
    memcpy(in + idx_at, idx, (size_t)P * 4);
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    memcpy(h, pl->io[1].map, (size_t)out_bytes);
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}
