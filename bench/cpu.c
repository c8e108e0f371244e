/* moefuse-bench cpu: every op at the model shapes of FACTS.md, for the
 * scalar reference, the unfused baseline and each kernel set this CPU has.
 * Weights come from DRAM: whole expert stacks are allocated (up to the
 * memory cap) and each iteration draws another routing. */
#include <stdlib.h>
#include <string.h>

#include "suite.h"

#define N_ROUTES 64

typedef struct op_case {
    mf_ctx *ctx;
    mf_impl impl;
    mf_precision prec; /* moe ops */
    int64_t glu_rows;  /* rows of one glu call */
    const mf_moe_config *m;
    int64_t T;
    int32_t E_alloc;   /* experts allocated; routing draws among them */
    float *logits;     /* [N_ROUTES][T][E] */
    float *bias;       /* [E] or NULL */
    int32_t *routes;   /* [N_ROUTES][T][k] */
    float *rw;         /* [N_ROUTES][T][k] */
    int32_t *idx_out;  /* [T][k] */
    float *w_out;      /* [T][k] */
    float *x;          /* [T][H] */
    float *gu;         /* [T][k][2F] glu input */
    float *h;          /* [T][k][F] */
    float *eo;         /* [T][k][H] expert outputs */
    float *y;          /* [T][H] */
    const mf_moe_weights *w; /* expert stacks and biases */
} op_case;

static int run_gating(void *a, int i)
{
    op_case *c = a;
    const mf_moe_config *m = c->m;
    mf_gating_desc d = {.impl = c->impl, .mode = m->router,
                        .n_experts = m->n_experts, .k = m->top_k,
                        .renormalize = m->renormalize, .bias = c->bias,
                        .n_group = m->n_group, .topk_group = m->topk_group,
                        .scale = m->routed_scale};
    size_t r = (size_t)(i % N_ROUTES);
    return mf_gating(c->ctx, &d, c->logits + r * (size_t)(c->T * m->n_experts), c->T,
                     c->idx_out, c->w_out);
}

static int run_glu(void *a, int i)
{
    op_case *c = a;
    (void)i;
    mf_glu_desc d = {.impl = c->impl, .kind = c->m->glu,
                     .layout = c->m->gate_up_layout == MF_GLU_INTERLEAVED
                                   ? MF_GLU_INTERLEAVED : MF_GLU_CONCAT,
                     .in_type = MF_TYPE_F32, .out_type = MF_TYPE_F32};
    return mf_glu(c->ctx, &d, c->glu_rows, c->m->expert_ffn, c->gu, NULL, c->h);
}

static int run_combine(void *a, int i)
{
    op_case *c = a;
    size_t r = (size_t)(i % N_ROUTES);
    mf_combine_desc d = {.impl = c->impl};
    return mf_combine(c->ctx, &d, c->T, c->m->top_k, c->m->hidden, c->eo,
                      c->rw + r * (size_t)(c->T * c->m->top_k), c->x, c->y);
}

static int run_gate_up(void *a, int i)
{
    op_case *c = a;
    size_t r = (size_t)(i % N_ROUTES);
    int sep = c->m->gate_up_layout == MF_GLU_SEPARATE;
    mf_moe_gate_up_desc d = {.impl = c->impl, .prec = c->prec, .glu = c->m->glu,
                             .layout = c->m->gate_up_layout,
                             .w_gate = &c->w->gate,
                             .w_up = sep ? &c->w->up : NULL,
                             .b_gate = c->w->gate_bias, .b_up = c->w->up_bias};
    return mf_moe_gate_up(c->ctx, &d, c->T, c->m->top_k, c->x,
                           c->routes + r * (size_t)(c->T * c->m->top_k), c->h);
}

static int run_down(void *a, int i)
{
    op_case *c = a;
    size_t r = (size_t)(i % N_ROUTES);
    mf_moe_down_desc d = {.impl = c->impl, .prec = c->prec, .w_down = &c->w->down,
                          .b_down = c->w->down_bias};
    size_t o = r * (size_t)(c->T * c->m->top_k);
    return mf_moe_down_combine(c->ctx, &d, c->T, c->m->top_k, c->h, c->routes + o,
                               c->rw + o, NULL, c->y);
}

