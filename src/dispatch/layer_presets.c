/* Model presets for mf_moe_layer (shapes and router math from the models'
 * public configurations). */
#include <string.h>

#include "internal.h"

typedef struct preset {
    const char *name;
    mf_moe_config cfg;
} preset;

static const preset presets[] = {
    {"qwen3-30b-a3b", {.hidden = 2048, .expert_ffn = 768, .n_experts = 128,
                       .top_k = 8, .router = MF_GATING_SOFTMAX_TOPK,
                       .renormalize = 1, .glu = MF_GLU_SWIGLU,
                       .gate_up_layout = MF_GLU_SEPARATE}},
    {"qwen3-235b-a22b", {.hidden = 4096, .expert_ffn = 1536, .n_experts = 128,
                         .top_k = 8, .router = MF_GATING_SOFTMAX_TOPK,
                         .renormalize = 1, .glu = MF_GLU_SWIGLU,
                         .gate_up_layout = MF_GLU_SEPARATE}},
    {"mixtral-8x7b", {.hidden = 4096, .expert_ffn = 14336, .n_experts = 8,
                      .top_k = 2, .router = MF_GATING_TOPK_SOFTMAX,
                      .glu = MF_GLU_SWIGLU, .gate_up_layout = MF_GLU_SEPARATE}},
    {"deepseek-v3", {.hidden = 7168, .expert_ffn = 2048, .n_experts = 256,
                     .top_k = 8, .router = MF_GATING_SIGMOID_GROUPED,
                     .renormalize = 1, .n_group = 8, .topk_group = 4,
                     .routed_scale = 2.5f, .glu = MF_GLU_SWIGLU,
                     .gate_up_layout = MF_GLU_SEPARATE, .n_shared = 1,
                     .shared_ffn = 2048, .correction_bias = 1}},
    {"gpt-oss-20b", {.hidden = 2880, .expert_ffn = 2880, .n_experts = 32,
                     .top_k = 4, .router = MF_GATING_TOPK_SOFTMAX,
                     .glu = MF_GLU_SWIGLU_OAI,
                     .gate_up_layout = MF_GLU_INTERLEAVED, .router_bias = 1,
                     .expert_bias = 1}},
    {"olmoe-1b-7b", {.hidden = 2048, .expert_ffn = 1024, .n_experts = 64,
                     .top_k = 8, .router = MF_GATING_SOFTMAX_TOPK,
                     .renormalize = 0, .glu = MF_GLU_SWIGLU,
                     .gate_up_layout = MF_GLU_SEPARATE}},
    /* Sigmoid scores, a per-expert bias used for selection only,
     * renormalized weights. */
    {"lfm2-8b-a1b", {.hidden = 2048, .expert_ffn = 1792, .n_experts = 32,
                     .top_k = 4, .router = MF_GATING_SIGMOID_GROUPED,
                     .renormalize = 1, .glu = MF_GLU_SWIGLU,
                     .gate_up_layout = MF_GLU_SEPARATE, .correction_bias = 1}},
    /* DeepSeek-V3 routing without groups, one shared expert of the routed
     * size. routed_scale stays 1.0: set the model's routed_scaling_factor
     * from its configuration. */
    {"glm-4.7-flash", {.hidden = 2048, .expert_ffn = 1536, .n_experts = 64,
                       .top_k = 4, .router = MF_GATING_SIGMOID_GROUPED,
                       .renormalize = 1, .glu = MF_GLU_SWIGLU,
                       .gate_up_layout = MF_GLU_SEPARATE, .n_shared = 1,
                       .shared_ffn = 1536, .correction_bias = 1}},
};

#define N_PRESETS (sizeof presets / sizeof presets[0])

mf_status mf_moe_preset(const char *name, mf_moe_config *out)
{
    if (!name || !out)
        return MF_ERR_INVALID_ARG;
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcmp(name, presets[i].name) == 0) {
            *out = presets[i].cfg;
            return MF_OK;
        }
    }
    return MF_ERR_INVALID_ARG;
}

/* In the order of the table above (a test checks each resolves). */
static const char *const preset_names[N_PRESETS + 1] = {
    "qwen3-30b-a3b", "qwen3-235b-a22b", "mixtral-8x7b", "deepseek-v3",
    "gpt-oss-20b", "olmoe-1b-7b", "lfm2-8b-a1b", "glm-4.7-flash", NULL};

const char *const *mf_moe_preset_names(void) { return preset_names; }
