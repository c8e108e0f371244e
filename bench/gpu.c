/* moefuse-bench gpu: the empty-dispatch round trip and a device copy as the
 * floors, then each op at decode shapes: the host round trip of its
 * pre-recorded plan (replayed, no copies, no re-recording), its device time
 * from timestamps, the whole public call from host arrays, and the CPU's time
 * for the same call, all in one run; then the MoE chain (gating ->
 * gate_up -> down_combine in one submit, impl "gpu-chain") against the same
 * three ops submitted one by one ("gpu-3ops"). */
#include <stdlib.h>
#include <string.h>

#include "src/dispatch/cache.h"
#include "suite.h"

typedef struct gcase {
    mf_ctx *ctx;
    mf_gpu *gpu;
    mf_gpu_op op;
    mf_impl impl;
    mf_precision prec; /* of the expert ops and the chain */
    const mf_moe_config *m;
    int64_t T;
    float *logits, *x, *gu, *h, *eo, *rw, *y, *wout;
    int32_t *idx;
    int32_t *gidx; /* gating's output: the moe ops keep idx (experts
                     * within the weights --mem-gb allocated) */
    const mf_moe_weights *w;
    mf_gpu_timing last;
} gcase;

static int call_op(gcase *c)
{
    const mf_moe_config *m = c->m;
    switch (c->op) {
    case MF_GPU_OP_GATING: {
        mf_gating_desc d = {.impl = c->impl, .mode = m->router, .n_experts = m->n_experts,
                            .k = m->top_k, .renormalize = m->renormalize,
                            .n_group = m->n_group, .topk_group = m->topk_group,
                            .scale = m->routed_scale};
        return mf_gating(c->ctx, &d, c->logits, c->T, c->gidx, c->wout);
    }
    case MF_GPU_OP_COMBINE: {
        mf_combine_desc d = {.impl = c->impl};
        return mf_combine(c->ctx, &d, c->T, m->top_k, m->hidden, c->eo, c->rw, c->x, c->y);
    }
    case MF_GPU_OP_GLU: {
        mf_glu_desc d = {.impl = c->impl, .kind = m->glu, .layout = MF_GLU_CONCAT,
                         .in_type = MF_TYPE_F32, .out_type = MF_TYPE_F32};
        return mf_glu(c->ctx, &d, c->T * m->top_k, m->expert_ffn, c->gu, NULL, c->h);
    }
    case MF_GPU_OP_MOE_GATE_UP: {
        int sep = m->gate_up_layout == MF_GLU_SEPARATE;
        mf_moe_gate_up_desc d = {.impl = c->impl, .prec = c->prec, .glu = m->glu,
                                 .layout = m->gate_up_layout,
                                 .w_gate = &c->w->gate, .w_up = sep ? &c->w->up : NULL,
                                 .b_gate = c->w->gate_bias, .b_up = c->w->up_bias};
        return mf_moe_gate_up(c->ctx, &d, c->T, m->top_k, c->x, c->idx, c->h);
    }
    case MF_GPU_OP_MOE_DOWN: {
        mf_moe_down_desc d = {.impl = c->impl, .prec = c->prec, .w_down = &c->w->down,
                              .b_down = c->w->down_bias};
        return mf_moe_down_combine(c->ctx, &d, c->T, m->top_k, c->h, c->idx, c->rw,
                                   NULL, c->y);
    }
    default:
        return MF_ERR_UNSUPPORTED;
    }
}

static int run_call(void *a, int i)
{
    (void)i;
    return call_op(a);
}

static int run_replay(void *a, int i)
{
    (void)i;
    gcase *c = a;
    return mf_gpu_bench_replay(c->gpu, c->op, &c->last);
}

/* Medians of device time: collected by a second pass. */
static double median_gpu_us(gcase *c, int n)
{
    double *v = malloc((size_t)n * sizeof *v);
    int got = 0;
    for (int i = 0; v && i < n; i++) {
        if (mf_gpu_bench_replay(c->gpu, c->op, &c->last) != MF_OK)
            break;
        if (c->last.gpu_us >= 0)
            v[got++] = c->last.gpu_us;
    }
    double med = -1;
    if (got) {
        for (int i = 1; i < got; i++) /* insertion sort: n is small */
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                double t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
        med = v[got / 2];
    }
    free(v);
    return med;
}

static int run_empty(void *a, int i);

static const char *op_names[] = {"gating", "combine", "glu", "dequant_act", "qmv",
                                 "moe_gate_up", "moe_down_combine"};