/* Distinct experts per token, drawn among E_alloc. */
static void make_routes(op_case *c, uint64_t *s)
{
    int32_t k = c->m->top_k, E = c->E_alloc;
    for (size_t r = 0; r < (size_t)N_ROUTES * (size_t)c->T; r++) {
        int32_t *row = c->routes + r * (size_t)k;
        float sum = 0;
        for (int32_t j = 0; j < k; j++) {
            int32_t e;
            int dup;
            do {
                e = (int32_t)(synth_rand(s) % (uint64_t)E);
                dup = 0;
                for (int32_t q = 0; q < j; q++)
                    dup |= row[q] == e;
            } while (dup);
            row[j] = e;
            c->rw[r * (size_t)k + (size_t)j] = (float)(1 + synth_rand(s) % 100);
            sum += c->rw[r * (size_t)k + (size_t)j];
        }
        for (int32_t j = 0; j < k; j++)
            c->rw[r * (size_t)k + (size_t)j] /= sum;
    }
}

/* Mean number of distinct experts per routing (weight bytes read). */
static double mean_unique_experts(const op_case *c)
{
    size_t per = (size_t)(c->T * c->m->top_k);
    double total = 0;
    unsigned char *seen = calloc((size_t)c->E_alloc, 1);
    if (!seen)
        return (double)per;
    for (size_t r = 0; r < N_ROUTES; r++) {
        memset(seen, 0, (size_t)c->E_alloc);
        for (size_t j = 0; j < per; j++) {
            int32_t e = c->routes[r * per + j];
            total += !seen[e];
            seen[e] = 1;
        }
    }
    free(seen);
    return total / N_ROUTES;
}

typedef struct impl_entry {
    mf_impl impl;
    const char *name;
} impl_entry;

static int list_impls(impl_entry *out)
{
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    int n = 0;
    out[n++] = (impl_entry){MF_IMPL_REF, "ref"};
    out[n++] = (impl_entry){MF_IMPL_UNFUSED, "unfused"};
    if (ci.isa_available[MF_ISA_AVX2])
        out[n++] = (impl_entry){MF_IMPL_AVX2, "avx2"};
    if (ci.isa_available[MF_ISA_AVX512])
        out[n++] = (impl_entry){MF_IMPL_AVX512, "avx512"};
    if (ci.isa_available[MF_ISA_NEON])
        out[n++] = (impl_entry){MF_IMPL_NEON, "neon"};
    return n;
}

static int wanted(const bench_opts *o, const char *op)
{
    return !o->filter || strstr(op, o->filter);
}

/* Measures one op for every impl (only the kernel sets when fast_only);
 * prints and records. */
static int measure_impls(op_case *c, const bench_opts *o, bench_results *res,
                         const char *op, const char *shape, bench_fn fn,
                         int batch, double bytes, int fast_only)
{
    if (!wanted(o, op))
        return 0;
    impl_entry impls[8];
    int n = list_impls(impls);
    printf("%s  %s\n", op, shape);
    for (int i = 0; i < n; i++) {
        c->impl = impls[i].impl;
        int slow = impls[i].impl == MF_IMPL_REF || impls[i].impl == MF_IMPL_UNFUSED;
        if (slow && fast_only)
            continue;
        bench_stats st;
        int min_runs = o->quick ? 5 : 11;
        int rc = bench_measure(fn, c, slow ? 1 : 3, batch, min_runs, 100000,
                               o->budget_us, &st);
        if (rc == MF_ERR_UNSUPPORTED) {
            printf("  %-8s unsupported\n", impls[i].name);
            continue;
        }
        if (rc != 0) {
            fprintf(stderr, "moefuse-bench: %s %s %s failed: %s\n", op, shape,
                    impls[i].name, mf_status_str((mf_status)rc));
            return 1;
        }
        bench_results_add(res, op, shape, impls[i].name, &st, bytes);
        bench_print_record(stdout, &res->rec[res->n - 1],
                           impls[i].impl == MF_IMPL_REF ? res->triad1_gbps
                                                        : bench_floor_now(res));
        fflush(stdout);
    }
    return 0;
}

