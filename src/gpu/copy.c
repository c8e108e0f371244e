/* The word-copy shader (shaders/copy.comp): its pipeline and one recorded
 * pass. The MoE chain copies its routing back with it; the bench measures
 * the device's copy and read floors with it. */
#include "gpu_internal.h"
#include "shaders.h"

mf_status mf_gpu_copy_pipe(mf_vk *vk, int read_only, const mf_vk_pipe **pipe)
{
    mf_vk_pipe_desc pd = {.shader = &mf_shader_copy, .n_bindings = 2,
                          .push_bytes = 8, .n_spec = 1,
                          .spec = {read_only != 0}};
    return mf_vk_pipe_get(vk, &pd, pipe);
}

void mf_gpu_cmd_copy_words(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                           const mf_vk_bind b[2], uint32_t words,
                           uint32_t magic)
{
    /* about four words per invocation, within the group-count limit */
    uint64_t groups = ((uint64_t)words + 1023) / 1024;
    if (groups > 65535)
        groups = 65535;
    if (groups < 1)
        groups = 1;
    uint32_t push[2] = {words, magic};
    mf_vk_cmd_dispatch(vk, p, pipe, b, push, (uint32_t)groups, 1, 1);
}
