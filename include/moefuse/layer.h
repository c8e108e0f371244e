/* moefuse — one MoE block end to end: router -> gate/up/GLU -> down/combine
 * (+ shared experts, + residual) as one call.
 *
 * Thread-safety: a layer belongs to the context it was made with and is
 * used under that context's rule (one thread at a time). */
#ifndef MOEFUSE_LAYER_H
#define MOEFUSE_LAYER_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shape and math of a block. Start from mf_moe_preset() or zero. */
typedef struct mf_moe_config {
    int64_t hidden;          /* H */
    int64_t expert_ffn;      /* F, one routed expert's intermediate size */
    int32_t n_experts;       /* E */
    int32_t top_k;           /* k */
    mf_gating_mode router;   /* gating mode */
    int32_t renormalize;     /* as mf_gating_desc */
    int32_t n_group, topk_group;
    float routed_scale;      /* 0 = 1.0 */
    mf_glu_kind glu;
    float glu_limit, glu_alpha; /* SWIGLU_OAI; 0 = defaults */
    mf_glu_layout gate_up_layout; /* SEPARATE, CONCAT or INTERLEAVED rows */
    int32_t n_shared;        /* shared experts (0 or 1), always applied */
    int64_t shared_ffn;      /* their intermediate size */
    int32_t router_bias;     /* 1: the router has a bias (added to logits) */
    int32_t correction_bias; /* 1: SIGMOID_GROUPED selection bias */
    int32_t expert_bias;     /* 1: experts have gate/up and down biases */
} mf_moe_config;

/* Presets for "qwen3-30b-a3b", "qwen3-235b-a22b", "mixtral-8x7b",
 * "deepseek-v3", "gpt-oss-20b", "olmoe-1b-7b", "lfm2-8b-a1b",
 * "glm-4.7-flash". MF_ERR_INVALID_ARG for NULLs or an unknown name. */
mf_status mf_moe_preset(const char *name, mf_moe_config *out);
/* The preset names, NULL-terminated. */
const char *const *mf_moe_preset_names(void);

/* Weights of one block. Tensors are descriptors of caller memory, which must
 * stay alive and unchanged while the layer exists (the layer copies only
 * the descriptors).
 *  - router: [1, E, H], any type (f32 usual; MLX files quantize it).
 *  - router_bias: [E] f32 when config.router_bias, else NULL.
 *  - correction_bias: [E] f32 when config.correction_bias, else NULL.
 *  - gate, up: [E, F, H] with SEPARATE layout; with CONCAT / INTERLEAVED
 *    `gate` is [E, 2F, H] and `up` has data NULL.
 *  - gate_bias, up_bias, down_bias: f32 when config.expert_bias, else NULL.
 *    SEPARATE: gate_bias and up_bias [E, F]; CONCAT / INTERLEAVED:
 *    gate_bias [E, 2F] in the row layout of `gate` and up_bias NULL.
 *    down_bias [E, H].
 *  - down: [E, H, F].
 *  - shared_gate, shared_up: [1, Fs, H]; shared_down: [1, H, Fs] when
 *    config.n_shared == 1 (SwiGLU, separate). */
typedef struct mf_moe_weights {
    mf_tensor router;
    const float *router_bias;
    const float *correction_bias;
    mf_tensor gate, up, down;
    const float *gate_bias, *up_bias;
    const float *down_bias;
    mf_tensor shared_gate, shared_up, shared_down;
} mf_moe_weights;

typedef struct mf_moe_layer mf_moe_layer;

/* Validates config and weights against each other (shapes, types, biases)
 * and makes a layer. Errors: MF_ERR_INVALID_ARG (any inconsistency),
 * MF_ERR_UNSUPPORTED (a type an op does not take), MF_ERR_OUT_OF_MEMORY.
 * *out untouched on error. */
mf_status mf_moe_layer_create(mf_ctx *ctx, const mf_moe_config *cfg,
                              const mf_moe_weights *w, mf_moe_layer **out);
void mf_moe_layer_destroy(mf_moe_layer *layer);

/* How forward runs. */
typedef struct mf_moe_run {
    mf_impl impl;       /* AUTO (routed), REF, UNFUSED, CPU or an ISA, GPU */
    mf_precision prec;  /* for the expert projections */
} mf_moe_run;

/* y [T, H] = MoE(x [T, H]) (+ residual [T, H] when not NULL). run NULL =
 * {AUTO, EXACT}. Scratch grows with T and is kept by the layer. The expert
 * choices can be read back with mf_moe_layer_last_routing. Without a shared
 * expert, MF_IMPL_GPU (and AUTO when the placement cache predicts that one
 * submit beats the steps run one by one, each routed on its own:
 * mf_moe_layer_explain) runs router, gating, gate/up and down/combine as
 * one GPU submit with the intermediates in device memory and the weights
 * resident (weights.h); the results are those of the ops run one by one on
 * the GPU.
 * y may equal residual; it must not overlap x. Errors: the common op errors;
 * T < 1 or > 65536. */
mf_status mf_moe_layer_forward(mf_moe_layer *layer, const mf_moe_run *run,
                               const float *x, int64_t T,
                               const float *residual, float *y);

/* How an MF_IMPL_AUTO forward of T tokens runs: *one_submit 1 for the whole
 * block as one GPU submit, 0 op by op (each op routed on its own: every GPU
 * op its own submit); *submit_us and *ops_us the placement cache's
 * predictions of the two (-1 where it has none: no GPU, no cache, a shared
 * expert). Any output may be NULL. Errors: MF_ERR_INVALID_ARG (NULL layer,
 * T < 1 or > 65536); the outputs untouched on error. */
mf_status mf_moe_layer_explain(const mf_moe_layer *layer, int64_t T,
                               int *one_submit, double *submit_us,
                               double *ops_us);

/* The experts and weights the last forward chose: pointers into the layer's
 * scratch ([T, k] each), valid until the next forward or destroy. NULL
 * before any forward. */
const int32_t *mf_moe_layer_last_routing(const mf_moe_layer *layer,
                                         const float **weights, int64_t *T);

#ifdef __cplusplus
}
#endif
#endif