static int bench_op(gcase *c, const bench_opts *o, bench_results *res,
                    const char *shape, double bytes)
{
    const char *name = op_names[c->op];
    if (o->filter && !strstr(name, o->filter))
        return 0;
    printf("%s  %s\n", name, shape);
    bench_stats st;
    /* CPU, same call */
    c->impl = MF_IMPL_CPU;
    int rc = bench_measure(run_call, c, 3, 1, o->quick ? 5 : 21, 100000, o->budget_us, &st);
    if (rc) {
        fprintf(stderr, "moefuse-bench: %s cpu: %s\n", name, mf_status_str((mf_status)rc));
        return 1;
    }
    bench_results_add(res, name, shape, mf_isa_name(mf_ctx_isa(c->ctx)), &st, bytes);
    bench_print_record(stdout, &res->rec[res->n - 1], bench_floor_now(res));
    if (!c->gpu) {
        printf("  gpu      none (%s)\n", mf_status_str(mf_ctx_gpu_status(c->ctx)));
        return 0;
    }
    /* GPU: the whole call (uploads weights and records the plan once) */
    c->impl = MF_IMPL_GPU;
    bench_stats call;
    rc = bench_measure(run_call, c, 3, 1, o->quick ? 5 : 21, 100000, o->budget_us, &call);
    if (rc == MF_ERR_UNSUPPORTED) {
        printf("  gpu      unsupported by this device or build\n");
        return 0;
    }
    if (rc == MF_ERR_DEVICE_OOM) {
        printf("  gpu      skipped: does not fit in device memory\n");
        return 0;
    }
    if (rc) {
        fprintf(stderr, "moefuse-bench: %s gpu: %s\n", name, mf_status_str((mf_status)rc));
        return 1;
    }
    /* the replay and the empty dispatch side by side: their ratio is the
     * op's overhead over the floor at the same moment */
    bench_stats empty;
    rc = bench_measure_pair(run_replay, c, run_empty, c->gpu, 5, o->quick ? 20 : 101,
                            50000, o->budget_us, &st, &empty);
    if (rc) {
        fprintf(stderr, "moefuse-bench: %s replay: %s\n", name, mf_status_str((mf_status)rc));
        return 1;
    }
    bench_results_add(res, name, shape, "gpu", &st, bytes);
    bench_record *r = &res->rec[res->n - 1];
    r->call_us = call.median_us;
    r->empty_us = empty.median_us;
    r->gpu_us = median_gpu_us(c, o->quick ? 21 : 51);
    bench_print_record(stdout, r, res->device_copy_gbps);
    printf("           round trip / empty dispatch = %.2fx (empty dispatch %.2f us, "
           "interleaved)\n",
           st.median_us / empty.median_us, empty.median_us);
    return 0;
}

/* ---- the MoE chain: gating -> moe_gate_up -> moe_down_combine recorded
 * in one command buffer (one submit, barriers between the dispatches),
 * against the same three ops' pre-recorded plans submitted one by one. */
typedef struct chain_case {
    gcase *c;
    mf_gating_desc gd;
    mf_moe_gate_up_desc gu;
    mf_moe_down_desc dd;
    mf_gpu_chain_times t;
    double steps[4]; /* sums of the chain's step times, for their means */
    double gpuc;     /* sum of the chain's device times */
    double gpu3;     /* sum of the three ops' device times */
    int n, n3;
} chain_case;

static int run_chain_call(void *a, int i)
{
    (void)i;
    chain_case *k = a;
    gcase *c = k->c;
    mf_gpu_chain_desc cd = {.gating = &k->gd, .gate_up = &k->gu, .down = &k->dd};
    /* the kernel forms the placement cache measured for the three ops,
     * as the layer's chain takes them */
    const mf_moe_config *m = c->m;
    const mf_op_shape fs[3] = {
        {.op = MF_OP_GATING, .T = c->T, .E = m->n_experts, .k = m->top_k,
         .mode = (int)m->router},
        {.op = MF_OP_MOE_GATE_UP, .T = c->T, .E = m->n_experts,
         .k = m->top_k, .N = m->expert_ffn, .K = m->hidden,
         .wtype = c->w->gate.type, .mode = (int)m->glu},
        {.op = MF_OP_MOE_DOWN, .T = c->T, .E = m->n_experts, .k = m->top_k,
         .N = m->hidden, .K = m->expert_ffn, .wtype = c->w->down.type}};
    mf_ctx_gpu_forms_n(c->ctx, fs, 3);
    /* its routing into gating's output: the expert ops after it keep the
     * synthetic routing their bytes are counted for */
    return mf_gpu_moe_chain(c->gpu, &cd, c->x, c->logits, c->T, NULL, c->y,
                            c->gidx, c->wout, NULL);
}

static int run_chain_replay(void *a, int i)
{
    (void)i;
    chain_case *k = a;
    int rc = mf_gpu_bench_chain(k->c->gpu, &k->t);
    if (!rc && k->t.gpu_us >= 0) {
        for (int s = 0; s < 4; s++)
            k->steps[s] += k->t.step_us[s];
        k->gpuc += k->t.gpu_us;
        k->n++;
    }
    return rc;
}

