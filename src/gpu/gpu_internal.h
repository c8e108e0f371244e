/* The Vulkan build's struct mf_gpu: the runtime plus one plan cache per op.
 * Not installed. */
#ifndef MF_GPU_GPU_INTERNAL_H
#define MF_GPU_GPU_INTERNAL_H

#include "gpu.h"
#include "vk.h"

/* Device bytes an op's cache keeps between calls. */
#define MF_GPU_PLAN_BUDGET ((size_t)64 << 20)

struct mf_gpu {
    mf_vk vk;
    mf_vk_plans plans[MF_GPU_OP_COUNT_];
    float *scratch;      /* host rows recomputed by the reference (gating) */
    int64_t gating_device_rows, gating_host_rows;
    /* bench */
    mf_vk_prog empty;    /* one empty workgroup */
    mf_vk_prog steps;    /* MF_GPU_BENCH_STEPS of them, barriers between */
    mf_vk_prog copy[MF_GPU_COPY_KINDS_]; /* floors over copy_bytes */
    mf_vk_buf copy_src, copy_dst;
    size_t copy_bytes;
    struct mf_gpu_quant *quant; /* resident weights, chains (quant.h) */
};

/* Frees the quantized side (quant.h); the device must be idle. */
void mf_gpu_quant_free(mf_gpu *g);

/* Records the gating dispatch of a call into p (op_gating.c; used by the
 * MoE chain): in = the logits [T, E] from float E on; bias = the bias [E]
 * (zeros without one); out = idx [T, k], w [T, k], flags [T], and mirror
 * (NULL: none) the same words again. MF_ERR_UNSUPPORTED for shapes the
 * shader does not take. */
mf_status mf_gpu_gating_record(mf_gpu *g, mf_vk_prog *p,
                               const mf_gating_desc *d, int64_t T,
                               const mf_vk_bind *in, const mf_vk_bind *bias,
                               const mf_vk_bind *out, const mf_vk_bind *mirror);

/* The word-copy shader (copy.c): its pipeline (read_only: only read src,
 * the bench's read floor) and one pass over `words` 16-byte words of
 * binding 0 into binding 1 (magic: the value the read-only pass never
 * stores). */
mf_status mf_gpu_copy_pipe(mf_vk *vk, int read_only, const mf_vk_pipe **pipe);
void mf_gpu_cmd_copy_words(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                           const mf_vk_bind b[2], uint32_t words,
                           uint32_t magic);

/* A tuning override (MOEFUSE_GPU_QWG, MOEFUSE_GPU_GATING_WG, ...; read
 * when a plan is recorded): the power of two in [lo, hi] that variable
 * `name` holds, 0 when it is unset or holds anything else. */
uint32_t mf_gpu_env_pow2(const char *name, uint32_t lo, uint32_t hi);
/* 1 when environment variable name is set to exactly value. */
int mf_gpu_env_is(const char *name, const char *value);

/* A kernel form's value for the plan being recorded: the environment
 * override where set (0 or 1), else the one mf_gpu_forms_use set, else
 * MF_GPU_FORM_AUTO. */
int mf_gpu_form(const mf_vk *vk, mf_gpu_form_id id);
/* The forms of vk packed into a word, for plan keys. */
uint32_t mf_gpu_forms_word(const mf_vk *vk);

/* The status of an op entry before it touches the device. */
static inline mf_status mf_gpu_ready(const mf_gpu *g)
{
    return g->vk.lost ? MF_ERR_DEVICE_LOST : MF_OK;
}

#endif
