/* Benchmark suites and their options. */
#ifndef MF_BENCH_SUITE_H
#define MF_BENCH_SUITE_H

#include "bench.h"

typedef struct bench_opts {
    int quick;           /* fewer shapes and runs */
    double budget_us;    /* time per (op, shape, impl) */
    int threads;         /* 0 = the context's default */
    const char *filter;  /* only ops whose name contains this */
    const char *model;   /* only this model preset */
    int progress;        /* progress lines on stderr */
    double mem_gb;       /* cap on one weight stack's size */
    int report;          /* the CPU-vs-GPU report: one model, GPU optional */
    int forms;           /* gpu: the MoE chain with each kernel form 0 / 1 */
} bench_opts;

/* Caps c's routed experts so that one stack of per_expert bytes each stays
 * within mem_gb: a multiple of the groups, at least 2k (and no more than
 * before), the groups dropped where the kept ones could not fill k.
 * Unchanged where the stack fits. */
void bench_cap_experts(mf_moe_config *c, double per_expert, double mem_gb);

/* Runs the CPU suite into res. 0 on success; non-zero on an op failure
 * (printed). */
int bench_suite_cpu(mf_ctx *ctx, const bench_opts *o, bench_results *res);

/* The MoE layer's decode step per preset and format: unfused, fused CPU,
 * GPU chain and routed. */
int bench_suite_layer(mf_ctx *ctx, const bench_opts *o, bench_results *res);

/* GPU floors (empty dispatch, device copy) and each op's pre-recorded round
 * trip, device time and whole call next to the CPU, in one run. */
int bench_suite_gpu(mf_ctx *ctx, const bench_opts *o, bench_results *res);

#endif