static double measure_floor(mf_gpu *g, const bench_opts *o, bench_results *res,
                            mf_gpu_copy_kind kind, size_t bytes);

static int run_three(void *a, int i)
{
    (void)i;
    chain_case *k = a;
    static const mf_gpu_op ops[3] = {MF_GPU_OP_GATING, MF_GPU_OP_MOE_GATE_UP,
                                     MF_GPU_OP_MOE_DOWN};
    double g = 0;
    for (int j = 0; j < 3; j++) {
        mf_gpu_timing t;
        int rc = mf_gpu_bench_replay(k->c->gpu, ops[j], &t);
        if (rc)
            return rc;
        g += t.gpu_us;
    }
    k->gpu3 += g;
    k->n3++;
    return 0;
}

static int cmp_dbl(const void *a, const void *b);

/* The chain with cold caches: before each replay (untimed, its own submit)
 * a read of 256 MiB, more than any GPU's last-level cache, evicts the
 * weights, as in a model's decode, where each layer streams different
 * weights. The warm replays above may find some of a few-MB weight set
 * still cached from the replay before. Device step times and the host
 * round trip of the chain's own submit, medians. */
static void cold_chain(gcase *c, const bench_opts *o, bench_results *res,
                       const char *shape, double bytes_gu, double bytes_dn)
{
    enum { N = 51 };
    static double st[4][N], host[N], mv[N];
    int n = 0, runs = o->quick ? 11 : N;
    size_t scrub = (size_t)256 << 20;
    for (int i = 0; i < runs + 3; i++) {
        mf_gpu_timing tc;
        mf_gpu_chain_times t;
        mf_status rc;
        /* a shader binds the whole buffer: halve to the binding limit */
        while ((rc = mf_gpu_bench_copy(c->gpu, MF_GPU_COPY_READ, scrub, &tc)) ==
                   MF_ERR_UNSUPPORTED &&
               scrub > ((size_t)32 << 20))
            scrub /= 2;
        if (rc != MF_OK || mf_gpu_bench_chain(c->gpu, &t) != MF_OK)
            return;
        if (i < 3 || t.step_us[2] < 0)
            continue; /* warm-up, or no timestamps */
        for (int s = 0; s < 4; s++)
            st[s][n] = t.step_us[s];
        mv[n] = t.step_us[2] + t.step_us[3];
        host[n++] = t.host_us;
    }
    if (!n)
        return;
    for (int s = 0; s < 4; s++)
        qsort(st[s], (size_t)n, sizeof st[s][0], cmp_dbl);
    bench_stats hs, ms; /* the round trip; the matvecs' device time */
    bench_stats_of(host, n, &hs);
    bench_stats_of(mv, n, &ms);
    double gu = st[2][n / 2], dn = st[3][n / 2], both = ms.median_us;
    bench_results_add(res, "moe_chain_cold", shape, "gpu-chain", &hs, bytes_gu + bytes_dn);
    res->rec[res->n - 1].gpu_us = both;
    printf("           cold caches (%zu MiB read before each of %d replays), medians: "
           "round trip %.2f us; gating %.2f us, gate_up %.2f us (%.0f GB/s), "
           "down_combine %.2f us (%.0f GB/s)\n",
           scrub >> 20, n, hs.median_us, st[1][n / 2], gu, bytes_gu / (gu * 1e3), dn,
           bytes_dn / (dn * 1e3));
    printf("           cold matvecs together %.2f us, %.0f GB/s: %.0f%% of device copy\n",
           both, (bytes_gu + bytes_dn) / (both * 1e3),
           100 * (bytes_gu + bytes_dn) / (both * 1e3) / res->device_copy_gbps);
}

/* One side of a kernel-form A/B of the chain: the whole chain call (host
 * arrays in and out) with `form` forced to `val`, the other forms
 * automatic; its device step times collected for their medians. */
typedef struct form_side {
    chain_case *k;
    int form, val;
    int n;
    double gpu[256], step[4][256];
} form_side;

static int run_chain_form(void *a, int i)
{
    (void)i;
    form_side *f = a;
    gcase *c = f->k->c;
    c->ctx->forms_forced = 1;
    mf_gpu_forms_auto(&c->ctx->forms);
    c->ctx->forms.v[f->form] = (int8_t)f->val;
    mf_gpu_chain_desc cd = {.gating = &f->k->gd, .gate_up = &f->k->gu,
                            .down = &f->k->dd};
    mf_gpu_chain_times t;
    mf_ctx_gpu_forms_n(c->ctx, NULL, 0);
    int rc = mf_gpu_moe_chain(c->gpu, &cd, c->x, c->logits, c->T, NULL, c->y,
                              c->gidx, c->wout, &t);
    c->ctx->forms_forced = 0;
    if (!rc && t.gpu_us >= 0 && f->n < 256) {
        f->gpu[f->n] = t.gpu_us;
        for (int s = 0; s < 4; s++)
            f->step[s][f->n] = t.step_us[s];
        f->n++;
    }
    return rc;
}

