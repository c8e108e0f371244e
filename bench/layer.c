/* moefuse-bench layer: one MoE block's decode step per model preset and
 * weight format, for the unfused reference, the fused CPU path, the GPU
 * path and the routed (AUTO) path. Weights come from DRAM: the whole layer
 * is allocated (up to the memory cap) and tokens change every iteration. */
#include <stdlib.h>
#include <string.h>

#include "src/dispatch/internal.h"
#include "suite.h"

#define N_INPUTS 16

typedef struct layer_case {
    mf_moe_layer *layer;
    mf_moe_run run;
    int64_t T, H;
    float *x, *y; /* x: N_INPUTS sets of [T, H] */
} layer_case;

static int run_layer(void *a, int i)
{
    layer_case *c = a;
    size_t TH = (size_t)(c->T * c->H);
    return mf_moe_layer_forward(c->layer, &c->run,
                                c->x + (size_t)(i % N_INPUTS) * TH, c->T, NULL,
                                c->y);
}

/* The GPU path's last chain replayed: device time per step (means of 20
 * replays), where it ran as one chain (no shared expert). */
static void print_chain_steps(mf_gpu *g)
{
    double st[4] = {0}, gpu = 0;
    int n = 0;
    for (int i = 0; i < 20; i++) {
        mf_gpu_chain_times t;
        if (mf_gpu_bench_chain(g, &t) != MF_OK || t.gpu_us < 0)
            break;
        for (int s = 0; s < 4; s++)
            st[s] += t.step_us[s];
        gpu += t.gpu_us;
        n++;
    }
    if (n && st[0] >= 0)
        printf("            device per step (means): router %.2f us, gating %.2f us, "
               "gate_up %.2f us, down_combine %.2f us; whole chain %.2f us\n",
               st[0] / n, st[1] / n, st[2] / n, st[3] / n, gpu / n);
}

/* Weight bytes one forward reads: router, the distinct experts' gate/up/down
 * rows, shared experts; averaged over the inputs (routing is real). */
static double step_bytes(layer_case *c, const mf_moe_config *m, mf_type fmt,
                         int32_t E)
{
    double per_expert = synth_row_bytes(fmt, m->hidden) * (double)(2 * m->expert_ffn) +
                        synth_row_bytes(fmt, m->expert_ffn) * (double)m->hidden;
    double fixed = synth_row_bytes(MF_TYPE_F32, m->hidden) * (double)E;
    if (m->n_shared)
        fixed += synth_row_bytes(fmt, m->hidden) * (double)(2 * m->shared_ffn) +
                 synth_row_bytes(fmt, m->shared_ffn) * (double)m->hidden;
    unsigned char *seen = calloc((size_t)E, 1);
    double uniq = 0;
    mf_moe_run run = {MF_IMPL_CPU, MF_PREC_EXACT};
    for (int i = 0; i < N_INPUTS && seen; i++) {
        memset(seen, 0, (size_t)E);
        size_t TH = (size_t)(c->T * c->H);
        if (mf_moe_layer_forward(c->layer, &run, c->x + (size_t)i * TH, c->T,
                                 NULL, c->y) != MF_OK)
            break;
        const int32_t *idx = mf_moe_layer_last_routing(c->layer, NULL, NULL);
        for (int64_t j = 0; j < c->T * m->top_k; j++) {
            uniq += !seen[idx[j]];
            seen[idx[j]] = 1;
        }
    }
    free(seen);
    return fixed + uniq / N_INPUTS * per_expert;
}

static const char *const layer_models[] = {"qwen3-30b-a3b", "mixtral-8x7b",
                                           "deepseek-v3", "gpt-oss-20b",
                                           "olmoe-1b-7b"};