static int measure_op(op_case *c, const bench_opts *o, bench_results *res,
                      const char *op, const char *shape, bench_fn fn,
                      int batch, double bytes)
{
    return measure_impls(c, o, res, op, shape, fn, batch, bytes, 0);
}

/* A moe op at both precisions: EXACT for every impl (the reference and the
 * unfused baseline give EXACT results only), INT8 for the kernel sets, recorded
 * with ",prec=int8" appended to the shape. */
static int measure_moe(op_case *c, const bench_opts *o, bench_results *res,
                       const char *op, const char *shape, bench_fn fn, double bytes)
{
    char s8[200];
    snprintf(s8, sizeof s8, "%s,prec=int8", shape);
    c->prec = MF_PREC_EXACT;
    int rc = measure_impls(c, o, res, op, shape, fn, 1, bytes, 0);
    if (rc == 0) {
        c->prec = MF_PREC_INT8;
        rc = measure_impls(c, o, res, op, s8, fn, 1, bytes, 1);
    }
    c->prec = MF_PREC_EXACT;
    return rc;
}

static int bench_model_T(mf_ctx *ctx, const bench_opts *o, bench_results *res,
                         const char *name, const mf_moe_config *m, int64_t T)
{
    op_case c = {.ctx = ctx, .m = m, .T = T};
    uint64_t s = 0x5eed0000u + (uint64_t)T * 131u + (uint64_t)m->n_experts;
    size_t tk = (size_t)(T * m->top_k);
    size_t TE = (size_t)T * (size_t)m->n_experts, TH = (size_t)T * (size_t)m->hidden;
    int rc = 1;
    int want_bias = m->router != MF_GATING_SOFTMAX_TOPK || m->router_bias;
    c.logits = malloc((size_t)N_ROUTES * TE * sizeof(float));
    c.bias = want_bias ? malloc((size_t)m->n_experts * sizeof(float)) : NULL;
    c.routes = malloc((size_t)N_ROUTES * tk * sizeof(int32_t));
    c.rw = malloc((size_t)N_ROUTES * tk * sizeof(float));
    c.idx_out = malloc(tk * sizeof(int32_t));
    c.w_out = malloc(tk * sizeof(float));
    c.x = malloc(TH * sizeof(float));
    c.gu = malloc(tk * (size_t)(2 * m->expert_ffn) * sizeof(float));
    c.h = malloc(tk * (size_t)m->expert_ffn * sizeof(float));
    c.eo = malloc(tk * (size_t)m->hidden * sizeof(float));
    c.y = malloc(TH * sizeof(float));
    if (!c.logits || (want_bias && !c.bias) || !c.routes || !c.rw ||
        !c.idx_out || !c.w_out || !c.x || !c.gu || !c.h || !c.eo || !c.y)
        goto out;
    synth_fill(c.logits, (size_t)N_ROUTES * TE, &s, 8.0f);
    if (c.bias)
        synth_fill(c.bias, (size_t)m->n_experts, &s, 0.2f);
    synth_fill(c.x, TH, &s, 2.0f);
    synth_fill(c.gu, tk * (size_t)(2 * m->expert_ffn), &s, 8.0f);
    synth_fill(c.h, tk * (size_t)m->expert_ffn, &s, 1.0f);
    synth_fill(c.eo, tk * (size_t)m->hidden, &s, 1.0f);
    c.E_alloc = m->n_experts;
    make_routes(&c, &s);

    char shape[160];
    snprintf(shape, sizeof shape, "model=%s,E=%d,k=%d,T=%lld", name,
             m->n_experts, m->top_k, (long long)T);
    if (measure_op(&c, o, res, "gating", shape, run_gating, T == 1 ? 256 : 16, 0))
        goto out;
    /* one row (the single-row latency) at T = 1, then every row of the step */
    const int64_t glu_rows[2] = {1, (int64_t)tk};
    for (int gi = T == 1 ? 0 : 1; gi < 2; gi++) {
        c.glu_rows = glu_rows[gi];
        snprintf(shape, sizeof shape, "model=%s,F=%lld,rows=%lld", name,
                 (long long)m->expert_ffn, (long long)c.glu_rows);
        if (measure_op(&c, o, res, "glu", shape, run_glu, T == 1 ? 64 : 4,
                       (double)c.glu_rows * (double)m->expert_ffn * 12.0))
            goto out;
    }
    snprintf(shape, sizeof shape, "model=%s,k=%d,D=%lld,T=%lld", name,
             m->top_k, (long long)m->hidden, (long long)T);
    if (measure_op(&c, o, res, "combine", shape, run_combine, T == 1 ? 64 : 4,
                   (double)tk * (double)m->hidden * 4.0 + (double)TH * 8.0))
        goto out;

    static const mf_type fmts[] = {MF_TYPE_Q4_0, MF_TYPE_Q8_0, MF_TYPE_MLX_Q4};
    int want_moe = wanted(o, "moe_gate_up") || wanted(o, "moe_down_combine");
    for (int f = 0; f < 3 && want_moe; f++) {
        mf_type fmt = fmts[f];
        double per_expert = synth_row_bytes(fmt, m->hidden) * (double)(2 * m->expert_ffn) +
                            synth_row_bytes(fmt, m->expert_ffn) * (double)m->hidden;
        int32_t E_alloc = m->n_experts;
        if (per_expert * E_alloc > o->mem_gb * 1e9) {
            E_alloc = (int32_t)(o->mem_gb * 1e9 / per_expert);
            if (E_alloc < m->top_k)
                E_alloc = m->top_k;
        }
        c.E_alloc = E_alloc;
        make_routes(&c, &s);
        mf_moe_config lc = *m;
        lc.n_experts = E_alloc;
        lc.n_shared = 0;
        synth_layer L;
        if (synth_layer_make(&L, &lc, fmt, s)) {
            fprintf(stderr, "moefuse-bench: out of memory for %s weights\n", name);
            goto out;
        }
        c.w = &L.w;
        printf("triad now %.1f GB/s\n", bench_floor_refresh(res));
        double uniq = mean_unique_experts(&c);
        snprintf(shape, sizeof shape, "H=%lld,F=%lld,E=%d,k=%d,T=%lld,fmt=%s%s",
                 (long long)m->hidden, (long long)m->expert_ffn, m->n_experts,
                 m->top_k, (long long)T, mf_type_name(fmt),
                 fmt == MF_TYPE_MLX_Q4 ? "_g64" : "");
        if (E_alloc < m->n_experts) {
            size_t l = strlen(shape);
            snprintf(shape + l, sizeof shape - l, ",E_alloc=%d", E_alloc);
        }
        int bad = measure_moe(&c, o, res, "moe_gate_up", shape, run_gate_up,
                              uniq * synth_row_bytes(fmt, m->hidden) * (double)(2 * m->expert_ffn)) ||
                  measure_moe(&c, o, res, "moe_down_combine", shape, run_down,
                              uniq * synth_row_bytes(fmt, m->expert_ffn) * (double)m->hidden);
        synth_layer_free(&L);
        if (bad)
            goto out;
    }
    rc = 0;
out:
    free(c.logits);
    free(c.bias);
    free(c.routes);
    free(c.rw);
    free(c.idx_out);
    free(c.w_out);
    free(c.x);
    free(c.gu);
    free(c.h);
    free(c.eo);
    free(c.y);
    return rc;
}

/* The model shapes; any other preset with --model. */
static const char *const default_models[] = {"qwen3-30b-a3b", "mixtral-8x7b",
                                             "deepseek-v3", "gpt-oss-20b"};

int bench_suite_cpu(mf_ctx *ctx, const bench_opts *o, bench_results *res)
{
    static const int64_t Ts[] = {1, 32};
    int n = o->model ? 1 : 4;
    for (int mi = 0; mi < n; mi++) {
        const char *name = o->model ? o->model : default_models[mi];
        mf_moe_config m;
        if (mf_moe_preset(name, &m) != MF_OK) {
            fprintf(stderr, "moefuse-bench: unknown model '%s'\n", name);
            return 1;
        }
        for (int ti = 0; ti < 2; ti++) {
            if (o->progress)
                fprintf(stderr, "moefuse-bench: %s T=%lld\n", name,
                        (long long)Ts[ti]);
            if (bench_model_T(ctx, o, res, name, &m, Ts[ti]))
                return 1;
        }
    }
    return 0;
}