static double median_d(double *v, int n)
{
    if (n <= 0)
        return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return v[n / 2];
}

/* --forms: the chain with each form of its ops (gpu.h) forced off and on,
 * interleaved in one run: host medians of the whole call, and device
 * medians of the chain and of the step the form belongs to. */
static void chain_forms(chain_case *k, const bench_opts *o, bench_results *res,
                        const char *shape)
{
    static const int forms[] = {MF_GPU_FORM_GATING_RANK, MF_GPU_FORM_GU_XSTAGE,
                                MF_GPU_FORM_GU_GROUP, MF_GPU_FORM_DN_SLOTS,
                                MF_GPU_FORM_DN_XSTAGE};
    static form_side s0, s1; /* 16 KiB each: not on the stack */
    printf("           kernel forms, whole chain call with the form 0 / 1 "
           "(interleaved; medians):\n");
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        const int f = forms[i];
        /* the step of the chain the form's op is: gating 1, gate_up 2,
         * down 3 */
        const int step = mf_gpu_form_op(f) == MF_ROUTE_GATING      ? 1
                         : mf_gpu_form_op(f) == MF_ROUTE_MOE_GATE_UP ? 2
                                                                      : 3;
        s0 = (form_side){.k = k, .form = f, .val = 0};
        s1 = (form_side){.k = k, .form = f, .val = 1};
        bench_stats h0, h1;
        int rc = bench_measure_pair(run_chain_form, &s0, run_chain_form, &s1, 3,
                                    o->quick ? 20 : 61, 200, o->budget_us, &h0,
                                    &h1);
        if (rc) {
            printf("             %-11s failed: %s\n", mf_gpu_form_name(f),
                   mf_status_str((mf_status)rc));
            continue;
        }
        double g0 = median_d(s0.gpu, s0.n), g1 = median_d(s1.gpu, s1.n);
        double t0 = median_d(s0.step[step], s0.n), t1 = median_d(s1.step[step], s1.n);
        printf("             %-11s call %.2f / %.2f us; device chain %.2f / %.2f us, "
               "its step %.2f / %.2f us (%.2fx)\n",
               mf_gpu_form_name(f), h0.median_us, h1.median_us, g0, g1, t0, t1,
               t0 > 0 ? t1 / t0 : -1);
        /* op "moe_chain:FORM", impl "form=0" / "form=1" */
        char op[32];
        snprintf(op, sizeof op, "moe_chain:%s", mf_gpu_form_name(f));
        for (int v = 0; v < 2; v++) {
            bench_results_add(res, op, shape, v ? "form=1" : "form=0",
                              v ? &h1 : &h0, 0);
            res->rec[res->n - 1].gpu_us = v ? g1 : g0;
        }
    }
}

