/* The MoE chain on the device: router logits (qmv) -> gating ->
 * moe_gate_up -> moe_down_combine recorded once into one command buffer
 * with a barrier between the dispatches and timestamps after each, replayed
 * per call with one submit. Intermediates stay in device memory; per call x
 * and the residual go up, y, idx, the routing weights (and the logits) come
 * back.
 *
 * Buffers of a plan:
 *   in  (host -> device): [bias E | logits T E] | x [T, H32] | residual
 *       [T, H] (the logits part only when they are given)
 *   out (device -> host): y [T, H] | idx [T, k], w [T, k], flags [T]
 *   g   (device): the gating output at out's offset gout_at, then from
 *       gin_at the router's logits (after E unused words)
 *   h   (device): [T k, F32]
 *   v   (device, when down_combine runs grouped by expert): [T k, H]
 * Gating reads the bias and given logits where the host wrote them (in)
 * and the router's logits in g, and writes the routing twice: into g,
 * which every later step reads (`out` may be host memory, written by the
 * shaders over the bus, out_to_host, where each read is a bus round trip),
 * and into `out` for the host. No copy dispatch runs before or after the
 * ops (each cost about a chain step and a barrier on the H200).
 *
 * Sigmoid mode: a row whose selection the device cannot prove (flag set) is
 * recomputed on the host with the reference, as mf_gating on the GPU does;
 * when any row was, gate_up and down_combine run again op by op with the
 * corrected routing, so the results equal the op-by-op GPU path. */
#include <stdlib.h>
#include <string.h>

#include "../cpu/kernels.h"
#include "quant.h"

#define CHAIN_PLANS 4
#define CHAIN_STEPS 4

typedef struct chain_key {
    /* router, router bias, gate, up, gate bias, up bias, down, down bias */
    uint32_t ids[8];
    int64_t T;
    int32_t E, k, mode, renorm, has_cbias, G, topk_group, glu, layout;
    int32_t has_res, has_router;
    uint32_t scale_bits, limit_bits, alpha_bits;
    uint32_t gu_group, dn_group; /* the expert ops' modes (mf_qgroup) */
    int32_t gu_int8, dn_int8;    /* and their INT8 shaders (mf_qint8) */
    uint32_t dn_rows;            /* mf_dn_res.rows, slots in bit 31 */
    int32_t prefetch;            /* the down weights warmed (prefetch.c) */
    uint32_t forms;              /* mf_gpu_forms_word when recorded */
    uint64_t gu_pipe, dn_pipe;   /* the expert ops' pipelines (tuning) */
} chain_key;

typedef struct chain_plan {
    chain_key key;
    int used, ready;
    uint64_t last_use;
    mf_vk_prog prog;
    VkQueryPool ts;  /* CHAIN_STEPS + 1 timestamps, or VK_NULL_HANDLE */
    mf_vk_io in, out;
    mf_vk_buf g, h, v; /* v: the grouped down's projections, or none */
    mf_vk_buf pf;      /* the cache warming's unread output */
    size_t x_at, res_at, in_bytes;
    size_t gout_at, gin_at, out_bytes, g_bytes;
} chain_plan;

struct mf_chain_plans {
    chain_plan slot[CHAIN_PLANS];
    uint64_t clock;
    chain_plan *last;
};

static void plan_free(mf_vk *vk, chain_plan *p)
{
    mf_vk_prog_free(vk, &p->prog);
    if (p->ts)
        vkDestroyQueryPool(vk->dev, p->ts, NULL);
    mf_vk_io_destroy(vk, &p->in);
    mf_vk_io_destroy(vk, &p->out);
    mf_vk_buf_destroy(vk, &p->g);
    mf_vk_buf_destroy(vk, &p->h);
    mf_vk_buf_destroy(vk, &p->v);
    mf_vk_buf_destroy(vk, &p->pf);
    memset(p, 0, sizeof *p);
}