void bench_cap_experts(mf_moe_config *c, double per_expert, double mem_gb)
{
    if (per_expert * c->n_experts <= mem_gb * 1e9)
        return;
    int32_t E = c->n_experts;
    c->n_experts = (int32_t)(mem_gb * 1e9 / per_expert);
    if (c->n_group > 1)
        c->n_experts -= c->n_experts % c->n_group;
    if (c->n_experts < 2 * c->top_k)
        c->n_experts = 2 * c->top_k;
    if (c->n_experts > E)
        c->n_experts = E;
    if (c->n_group > 1 && c->n_experts / c->n_group * c->topk_group < c->top_k)
        c->n_group = c->topk_group = 1;
}

/* How the routed path ran: one GPU submit or op by op, and the placement
 * cache's predictions of the two. */
static void print_route(const mf_moe_layer *layer, int64_t T)
{
    int one;
    double sub, ops;
    if (mf_moe_layer_explain(layer, T, &one, &sub, &ops) != MF_OK)
        return;
    if (sub < 0 || ops < 0)
        printf("            routed: op by op (no prediction for one submit)\n");
    else
        printf("            routed: %s (predicted: one submit %.1f us, op by op "
               "%.1f us)\n", one ? "one GPU submit" : "op by op", sub, ops);
}