static int bench_chain(gcase *c, const bench_opts *o, bench_results *res,
                       const char *shape, double bytes_gu, double bytes_dn)
{
    if (!c->gpu || (o->filter && !strstr("moe_chain", o->filter)))
        return 0; /* no GPU (the report's CPU-only run): no chain to time */
    const mf_moe_config *m = c->m;
    int sep = m->gate_up_layout == MF_GLU_SEPARATE;
    chain_case k = {.c = c};
    /* the experts the weights hold (--mem-gb may cap them) */
    int32_t E = (int32_t)c->w->gate.e, topk = m->top_k < E ? m->top_k : E;
    int32_t groups = m->n_group > 1 && E % m->n_group == 0 &&
                             E / m->n_group * m->topk_group >= topk
                         ? m->n_group
                         : 0;
    k.gd = (mf_gating_desc){.impl = MF_IMPL_GPU, .mode = m->router,
                            .n_experts = E, .k = topk,
                            .renormalize = m->renormalize, .n_group = groups,
                            .topk_group = groups ? m->topk_group : 0,
                            .scale = m->routed_scale};
    k.gu = (mf_moe_gate_up_desc){.impl = MF_IMPL_GPU, .prec = c->prec, .glu = m->glu,
                                 .layout = m->gate_up_layout, .w_gate = &c->w->gate,
                                 .w_up = sep ? &c->w->up : NULL,
                                 .b_gate = c->w->gate_bias, .b_up = c->w->up_bias};
    k.dd = (mf_moe_down_desc){.impl = MF_IMPL_GPU, .prec = c->prec, .w_down = &c->w->down,
                              .b_down = c->w->down_bias};
    printf("moe_chain  %s\n", shape);
    bench_stats call, st, st3;
    int rc = bench_measure(run_chain_call, &k, 3, 1, o->quick ? 5 : 21, 100000,
                           o->budget_us, &call);
    if (rc == MF_ERR_UNSUPPORTED) {
        printf("  gpu-chain  unsupported for this shape\n");
        return 0;
    }
    if (rc == MF_ERR_DEVICE_OOM) {
        printf("  gpu-chain  skipped: does not fit in device memory\n");
        return 0;
    }
    if (rc) {
        fprintf(stderr, "moefuse-bench: moe_chain: %s\n", mf_status_str((mf_status)rc));
        return 1;
    }
    /* the chain and the same three ops' own plans submitted one by one,
     * interleaved (their last calls ran in bench_op just before; when the
     * filter left them out, the chain alone) */
    int have3 = bench_measure_pair(run_chain_replay, &k, run_three, &k, 5,
                                   o->quick ? 20 : 101, 50000, o->budget_us, &st,
                                   &st3) == 0;
    if (!have3) {
        k.n = 0;
        k.gpuc = 0;
        memset(k.steps, 0, sizeof k.steps);
        rc = bench_measure(run_chain_replay, &k, 5, 1, o->quick ? 20 : 101, 100000,
                           o->budget_us, &st);
    }
    if (rc) {
        fprintf(stderr, "moefuse-bench: moe_chain replay: %s\n",
                mf_status_str((mf_status)rc));
        return 1;
    }
    double chain_gpu = k.n ? k.gpuc / k.n : -1;
    bench_results_add(res, "moe_chain", shape, "gpu-chain", &st, bytes_gu + bytes_dn);
    bench_record *r = &res->rec[res->n - 1];
    r->call_us = call.median_us;
    r->gpu_us = chain_gpu;
    bench_print_record(stdout, r, res->device_copy_gbps);
    if (k.n) {
        double gu = bytes_gu / (k.steps[2] / k.n * 1e3), dn = bytes_dn / (k.steps[3] / k.n * 1e3);
        printf("           device per step (means): router %.2f us, gating %.2f us, "
               "gate_up %.2f us (%.0f GB/s), down_combine %.2f us (%.0f GB/s)\n",
               k.steps[0] / k.n, k.steps[1] / k.n, k.steps[2] / k.n, gu,
               k.steps[3] / k.n, dn);
        printf("           weights vs floors: device copy %.0f GB/s (gate_up %.0f%%, "
               "down %.0f%%), device read %.0f GB/s (%.0f%%, %.0f%%)\n",
               res->device_copy_gbps, 100 * gu / res->device_copy_gbps,
               100 * dn / res->device_copy_gbps, res->device_read_gbps,
               100 * gu / res->device_read_gbps, 100 * dn / res->device_read_gbps);
        /* the same number of bytes read in one pass: the floor at this size
         * (a few MB do not fill the GPU's memory pipeline as 256 MiB do) */
        double same = measure_floor(c->gpu, o, res, MF_GPU_COPY_READ,
                                    ((size_t)bytes_gu + 15) & ~(size_t)15);
        if (same > 0)
            printf("           gate_up at %.0f%% of a read of its own size\n",
                   100 * gu / same);
        same = measure_floor(c->gpu, o, res, MF_GPU_COPY_READ,
                             ((size_t)bytes_dn + 15) & ~(size_t)15);
        if (same > 0)
            printf("           down_combine at %.0f%% of a read of its own size\n",
                   100 * dn / same);
        /* both matvecs against the copy floor, and what one pass over both
         * weight sets costs the device (the floor of two passes fused) */
        double both = (bytes_gu + bytes_dn) / ((k.steps[2] + k.steps[3]) / k.n * 1e3);
        printf("           matvecs together %.0f GB/s: %.0f%% of device copy\n",
               both, 100 * both / res->device_copy_gbps);
        same = measure_floor(c->gpu, o, res, MF_GPU_COPY_READ,
                             ((size_t)(bytes_gu + bytes_dn) + 15) & ~(size_t)15);
        if (same > 0)
            printf("           one read of both sizes %.0f GB/s: %.0f%% of device copy\n",
                   same, 100 * same / res->device_copy_gbps);
    }
    cold_chain(c, o, res, shape, bytes_gu, bytes_dn);
    if (o->forms)
        chain_forms(&k, o, res, shape);
    if (!have3)
        return 0;
    bench_results_add(res, "moe_chain", shape, "gpu-3ops", &st3, bytes_gu + bytes_dn);
    r = &res->rec[res->n - 1];
    r->gpu_us = k.n3 ? k.gpu3 / k.n3 : -1;
    bench_print_record(stdout, r, res->device_copy_gbps);
    printf("           one submit %.2f us vs three submits %.2f us (%.2fx, interleaved)\n",
           st.median_us, st3.median_us, st3.median_us / st.median_us);
    return 0;
}

static int run_empty(void *a, int i)
{
    (void)i;
    mf_gpu_timing t;
    return mf_gpu_bench_empty(a, &t);
}

