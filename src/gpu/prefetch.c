/* Cache warming (shaders/prefetch.comp): the MoE chain can read the down
 * weights of the selected experts beside gate_up, so that the down step
 * finds them in the device's last-level cache instead of waiting on
 * memory for every block. Off unless MOEFUSE_GPU_PREFETCH=1: on the H100
 * (Qwen3-30B-A3B, T = 1, Q4_0, recorded before gate_up) it made the cold
 * down step 1-2 us faster but gate_up 4-5 us slower
 * (bench/results/gpu-h100-prefetch.txt). Only where the selected experts'
 * down weights are small enough to stay cached beside gate_up's stream. */
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "shaders.h"

/* At most this many bytes warmed (every pair's expert counted): a quarter
 * of the H100's 50 MB last-level cache, so that gate_up's own stream does
 * not push them out again. */
#define PREFETCH_MAX_BYTES ((uint64_t)12 << 20)

static uint64_t expert_bytes(const mf_wres *w, uint64_t n)
{
    const mf_wlayout *l = &w->lay;
    uint64_t b = n * (l->code_row + l->scale_row);
    if (l->total > l->boff) /* MLX biases */
        b += n * l->scale_row;
    return b;
}

int mf_gpu_prefetch_wanted(const mf_wres *w, int64_t n, uint64_t P)
{
    /* byte offsets in 32 bits, with room for the shader's rounding up */
    return mf_gpu_env_is("MOEFUSE_GPU_PREFETCH", "1") && w->nparts == 1 &&
           w->lay.total <= UINT32_MAX - 16 &&
           P * expert_bytes(w, (uint64_t)n) <= PREFETCH_MAX_BYTES;
}

mf_status mf_gpu_prefetch_pipe(mf_vk *vk, const mf_vk_pipe **pipe)
{
    mf_vk_pipe_desc pd = {.shader = &mf_shader_prefetch, .n_bindings = 3,
                          .push_bytes = 40};
    return mf_vk_pipe_get(vk, &pd, pipe);
}

void mf_gpu_prefetch_record(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                            const mf_wres *w, int64_t n, const mf_vk_bind *idx,
                            uint32_t idx_off, uint32_t P, const mf_vk_bind *dst)
{
    const mf_wlayout *l = &w->lay;
    uint32_t push[10] = {P, (uint32_t)w->key.e, idx_off, 0x9e3779b9u};
    push[4] = 0;
    push[7] = (uint32_t)((uint64_t)n * l->code_row);
    push[5] = (uint32_t)l->soff;
    push[8] = (uint32_t)((uint64_t)n * l->scale_row);
    push[6] = (uint32_t)l->boff;
    push[9] = l->total > l->boff ? push[8] : 0;
    mf_vk_bind b[3] = {{.buf = mf_wres_buf(w)}, *idx, *dst};
    /* about 16 words per invocation of a pair's codes */
    uint64_t words = push[7] / 16, gx = (words + 4095) / 4096;
    gx = gx < 1 ? 1 : gx > 256 ? 256 : gx;
    mf_vk_cmd_dispatch(vk, p, pipe, b, push, (uint32_t)gx, P < 64 ? P : 64, 1);
}
