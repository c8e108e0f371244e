/* moefuse-bench cpu: every op at the model shapes of FACTS.md, for the
 * scalar reference, the unfused baseline and each kernel set this CPU has.
 * Weights come from DRAM: whole expert stacks are allocated (up to the
 * memory cap) and each iteration draws another routing. */
#include <stdlib.h>
#include <string.h>

#include "models.h"
#include "suite.h"

#define N_ROUTES 64

typedef struct op_case {
    mf_ctx *ctx;
    mf_impl impl;
    const bench_model *m;
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
    const mf_tensor *wgu, *wd;
    float *bgu, *bd;   /* expert biases or NULL */
} op_case;

static int run_gating(void *a, int i)
{
    op_case *c = a;
    const bench_model *m = c->m;
    mf_gating_desc d = {.impl = c->impl, .mode = m->mode, .n_experts = m->E,
                        .k = m->k, .renormalize = m->renorm, .bias = c->bias,
                        .n_group = m->n_group, .topk_group = m->topk_group,
                        .scale = m->scale};
    size_t r = (size_t)(i % N_ROUTES);
    return mf_gating(c->ctx, &d, c->logits + r * (size_t)(c->T * m->E), c->T,
                     c->idx_out, c->w_out);
}

static int run_glu(void *a, int i)
{
    op_case *c = a;
    (void)i;
    mf_glu_desc d = {.impl = c->impl, .kind = c->m->glu,
                     .layout = c->m->layout == MF_GLU_INTERLEAVED
                                   ? MF_GLU_INTERLEAVED : MF_GLU_CONCAT,
                     .in_type = MF_TYPE_F32, .out_type = MF_TYPE_F32};
    return mf_glu(c->ctx, &d, c->T * c->m->k, c->m->F, c->gu, NULL, c->h);
}

static int run_combine(void *a, int i)
{
    op_case *c = a;
    size_t r = (size_t)(i % N_ROUTES);
    mf_combine_desc d = {.impl = c->impl};
    return mf_combine(c->ctx, &d, c->T, c->m->k, c->m->H, c->eo,
                      c->rw + r * (size_t)(c->T * c->m->k), c->x, c->y);
}

static int run_gate_up(void *a, int i)
{
    op_case *c = a;
    size_t r = (size_t)(i % N_ROUTES);
    mf_moe_gate_up_desc d = {.impl = c->impl, .glu = c->m->glu,
                             .layout = c->m->layout == MF_GLU_INTERLEAVED
                                           ? MF_GLU_INTERLEAVED : MF_GLU_CONCAT,
                             .w_gate = c->wgu, .b_gate = c->bgu};
    return mf_moe_gate_up(c->ctx, &d, c->T, c->m->k, c->x,
                           c->routes + r * (size_t)(c->T * c->m->k), c->h);
}

static int run_down(void *a, int i)
{
    op_case *c = a;
    size_t r = (size_t)(i % N_ROUTES);
    mf_moe_down_desc d = {.impl = c->impl, .w_down = c->wd, .b_down = c->bd};
    size_t o = r * (size_t)(c->T * c->m->k);
    return mf_moe_down_combine(c->ctx, &d, c->T, c->m->k, c->h, c->routes + o,
                               c->rw + o, NULL, c->y);
}

/* Distinct experts per token, drawn among E_alloc. */
static void make_routes(op_case *c, uint64_t *s)
{
    int32_t k = c->m->k, E = c->E_alloc;
    for (size_t r = 0; r < (size_t)N_ROUTES * (size_t)c->T; r++) {
        int32_t *row = c->routes + r * (size_t)k;
        float sum = 0;
        for (int32_t j = 0; j < k; j++) {
            int32_t e;
            int dup;
            do {
                e = (int32_t)(bench_rand(s) % (uint64_t)E);
                dup = 0;
                for (int32_t q = 0; q < j; q++)
                    dup |= row[q] == e;
            } while (dup);
            row[j] = e;
            c->rw[r * (size_t)k + (size_t)j] = (float)(1 + bench_rand(s) % 100);
            sum += c->rw[r * (size_t)k + (size_t)j];
        }
        for (int32_t j = 0; j < k; j++)
            c->rw[r * (size_t)k + (size_t)j] /= sum;
    }
}