void mf_chain_plans_free(mf_gpu *g, mf_chain_plans *c)
{
    for (int i = 0; i < CHAIN_PLANS; i++)
        if (c->slot[i].used)
            plan_free(&g->vk, &c->slot[i]);
    free(c);
}

void mf_chain_plans_drop_id(mf_gpu *g, mf_chain_plans *c, uint32_t id)
{
    for (int i = 0; i < CHAIN_PLANS; i++) {
        chain_plan *p = &c->slot[i];
        if (!p->used)
            continue;
        for (int j = 0; j < 8; j++)
            if (p->key.ids[j] == id) {
                if (c->last == p)
                    c->last = NULL;
                plan_free(&g->vk, p);
                break;
            }
    }
}

static chain_plan *lookup(mf_gpu *g, mf_chain_plans *c, const chain_key *k)
{
    c->clock++;
    chain_plan *victim = NULL;
    for (int i = 0; i < CHAIN_PLANS; i++) {
        chain_plan *p = &c->slot[i];
        if (p->used && memcmp(&p->key, k, sizeof *k) == 0) {
            p->last_use = c->clock;
            return p;
        }
        if (!victim || !p->used ||
            (victim->used && p->last_use < victim->last_use))
            victim = p;
    }
    if (victim->used) {
        if (c->last == victim)
            c->last = NULL;
        plan_free(&g->vk, victim);
    }
    victim->used = 1;
    victim->key = *k;
    victim->last_use = c->clock;
    return victim;
}

static void drop(mf_gpu *g, mf_chain_plans *c, chain_plan *p)
{
    if (c->last == p)
        c->last = NULL;
    plan_free(&g->vk, p);
}

static uint32_t id_of(const mf_wres *r) { return r ? r->id : 0; }

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void stamp(mf_vk_prog *p, VkQueryPool ts, uint32_t i)
{
    if (ts && !p->err)
        vkCmdWriteTimestamp(p->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, ts,
                            i);
}

typedef struct chain_args {
    const mf_gpu_chain_desc *d;
    const mf_wres *router, *rbias;
    mf_gu_res gu;
    mf_dn_res dn;
    int64_t T, H, H32, F32;
    int32_t E, k;
    int has_res;
    const mf_vk_pipe *pf_pipe; /* cache warming, or NULL */
} chain_args;