typedef struct steps_arg {
    mf_gpu *g;
    double gpu[1024]; /* device time per step of every run */
    int gpu_n;
} steps_arg;

static int run_steps(void *a, int i)
{
    (void)i;
    steps_arg *c = a;
    mf_gpu_timing t;
    mf_status st = mf_gpu_bench_steps(c->g, &t);
    if (st == MF_OK && t.gpu_us > 0 && c->gpu_n < 1024)
        c->gpu[c->gpu_n++] = t.gpu_us / MF_GPU_BENCH_STEPS;
    return st;
}

typedef struct copy_arg {
    mf_gpu *g;
    mf_gpu_copy_kind kind;
    size_t bytes;
    double gpu[1024]; /* device times of every run, warm-up included */
    int gpu_n;
} copy_arg;

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_copy(void *a, int i)
{
    (void)i;
    copy_arg *c = a;
    mf_gpu_timing t;
    mf_status st = mf_gpu_bench_copy(c->g, c->kind, c->bytes, &t);
    if (st == MF_OK && t.gpu_us > 0 && c->gpu_n < 1024)
        c->gpu[c->gpu_n++] = t.gpu_us;
    return st;
}

/* One bandwidth floor: GB/s from the device time between the timestamps
 * (the host round trip when the queue has no timestamps), recorded with the
 * round trip as the median. Returns GB/s, or -1 when it cannot run. */
static double measure_floor(mf_gpu *g, const bench_opts *o, bench_results *res,
                            mf_gpu_copy_kind kind, size_t bytes)
{
    static const char *const names[] = {"device_copy_engine", "device_copy",
                                        "device_read"};
    static copy_arg ca; /* 8 KiB: not on the stack */
    ca = (copy_arg){.g = g, .kind = kind, .bytes = bytes};
    bench_stats st;
    int rc;
    /* a shader binds the whole buffer: halve until the device's binding
     * limit (maxStorageBufferRange) takes it */
    while ((rc = bench_measure(run_copy, &ca, 2, 1, o->quick ? 5 : 21, 1000,
                               o->budget_us, &st)) == MF_ERR_UNSUPPORTED &&
           ca.bytes > ((size_t)1 << 20)) {
        ca.bytes /= 2;
        ca.gpu_n = 0;
    }
    bytes = ca.bytes;
    if (rc) {
        printf("  %-18s %s\n", names[kind], mf_status_str((mf_status)rc));
        return -1;
    }
    /* a copy reads and writes every byte */
    double moved = (kind == MF_GPU_COPY_READ ? 1.0 : 2.0) * (double)bytes;
    /* median device time (the two warm-up runs are among them) */
    qsort(ca.gpu, (size_t)ca.gpu_n, sizeof ca.gpu[0], cmp_dbl);
    double us = ca.gpu_n ? ca.gpu[ca.gpu_n / 2] : st.median_us;
    char shape[64];
    snprintf(shape, sizeof shape, "bytes=%zu", bytes);
    bench_results_add(res, names[kind], shape, "gpu", &st, moved);
    bench_record *r = &res->rec[res->n - 1];
    r->gpu_us = ca.gpu_n ? us : -1;
    r->gbps = moved / (us * 1e3);
    printf("  %-18s %-16s %9.2f us device, %8.2f us round trip  %7.0f GB/s\n",
           names[kind], shape, us, st.median_us, r->gbps);
    return r->gbps;
}

static void print_pipe(void *user, const mf_gpu_pipe_info *p)
{
    (void)user;
    printf("  %-20s spec", p->shader);
    for (uint32_t i = 0; i < p->n_spec; i++)
        printf("%c%u", i ? ',' : ' ', p->spec[i]);
    printf("\n     ");
    for (uint32_t i = 0; i < p->n_stats; i++)
        printf(" %s %.0f%s", p->stats[i].name, p->stats[i].value,
               i + 1 < p->n_stats ? "," : "");
    printf("%s\n", p->n_stats ? "" : " (no statistics)");
}

/* With MOEFUSE_GPU_PIPELINE_STATS=1: what the driver's compiler made of
 * every pipeline the run built (registers, spills, ...). */
static void print_pipeline_stats(const mf_gpu *g)
{
    const char *e = getenv("MOEFUSE_GPU_PIPELINE_STATS");
    if (!g || !e || strcmp(e, "1") != 0)
        return;
    printf("\npipeline statistics (the driver's, newest first):\n");
    if (mf_gpu_pipeline_stats(g, print_pipe, NULL) < 0)
        printf("  not offered by this driver "
               "(VK_KHR_pipeline_executable_properties)\n");
}