/* Mean number of distinct experts per routing (weight bytes read). */
static double mean_unique_experts(const op_case *c)
{
    size_t per = (size_t)(c->T * c->m->k);
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

/* Measures one op for every impl; prints and records. */
static int measure_op(op_case *c, const bench_opts *o, bench_results *res,
                      const char *op, const char *shape, bench_fn fn,
                      int batch, double bytes)
{
    if (!wanted(o, op))
        return 0;
    impl_entry impls[8];
    int n = list_impls(impls);
    printf("%s  %s\n", op, shape);
    for (int i = 0; i < n; i++) {
        c->impl = impls[i].impl;
        int slow = impls[i].impl == MF_IMPL_REF || impls[i].impl == MF_IMPL_UNFUSED;
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
                                                        : res->triad_gbps);
        fflush(stdout);
    }
    return 0;
}

static int bench_model_T(mf_ctx *ctx, const bench_opts *o, bench_results *res,
                         const bench_model *m, int64_t T)
{
    op_case c = {.ctx = ctx, .m = m, .T = T};
    uint64_t s = 0x5eed0000u + (uint64_t)T * 131u + (uint64_t)m->E;
    size_t tk = (size_t)(T * m->k);
    int rc = 1;
    c.logits = malloc((size_t)N_ROUTES * (size_t)(T * m->E) * sizeof(float));
    if (m->mode != MF_GATING_SOFTMAX_TOPK || m->router_bias)
        c.bias = malloc((size_t)m->E * sizeof(float));
    c.routes = malloc((size_t)N_ROUTES * tk * sizeof(int32_t));
    c.rw = malloc((size_t)N_ROUTES * tk * sizeof(float));
    c.idx_out = malloc(tk * sizeof(int32_t));
    c.w_out = malloc(tk * sizeof(float));
    c.x = malloc((size_t)(T * m->H) * sizeof(float));
    c.gu = malloc(tk * (size_t)(2 * m->F) * sizeof(float));
    c.h = malloc(tk * (size_t)m->F * sizeof(float));
    c.eo = malloc(tk * (size_t)m->H * sizeof(float));
    c.y = malloc((size_t)(T * m->H) * sizeof(float));
    if (!c.logits || (!c.bias && m->mode != MF_GATING_SOFTMAX_TOPK) || !c.routes || !c.rw || !c.idx_out || !c.w_out ||
        !c.x || !c.gu || !c.h || !c.eo || !c.y)
        goto out;
    bench_fill(c.logits, (size_t)N_ROUTES * (size_t)(T * m->E), &s, 8.0f);
    if (c.bias)
        bench_fill(c.bias, (size_t)m->E, &s, 0.2f);
    bench_fill(c.x, (size_t)(T * m->H), &s, 2.0f);
    bench_fill(c.gu, tk * (size_t)(2 * m->F), &s, 8.0f);
    bench_fill(c.h, tk * (size_t)m->F, &s, 1.0f);
    bench_fill(c.eo, tk * (size_t)m->H, &s, 1.0f);
    c.E_alloc = m->E;
    make_routes(&c, &s);

    char shape[128];
    snprintf(shape, sizeof shape, "model=%s,E=%d,k=%d,T=%lld", m->name, m->E,
             m->k, (long long)T);
    if (measure_op(&c, o, res, "gating", shape, run_gating, T == 1 ? 256 : 16, 0))
        goto out;
    snprintf(shape, sizeof shape, "model=%s,F=%lld,rows=%lld", m->name,
             (long long)m->F, (long long)tk);
    if (measure_op(&c, o, res, "glu", shape, run_glu, T == 1 ? 64 : 4,
                   (double)tk * (double)m->F * 12.0))
        goto out;
    snprintf(shape, sizeof shape, "model=%s,k=%d,D=%lld,T=%lld", m->name, m->k,
             (long long)m->H, (long long)T);
    if (measure_op(&c, o, res, "combine", shape, run_combine, T == 1 ? 64 : 4,
                   (double)tk * (double)m->H * 4.0 + (double)T * (double)m->H * 8.0))
        goto out;

    static const mf_type fmts[] = {MF_TYPE_Q4_0, MF_TYPE_Q8_0, MF_TYPE_MLX_Q4};
    for (int f = 0; f < 3; f++) {
        if (!wanted(o, "moe_"))
            break;
        mf_type fmt = fmts[f];
        double per_expert = bench_row_bytes(fmt, m->H) * (double)(2 * m->F) +
                            bench_row_bytes(fmt, m->F) * (double)m->H;
        int32_t E_alloc = m->E;
        double cap = o->mem_gb * 1e9;
        if (per_expert * E_alloc > cap) {
            E_alloc = (int32_t)(cap / per_expert);
            if (E_alloc < m->k)
                E_alloc = m->k;
        }
        c.E_alloc = E_alloc;
        make_routes(&c, &s);
        bench_weights wgu, wd;
        if (bench_weights_make(&wgu, fmt, E_alloc, 2 * m->F, m->H, s) ||
            bench_weights_make(&wd, fmt, E_alloc, m->H, m->F, s + 1)) {
            fprintf(stderr, "moefuse-bench: out of memory for %s weights\n", m->name);
            goto out;
        }
        c.wgu = &wgu.t;
        c.wd = &wd.t;
        if (m->router_bias) {
            c.bgu = malloc((size_t)E_alloc * (size_t)(2 * m->F) * sizeof(float));
            c.bd = malloc((size_t)E_alloc * (size_t)m->H * sizeof(float));
            if (c.bgu && c.bd) {
                bench_fill(c.bgu, (size_t)E_alloc * (size_t)(2 * m->F), &s, 0.1f);
                bench_fill(c.bd, (size_t)E_alloc * (size_t)m->H, &s, 0.1f);
            }
        }
        double uniq = mean_unique_experts(&c);
        snprintf(shape, sizeof shape, "H=%lld,F=%lld,E=%d,k=%d,T=%lld,fmt=%s%s",
                 (long long)m->H, (long long)m->F, m->E, m->k, (long long)T,
                 mf_type_name(fmt) , fmt == MF_TYPE_MLX_Q4 ? "_g64" : "");
        if (E_alloc < m->E) {
            size_t l = strlen(shape);
            snprintf(shape + l, sizeof shape - l, ",E_alloc=%d", E_alloc);
        }
        int bad = measure_op(&c, o, res, "moe_gate_up", shape, run_gate_up, 1,
                             uniq * bench_row_bytes(fmt, m->H) * (double)(2 * m->F)) ||
                  measure_op(&c, o, res, "moe_down_combine", shape, run_down, 1,
                             uniq * bench_row_bytes(fmt, m->F) * (double)m->H);
        free(c.bgu);
        free(c.bd);
        c.bgu = c.bd = NULL;
        bench_weights_free(&wgu);
        bench_weights_free(&wd);
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

int bench_suite_cpu(mf_ctx *ctx, const bench_opts *o, bench_results *res)
{
    static const int64_t Ts[] = {1, 32};
    for (int mi = 0; mi < bench_n_models; mi++) {
        const bench_model *m = &bench_models[mi];
        if (o->model && strcmp(o->model, m->name) != 0)
            continue;
        for (int ti = 0; ti < 2; ti++) {
            if (o->progress)
                fprintf(stderr, "moefuse-bench: %s T=%lld\n", m->name,
                        (long long)Ts[ti]);
            if (bench_model_T(ctx, o, res, m, Ts[ti]))
                return 1;
        }
    }
    return 0;
}