static mf_status record(mf_gpu *g, chain_plan *p, const chain_args *a)
{
    mf_vk *vk = &g->vk;
    const mf_gpu_chain_desc *d = a->d;
    const int64_t T = a->T, E = a->E, k = a->k, H = a->H;
    const uint64_t P = (uint64_t)(T * k);
    const size_t gin_bytes = (size_t)(E + T * E) * 4;
    p->x_at = mf_qalign(gin_bytes);
    p->res_at = mf_qalign(p->x_at + (size_t)(T * a->H32) * 4);
    p->in_bytes = a->has_res ? p->res_at + (size_t)(T * H) * 4
                             : p->x_at + (size_t)(T * a->H32) * 4;
    const size_t gout_bytes = (size_t)(2 * P + (uint64_t)T) * 4;
    p->gout_at = mf_qalign((size_t)(T * H) * 4);
    p->out_bytes = p->gout_at + gout_bytes;
    p->gin_at = mf_qalign(p->out_bytes);
    p->g_bytes = p->gin_at + gin_bytes;
    const size_t h_bytes = (size_t)P * (size_t)a->F32 * 4;
    if (p->in_bytes > vk->max_binding || p->g_bytes > vk->max_binding ||
        h_bytes > vk->max_binding)
        return MF_ERR_UNSUPPORTED;

    /* the router's qmv pipeline */
    const mf_vk_pipe *rpipe = NULL;
    uint32_t rwg = 0, rrows = 0;
    mf_status st = MF_OK;
    if (a->router)
        st = mf_gpu_qmv_pipe(vk, d->router, mf_qmv_rows_per_pass(T), 0, &rpipe,
                             &rwg, &rrows);
    if (st == MF_OK)
        st = mf_vk_io_create(vk, p->in_bytes, MF_VK_IN, &p->in);
    if (st == MF_OK)
        st = mf_vk_io_create(vk, p->out_bytes, MF_VK_OUT, &p->out);
    if (st == MF_OK)
        st = mf_vk_buf_create(vk, p->g_bytes, MF_VK_MEM_DEVICE, &p->g);
    if (st == MF_OK)
        st = mf_vk_buf_create(vk, h_bytes, MF_VK_MEM_DEVICE, &p->h);
    /* v: the grouped down's [P, H], then the quantized h (INT8) */
    const size_t v_bytes = mf_dn_v_bytes(&a->dn, P, H);
    if (st == MF_OK && (a->dn.group || a->dn.quant))
        st = mf_vk_buf_create(vk, v_bytes + (size_t)a->dn.hq_bytes,
                              MF_VK_MEM_DEVICE, &p->v);
    if (st == MF_OK && a->pf_pipe)
        st = mf_vk_buf_create(vk, 16, MF_VK_MEM_DEVICE, &p->pf);
    /* dispatches: the router's (one per part), gating, the gate_up and
     * down steps' */
    if (st == MF_OK)
        st = mf_vk_prog_init(
            vk, &p->prog,
            1 + (a->router ? a->router->nparts : 0) +
                mf_gpu_gate_up_dispatches(&a->gu) +
                mf_gpu_down_dispatches(&a->dn) + (a->pf_pipe != NULL));
    if (st == MF_OK && vk->timestamps) {
        VkQueryPoolCreateInfo qi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = CHAIN_STEPS + 1,
        };
        if (vkCreateQueryPool(vk->dev, &qi, NULL, &p->ts) != VK_SUCCESS)
            p->ts = VK_NULL_HANDLE; /* steps unmeasured; the chain runs */
    }
    if (st == MF_OK)
        st = mf_vk_prog_begin(vk, &p->prog);
    if (st != MF_OK)
        return st;
    memset(p->in.map, 0, p->in_bytes);
    mf_vk_prog *pr = &p->prog;
    if (p->ts)
        vkCmdResetQueryPool(pr->cb, p->ts, 0, CHAIN_STEPS + 1);

    /* inputs (bias, given logits, x, residual) to the device where `in`
     * is staged; the first dispatch waits for the copy */
    mf_vk_cmd_upload(vk, pr, &p->in);
    if (a->F32 != (d->gate_up->layout == MF_GLU_SEPARATE
                       ? d->gate_up->w_gate->n
                       : d->gate_up->w_gate->n / 2)) {
        vkCmdFillBuffer(pr->cb, p->h.buf, 0, VK_WHOLE_SIZE, 0);
        pr->uploaded = 1;
    }
    stamp(pr, p->ts, 0);

    const mf_vk_buf *ib = &p->in.dev, *ob = &p->out.dev;
    mf_vk_bind gin = {.buf = &p->g, .offset = p->gin_at, .range = gin_bytes};
    mf_vk_bind gout = {.buf = &p->g, .offset = p->gout_at, .range = gout_bytes};
    /* the gating input: the router's logits in g, or the given ones in
     * `in` (after the bias, as in g) */
    mf_vk_bind lin = a->router ? gin
                               : (mf_vk_bind){.buf = ib, .range = gin_bytes};
    mf_vk_bind bias = {.buf = ib, .range = (VkDeviceSize)E * 4};
    mf_vk_bind mirror = {.buf = ob, .offset = p->gout_at, .range = gout_bytes};
    if (a->router) {
        mf_vk_bind x = {.buf = ib, .offset = p->x_at,
                        .range = (VkDeviceSize)(T * a->H32) * 4};
        mf_vk_bind rb = {.buf = a->rbias ? mf_wres_buf(a->rbias) : ib};
        mf_gpu_qmv_record(vk, pr, rpipe, a->router, rrows, T, MF_ACT_NONE,
                          &x, &gin, (uint32_t)E, (uint32_t)E,
                          a->rbias ? &rb : NULL, 0);
        mf_vk_cmd_barrier(pr);
    }
    stamp(pr, p->ts, 1);
    st = mf_gpu_gating_record(g, pr, d->gating, T, &lin, &bias, &gout,
                              &mirror);
    if (st != MF_OK)
        return st;
    mf_vk_cmd_barrier(pr);
    stamp(pr, p->ts, 2);
    mf_vk_bind x = {.buf = ib, .offset = p->x_at,
                    .range = (VkDeviceSize)(T * a->H32) * 4};
    mf_vk_bind hb = {.buf = &p->h};
    mf_gpu_gate_up_record(vk, pr, d->gate_up, &a->gu, T, (int32_t)k, &x,
                          &gout, 0, &hb, (uint32_t)a->F32);
    if (a->pf_pipe) {
        /* the down weights of the selected experts read into the cache
         * beside gate_up (no barrier between the two), recorded after it
         * so that its workgroups fill gate_up's tail rather than delay
         * its start (recorded before, gate_up took 4-5 us longer on the
         * H100) */
        mf_vk_bind db = {.buf = &p->pf};
        mf_gpu_prefetch_record(vk, pr, a->pf_pipe, a->dn.wd, H, &gout, 0,
                               (uint32_t)P, &db);
    }
    mf_vk_cmd_barrier(pr);
    stamp(pr, p->ts, 3);
    mf_vk_bind yb = {.buf = ob, .range = (VkDeviceSize)(T * H) * 4};
    mf_vk_bind rs = {.buf = ib, .offset = p->res_at};
    mf_vk_bind vb = {.buf = &p->v, .range = v_bytes}; /* (used when grouped) */
    mf_vk_bind qb = {.buf = &p->v, .offset = v_bytes, .range = a->dn.hq_bytes};
    mf_gpu_down_record(vk, pr, &a->dn, T, (int32_t)k, &hb,
                       (uint32_t)(a->F32 / 4), &gout, 0, &gout, (uint32_t)P,
                       a->has_res ? &rs : NULL, 0, &yb, 0, &vb, &qb);
    stamp(pr, p->ts, 4);
    mf_vk_cmd_download(vk, pr, &p->out);
    return mf_vk_prog_end(vk, pr);
}

