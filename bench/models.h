/* Model shapes of the benchmark suite (shared/FACTS.md section 1). */
#ifndef MF_BENCH_MODELS_H
#define MF_BENCH_MODELS_H

#include <moefuse/moefuse.h>

typedef struct bench_model {
    const char *name;
    int64_t H, F;
    int32_t E, k;
    mf_gating_mode mode;
    int32_t renorm, n_group, topk_group;
    float scale;
    int router_bias;      /* GPT-OSS: router bias, expert biases */
    mf_glu_kind glu;
    mf_glu_layout layout; /* gate/up row layout of the expert stack */
} bench_model;

extern const bench_model bench_models[];
extern const int bench_n_models;

#endif