int bench_suite_gpu(mf_ctx *ctx, const bench_opts *o, bench_results *res)
{
    mf_gpu *g = ctx->gpu;
    if (!g && !o->report) {
        fprintf(stderr, "moefuse-bench gpu: no GPU: %s\n",
                mf_status_str(mf_ctx_gpu_status(ctx)));
        return 1;
    }
    if (!g)
        printf("no GPU (%s): CPU times only\n\n", mf_status_str(mf_ctx_gpu_status(ctx)));
    bench_stats st;
    if (g) {
    /* GPU calls take the kernel forms the placement cache measured */
    const size_t nf = ctx->placement ? ctx->placement->n_forms : 0;
    printf("kernel forms: %s\n",
           nf ? "those the placement cache measured (moefuse-profile), "
                "else built-in"
              : "built-in (no placement cache with measured forms)");
    if (bench_measure(run_empty, g, 20, 1, o->quick ? 50 : 301, 100000, o->budget_us, &st))
        return 1;
    res->empty_dispatch_us = st.median_us;
    printf("empty_dispatch  workgroups=1\n");
    bench_results_add(res, "empty_dispatch", "workgroups=1", "gpu", &st, 0);
    bench_print_record(stdout, &res->rec[res->n - 1], 0);
    /* what one step of a chain costs the device with no work in it */
    static steps_arg sa; /* 8 KiB: not on the stack */
    sa = (steps_arg){.g = g};
    if (bench_measure(run_steps, &sa, 5, 1, o->quick ? 20 : 101, 1000, o->budget_us, &st))
        return 1;
    if (sa.gpu_n) {
        qsort(sa.gpu, (size_t)sa.gpu_n, sizeof sa.gpu[0], cmp_dbl);
        res->chain_step_us = sa.gpu[sa.gpu_n / 2];
        printf("chain_step  empty dispatches after a barrier, %d in one submit: "
               "%.2f us device each (median)\n",
               MF_GPU_BENCH_STEPS, res->chain_step_us);
    }
    /* Floors over 256 MiB: the copy engine, a shader copy and a read-only
     * shader pass; device_copy_gbps is the faster copy. The read pass is
     * what the matvecs' weight streams are set against. */
    printf("device bandwidth floors (GB/s from device time):\n");
    size_t big = (size_t)256 << 20;
    double ce = measure_floor(g, o, res, MF_GPU_COPY_ENGINE, big);
    double cs = measure_floor(g, o, res, MF_GPU_COPY_SHADER, big);
    res->device_read_gbps = measure_floor(g, o, res, MF_GPU_COPY_READ, big);
    res->device_copy_gbps = ce > cs ? ce : cs;
    printf("floor: empty dispatch %.2f us, device copy %.0f GB/s, device read %.0f GB/s\n\n",
           res->empty_dispatch_us, res->device_copy_gbps, res->device_read_gbps);
    }

    static const char *const models[] = {"qwen3-30b-a3b", "mixtral-8x7b",
                                          "deepseek-v3", "gpt-oss-20b"};
    static const int64_t Ts[] = {1, 32};
    int nm = o->model || o->report ? 1 : 4;
    for (int mi = 0; mi < nm; mi++) {
        const char *name = o->model ? o->model : models[mi];
        mf_moe_config m;
        if (mf_moe_preset(name, &m) != MF_OK) {
            fprintf(stderr, "moefuse-bench: unknown model '%s'\n", name);
            return 1;
        }
        mf_moe_config lc = m;
        lc.n_shared = 0;
        double per_expert = synth_row_bytes(MF_TYPE_Q4_0, m.hidden) * (double)(2 * m.expert_ffn) +
                            synth_row_bytes(MF_TYPE_Q4_0, m.expert_ffn) * (double)m.hidden;
        /* the experts --mem-gb allows (the chain's gating runs over them) */
        bench_cap_experts(&lc, per_expert, o->mem_gb);
        synth_layer L;
        if (synth_layer_make(&L, &lc, MF_TYPE_Q4_0, 77))
            return 1;
        for (int ti = 0; ti < 2; ti++) {
            int64_t T = Ts[ti];
            size_t tk = (size_t)(T * m.top_k), TH = (size_t)(T * m.hidden);
            gcase c = {.ctx = ctx, .gpu = g, .m = &m, .T = T, .w = &L.w};
            c.logits = malloc((size_t)(T * m.n_experts) * 4);
            c.x = malloc(TH * 4);
            c.gu = malloc(tk * (size_t)(2 * m.expert_ffn) * 4);
            c.h = malloc(tk * (size_t)m.expert_ffn * 4);
            c.eo = malloc(tk * (size_t)m.hidden * 4);
            c.rw = malloc(tk * 4);
            c.wout = malloc(tk * 4);
            c.y = malloc(TH * 4);
            c.idx = malloc(tk * 4);
            c.gidx = malloc(tk * 4);
            int rc = !c.logits || !c.x || !c.gu || !c.h || !c.eo || !c.rw || !c.wout ||
                     !c.y || !c.idx || !c.gidx;
            uint64_t s = 99 + (uint64_t)T;
            if (!rc) {
                synth_fill(c.logits, (size_t)(T * m.n_experts), &s, 8.0f);
                synth_fill(c.x, TH, &s, 2.0f);
                synth_fill(c.gu, tk * (size_t)(2 * m.expert_ffn), &s, 8.0f);
                synth_fill(c.h, tk * (size_t)m.expert_ffn, &s, 1.0f);
                synth_fill(c.eo, tk * (size_t)m.hidden, &s, 1.0f);
                for (size_t j = 0; j < tk; j++) {
                    c.rw[j] = 1.0f / (float)m.top_k;
                    c.idx[j] = (int32_t)((j * 7 + j / (size_t)m.top_k) % (size_t)lc.n_experts);
                }
                /* distinct experts within each token */
                for (size_t t = 0; t < (size_t)T; t++)
                    for (int32_t j = 0; j < m.top_k; j++)
                        c.idx[t * (size_t)m.top_k + (size_t)j] =
                            (int32_t)((t * 3 + (size_t)j) % (size_t)lc.n_experts);
            }
            char shape[160];
            snprintf(shape, sizeof shape, "model=%s,E=%d,k=%d,T=%lld", name,
                     m.n_experts, m.top_k, (long long)T);
            c.op = MF_GPU_OP_GATING;
            rc = rc || bench_op(&c, o, res, shape, 0);
            c.op = MF_GPU_OP_GLU;
            snprintf(shape, sizeof shape, "model=%s,F=%lld,rows=%lld", name,
                     (long long)m.expert_ffn, (long long)tk);
            rc = rc || bench_op(&c, o, res, shape, (double)tk * (double)m.expert_ffn * 12.0);
            c.op = MF_GPU_OP_COMBINE;
            snprintf(shape, sizeof shape, "model=%s,k=%d,D=%lld,T=%lld", name,
                     m.top_k, (long long)m.hidden, (long long)T);
            rc = rc || bench_op(&c, o, res, shape, (double)tk * (double)m.hidden * 4.0 + (double)TH * 8.0);
            double uniq = 0;
            {
                unsigned char *seen = calloc((size_t)lc.n_experts, 1);
                for (size_t j = 0; seen && j < tk; j++) {
                    uniq += !seen[c.idx[j]];
                    seen[c.idx[j]] = 1;
                }
                free(seen);
            }
            int sl = snprintf(shape, sizeof shape, "H=%lld,F=%lld,E=%d,k=%d,T=%lld,fmt=q4_0",
                              (long long)m.hidden, (long long)m.expert_ffn, m.n_experts,
                              m.top_k, (long long)T);
            if (lc.n_experts < m.n_experts && sl > 0 && (size_t)sl < sizeof shape)
                snprintf(shape + sl, sizeof shape - (size_t)sl, ",E_alloc=%d",
                         lc.n_experts);
            /* the expert ops and the chain in both precisions: INT8 (shape
             * ",prec=int8") where the device runs it (else it would time
             * the EXACT shaders again) */
            mf_gpu_info gi;
            int int8_dev = mf_ctx_gpu_info(ctx, &gi) == MF_OK && gi.int8_dot;
            for (int pi = 0; pi < 2 && !rc; pi++) {
                if (pi && !int8_dev)
                    break;
                c.prec = pi ? MF_PREC_INT8 : MF_PREC_EXACT;
                char pshape[192];
                snprintf(pshape, sizeof pshape, "%s%s", shape, pi ? ",prec=int8" : "");
                c.op = MF_GPU_OP_MOE_GATE_UP;
                rc = rc || bench_op(&c, o, res, pshape,
                                    uniq * synth_row_bytes(MF_TYPE_Q4_0, m.hidden) *
                                        (double)(2 * m.expert_ffn));
                c.op = MF_GPU_OP_MOE_DOWN;
                rc = rc || bench_op(&c, o, res, pshape,
                                    uniq * synth_row_bytes(MF_TYPE_Q4_0, m.expert_ffn) *
                                        (double)m.hidden);
                rc = rc || bench_chain(&c, o, res, pshape,
                                       uniq * synth_row_bytes(MF_TYPE_Q4_0, m.hidden) *
                                           (double)(2 * m.expert_ffn),
                                       uniq * synth_row_bytes(MF_TYPE_Q4_0, m.expert_ffn) *
                                           (double)m.hidden);
            }
            c.prec = MF_PREC_EXACT;
            free(c.logits), free(c.x), free(c.gu), free(c.h), free(c.eo);
            free(c.rw), free(c.wout), free(c.y), free(c.idx), free(c.gidx);
            if (rc) {
                synth_layer_free(&L);
                return 1;
            }
        }
        synth_layer_free(&L);
    }
    print_pipeline_stats(g);
    return 0;
}