/* Runs the plan and times it. */
static mf_status run(mf_gpu *g, chain_plan *p, mf_gpu_chain_times *t)
{
    mf_vk *vk = &g->vk;
    int64_t t0 = mf_vk_now_ns();
    mf_status st = mf_vk_prog_run(vk, &p->prog);
    int64_t t1 = mf_vk_now_ns();
    if (st != MF_OK || !t)
        return st;
    t->host_us = (double)(t1 - t0) / 1000.0;
    double gns = mf_vk_prog_gpu_ns(vk, &p->prog);
    t->gpu_us = gns < 0 ? -1.0 : gns / 1000.0;
    uint64_t ts[CHAIN_STEPS + 1];
    int ok = p->ts && vkGetQueryPoolResults(
                          vk->dev, p->ts, 0, CHAIN_STEPS + 1, sizeof ts, ts,
                          sizeof ts[0], VK_QUERY_RESULT_64_BIT) == VK_SUCCESS;
    for (int i = 0; i < CHAIN_STEPS; i++)
        t->step_us[i] = ok ? (double)((ts[i + 1] - ts[i]) & vk->ts_mask) *
                                 vk->ts_period_ns / 1000.0
                           : -1.0;
    return MF_OK;
}

/* Sigmoid mode: recomputes the flagged rows on the host; 1 when any was. */
static int fix_rows(mf_gpu *g, const mf_gating_desc *gd, const float *logits,
                    const uint32_t *flags, int64_t T, int32_t *idx,
                    float *w)
{
    const mf_kernels *ref = mf_kernels_get(MF_ISA_SCALAR);
    const int64_t E = gd->n_experts, k = gd->k;
    int any = 0;
    for (int64_t r = 0; r < T; r++)
        if (flags[r]) {
            ref->gating_row(gd, logits + r * E, idx + r * k, w + r * k,
                            g->scratch);
            g->gating_host_rows++;
            any = 1;
        }
    return any;
}

