#include "models.h"

const bench_model bench_models[] = {
    {"qwen3-30b-a3b", 2048, 768, 128, 8, MF_GATING_SOFTMAX_TOPK, 1, 0, 0, 0.0f,
     0, MF_GLU_SWIGLU, MF_GLU_CONCAT},
    {"mixtral-8x7b", 4096, 14336, 8, 2, MF_GATING_TOPK_SOFTMAX, 0, 0, 0, 0.0f,
     0, MF_GLU_SWIGLU, MF_GLU_SEPARATE},
    {"deepseek-v3", 7168, 2048, 256, 8, MF_GATING_SIGMOID_GROUPED, 1, 8, 4,
     2.5f, 0, MF_GLU_SWIGLU, MF_GLU_CONCAT},
    {"gpt-oss-20b", 2880, 2880, 32, 4, MF_GATING_TOPK_SOFTMAX, 0, 0, 0, 0.0f,
     1, MF_GLU_SWIGLU_OAI, MF_GLU_INTERLEAVED},
};
const int bench_n_models = (int)(sizeof bench_models / sizeof bench_models[0]);