int bench_suite_layer(mf_ctx *ctx, const bench_opts *o, bench_results *res)
{
    static const int64_t Ts[] = {1, 4, 32};
    static const mf_type fmts[] = {MF_TYPE_Q4_0, MF_TYPE_Q8_0, MF_TYPE_MLX_Q4};
    /* EXACT for every path; the fused CPU path also at INT8 (recorded with
     * ",prec=int8" appended to the shape; the GPU path at EXACT: the gpu
     * suite times its INT8 expert ops and chain). */
    struct {
        const char *name;
        mf_impl impl;
        mf_precision prec;
    } impls[] = {{"unfused", MF_IMPL_UNFUSED, MF_PREC_EXACT},
                 {"cpu", MF_IMPL_CPU, MF_PREC_EXACT},
                 {"gpu", MF_IMPL_GPU, MF_PREC_EXACT},
                 {"routed", MF_IMPL_AUTO, MF_PREC_EXACT},
                 {"cpu", MF_IMPL_CPU, MF_PREC_INT8}};
    int nm = o->model ? 1 : (int)(sizeof layer_models / sizeof *layer_models);
    for (int mi = 0; mi < nm; mi++) {
        const char *name = o->model ? o->model : layer_models[mi];
        mf_moe_config m;
        if (mf_moe_preset(name, &m) != MF_OK) {
            fprintf(stderr, "moefuse-bench: unknown model '%s'\n", name);
            return 1;
        }
        for (int f = 0; f < 3; f++) {
            mf_type fmt = fmts[f];
            mf_moe_config lc = m;
            double per_expert = synth_row_bytes(fmt, m.hidden) * (double)(2 * m.expert_ffn) +
                                synth_row_bytes(fmt, m.expert_ffn) * (double)m.hidden;
            bench_cap_experts(&lc, per_expert, o->mem_gb);
            if (o->progress)
                fprintf(stderr, "moefuse-bench: layer %s %s (E=%d)...\n", name,
                        mf_type_name(fmt), lc.n_experts);
            synth_layer L;
            if (synth_layer_make(&L, &lc, fmt, 0x1a7e5u + (uint64_t)f)) {
                fprintf(stderr, "moefuse-bench: out of memory for %s\n", name);
                return 1;
            }
            mf_moe_layer *layer;
            mf_status st = mf_moe_layer_create(ctx, &lc, &L.w, &layer);
            if (st != MF_OK) {
                fprintf(stderr, "moefuse-bench: layer %s: %s\n", name, mf_status_str(st));
                synth_layer_free(&L);
                return 1;
            }
            int rc = 0;
            printf("triad now %.1f GB/s\n", bench_floor_refresh(res));
            for (int ti = 0; ti < 3 && !rc; ti++) {
                int64_t T = Ts[ti];
                layer_case c = {.layer = layer, .T = T, .H = m.hidden};
                size_t TH = (size_t)(T * m.hidden);
                c.x = malloc((size_t)N_INPUTS * TH * sizeof(float));
                c.y = malloc(TH * sizeof(float));
                if (!c.x || !c.y) {
                    free(c.x);
                    free(c.y);
                    rc = 1;
                    break;
                }
                uint64_t s = 0xfeed + (uint64_t)T;
                synth_fill(c.x, (size_t)N_INPUTS * TH, &s, 3.46f);
                double bytes = step_bytes(&c, &lc, fmt, lc.n_experts);
                char shape[160];
                snprintf(shape, sizeof shape, "model=%s,T=%lld,fmt=%s%s%s",
                         name, (long long)T, mf_type_name(fmt),
                         fmt == MF_TYPE_MLX_Q4 ? "_g64" : "",
                         lc.n_experts < m.n_experts ? ",E_alloc=" : "");
                if (lc.n_experts < m.n_experts) {
                    size_t l = strlen(shape);
                    snprintf(shape + l, sizeof shape - l, "%d", lc.n_experts);
                }
                printf("layer  %s  (%.1f MB of weights per step)\n", shape, bytes / 1e6);
                for (size_t k = 0; k < sizeof impls / sizeof *impls && !rc; k++) {
                    c.run = (mf_moe_run){impls[k].impl, impls[k].prec};
                    int int8 = impls[k].prec == MF_PREC_INT8;
                    char rshape[sizeof shape + 16];
                    snprintf(rshape, sizeof rshape, "%s%s", shape, int8 ? ",prec=int8" : "");
                    if (int8)
                        printf("layer  %s\n", rshape);
                    bench_stats bs;
                    int slow = impls[k].impl == MF_IMPL_UNFUSED;
                    /* The GPU idled through the CPU rows (seconds at T =
                     * 32): 200 ms of calls first bring its clocks back up
                     * (after 3 warm-up calls the H100's GPU row at T = 1,
                     * Q8_0 read p10 98 us, median 215, p90 311, while the
                     * routed row measured right after it held 97-101). */
                    if (impls[k].impl == MF_IMPL_GPU || impls[k].impl == MF_IMPL_AUTO) {
                        double w0 = bench_now_us();
                        for (int i = 0; bench_now_us() - w0 < 200000.0; i++)
                            if (run_layer(&c, i) != MF_OK)
                                break;
                    }
                    int r = bench_measure(run_layer, &c, slow ? 1 : 3, 1,
                                          o->quick ? 5 : 11, 100000,
                                          o->budget_us, &bs);
                    if (r == MF_ERR_UNSUPPORTED) {
                        printf("  %-9s unsupported here\n", impls[k].name);
                        continue;
                    }
                    if (r == MF_ERR_DEVICE_OOM && impls[k].impl == MF_IMPL_GPU) {
                        /* a device too small for this stack (lavapipe's heap,
                         * a small iGPU): a fact about the machine, not a failure */
                        printf("  %-9s skipped: the weights do not fit in device memory\n",
                               impls[k].name);
                        continue;
                    }
                    if (r) {
                        fprintf(stderr, "moefuse-bench: layer %s %s: %s\n", rshape,
                                impls[k].name, mf_status_str((mf_status)r));
                        rc = 1;
                        break;
                    }
                    bench_results_add(res, "layer", rshape, impls[k].name, &bs, bytes);
                    bench_print_record(stdout, &res->rec[res->n - 1], bench_floor_now(res));
                    if (impls[k].impl == MF_IMPL_GPU && ctx->gpu)
                        print_chain_steps(ctx->gpu);
                    if (impls[k].impl == MF_IMPL_AUTO && ctx->gpu)
                        print_route(layer, T);
                    fflush(stdout);
                }
                free(c.x);
                free(c.y);
            }
            mf_moe_layer_destroy(layer);
            synth_layer_free(&L);
            if (rc)
                return 1;
        }
    }
    return 0;
}