static mf_status prepare(mf_gpu *g, const mf_gpu_chain_desc *d, int64_t T,
                         int has_res, chain_args *a)
{
    memset(a, 0, sizeof *a);
    a->d = d;
    a->T = T;
    a->E = d->gating->n_experts;
    a->k = d->gating->k;
    a->has_res = has_res;
    a->H = d->down->w_down->n;
    mf_status st = MF_OK;
    if (d->router) {
        st = mf_wcache_get(g, d->router, &a->router);
        if (st == MF_OK && d->router_bias)
            st = mf_wcache_get_f32(g, d->router_bias, a->E, &a->rbias);
    }
    if (st == MF_OK)
        st = mf_gpu_gate_up_prepare(g, d->gate_up, T * a->k, &a->gu);
    if (st == MF_OK)
        st = mf_gpu_down_prepare(g, d->down, T, a->k, has_res, &a->dn);
    if (st != MF_OK)
        return st;
    if (mf_gpu_prefetch_wanted(a->dn.wd, a->H, (uint64_t)(T * a->k)) &&
        (st = mf_gpu_prefetch_pipe(&g->vk, &a->pf_pipe)) != MF_OK)
        return st;
    a->H32 = (int64_t)a->gu.wg->lay.nb * 32;
    a->F32 = (int64_t)a->dn.wd->lay.nb * 32;
    if (a->router && (int64_t)a->router->lay.nb * 32 != a->H32)
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

static chain_key key_of(const mf_vk *vk, const chain_args *a)
{
    const mf_gpu_chain_desc *d = a->d;
    const mf_gating_desc *gd = d->gating;
    const mf_moe_gate_up_desc *gu = d->gate_up;
    chain_key k;
    memset(&k, 0, sizeof k);
    k.ids[0] = id_of(a->router);
    k.ids[1] = id_of(a->rbias);
    k.ids[2] = id_of(a->gu.wg);
    k.ids[3] = id_of(a->gu.wu);
    k.ids[4] = id_of(a->gu.bg);
    k.ids[5] = id_of(a->gu.bu);
    k.ids[6] = id_of(a->dn.wd);
    k.ids[7] = id_of(a->dn.bd);
    k.T = a->T;
    k.E = a->E;
    k.k = a->k;
    k.mode = (int32_t)gd->mode;
    k.renorm = gd->renormalize;
    k.has_cbias = gd->bias != NULL;
    k.G = gd->n_group;
    k.topk_group = gd->topk_group;
    k.scale_bits = fbits(gd->scale);
    k.glu = (int32_t)gu->glu;
    k.layout = (int32_t)gu->layout;
    k.limit_bits = fbits(gu->limit);
    k.alpha_bits = fbits(gu->alpha);
    k.has_res = a->has_res;
    k.gu_pipe = (uint64_t)(uintptr_t)a->gu.pipe;
    k.has_router = d->router != NULL;
    k.gu_group = a->gu.group;
    k.dn_group = a->dn.group;
    k.gu_int8 = a->gu.int8;
    k.dn_int8 = a->dn.int8;
    k.dn_rows = a->dn.rows | (uint32_t)a->dn.slots << 31;
    k.dn_pipe = (uint64_t)(uintptr_t)a->dn.pipe;
    k.prefetch = a->pf_pipe != NULL;
    k.forms = mf_gpu_forms_word(vk);
    return k;
}

mf_status mf_gpu_moe_chain(mf_gpu *g, const mf_gpu_chain_desc *d,
                           const float *x, const float *logits, int64_t T,
                           const float *residual, float *y, int32_t *idx,
                           float *weights, mf_gpu_chain_times *times)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_gpu_quant *q = mf_gpu_quant_of(g);
    if (!q)
        return MF_ERR_OUT_OF_MEMORY;
    if (!q->chains) {
        q->chains = calloc(1, sizeof *q->chains);
        if (!q->chains)
            return MF_ERR_OUT_OF_MEMORY;
    }
    mf_wcache_begin(g);
    chain_args a;
    st = prepare(g, d, T, residual != NULL, &a);
    if (st != MF_OK)
        return st;
    chain_key key = key_of(&g->vk, &a);
    chain_plan *p = lookup(g, q->chains, &key);
    if (!p->ready) {
        st = record(g, p, &a);
        if (st != MF_OK) {
            drop(g, q->chains, p);
            return st;
        }
        p->ready = 1;
    }

    const int64_t E = a.E, k = a.k, H = a.H, Hk = d->gate_up->w_gate->k;
    const size_t P = (size_t)(T * k);
    unsigned char *in = p->in.map;
    if (d->gating->bias)
        memcpy(in, d->gating->bias, (size_t)E * 4);
    if (!d->router)
        memcpy(in + (size_t)E * 4, logits, (size_t)(T * E) * 4);
    float *xin = (float *)(in + p->x_at);
    if (Hk == a.H32)
        memcpy(xin, x, (size_t)(T * Hk) * 4);
    else
        for (int64_t t = 0; t < T; t++)
            memcpy(xin + t * a.H32, x + t * Hk, (size_t)Hk * 4);
    if (residual)
        memcpy(in + p->res_at, residual, (size_t)(T * H) * 4);
    st = run(g, p, times);
    if (st != MF_OK) {
        drop(g, q->chains, p);
        return st;
    }
    q->chains->last = p;
    const unsigned char *out = p->out.map;
    memcpy(idx, out + p->gout_at, P * 4);
    memcpy(weights, out + p->gout_at + P * 4, P * 4);
    g->gating_device_rows += T;
    if (d->gating->mode == MF_GATING_SIGMOID_GROUPED) {
        const uint32_t *flags = (const uint32_t *)(out + p->gout_at + 2 * P * 4);
        int64_t nflag = 0;
        for (int64_t r = 0; r < T; r++)
            nflag += flags[r] != 0;
        /* the router's logits, fetched only when a row needs them */
        float *lg = NULL;
        if (nflag && d->router) {
            lg = malloc((size_t)(T * E) * 4);
            if (!lg)
                return MF_ERR_OUT_OF_MEMORY;
            st = mf_vk_download(&g->vk, &p->g, p->gin_at + (size_t)E * 4, lg,
                                (size_t)(T * E) * 4);
            if (st != MF_OK) {
                free(lg);
                return st;
            }
        }
        int fixed = nflag && fix_rows(g, d->gating, lg ? lg : logits, flags,
                                      T, idx, weights);
        free(lg);
        if (fixed) {
            float *h = malloc(P * (size_t)(d->down->w_down->k) * 4);
            if (!h)
                return MF_ERR_OUT_OF_MEMORY;
            st = mf_gpu_moe_gate_up(g, d->gate_up, T, (int32_t)k, x, idx, h);
            if (st == MF_OK)
                st = mf_gpu_moe_down_combine(g, d->down, T, (int32_t)k, h,
                                             idx, weights, residual, y);
            free(h);
            return st;
        }
    }
    memcpy(y, out, (size_t)(T * H) * 4);
    return MF_OK;
}

mf_status mf_gpu_bench_chain(mf_gpu *g, mf_gpu_chain_times *t)
{
    if (!g || !t)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    if (!g->quant || !g->quant->chains || !g->quant->chains->last)
        return MF_ERR_INVALID_ARG;
    return run(g, g->quant->chains->last, t);
}
