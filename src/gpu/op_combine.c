/* mf_combine on the device (shaders/combine.comp): one output element per
 * invocation step. exact = 1 is bit-identical to the reference on every
 * device, subnormals included. */
#include <string.h>

#include "gpu_internal.h"
#include "shaders.h"

typedef struct combine_key {
    int64_t T, D;
    int32_t k, exact, has_res, pad;
} combine_key;

typedef struct combine_push {
    uint32_t T, k, D, x_off, res_off;
} combine_push;

static mf_status build(mf_gpu *g, mf_vk_plan *pl, const combine_push *pc,
                       int exact, int has_res)
{
    mf_vk *vk = &g->vk;
    uint32_t wg = vk->max_wg_size < 256 ? vk->max_wg_size : 256;
    mf_vk_pipe_desc pd = {
        .shader = &mf_shader_combine,
        .n_bindings = 2,
        .push_bytes = sizeof *pc,
        .n_spec = 3,
        .spec = {wg, (uint32_t)exact, (uint32_t)has_res},
    };
    const mf_vk_pipe *pipe;
    mf_status st = mf_vk_pipe_get(vk, &pd, &pipe);
    if (st != MF_OK)
        return st;
    size_t T = pc->T, k = pc->k, D = pc->D;
    size_t in_words = T * k + T * k * D + (has_res ? T * D : 0);
    int in = mf_vk_plan_io(vk, pl, in_words * sizeof(float), MF_VK_IN, &st);
    if (in < 0)
        return st;
    int out = mf_vk_plan_io(vk, pl, T * D * sizeof(float), MF_VK_OUT, &st);
    if (out < 0)
        return st;
    st = mf_vk_prog_init(vk, &pl->prog, 1);
    if (st == MF_OK)
        st = mf_vk_prog_begin(vk, &pl->prog);
    if (st != MF_OK)
        return st;
    mf_vk_bind b[2] = {{.buf = &pl->io[in].dev}, {.buf = &pl->io[out].dev}};
    uint64_t groups = (T * D + wg - 1) / wg;
    if (groups > vk->max_groups_x)
        groups = vk->max_groups_x;
    mf_vk_cmd_upload(vk, &pl->prog, &pl->io[in]);
    mf_vk_cmd_dispatch(vk, &pl->prog, pipe, b, pc, (uint32_t)groups, 1, 1);
    mf_vk_cmd_download(vk, &pl->prog, &pl->io[out]);
    st = mf_vk_prog_end(vk, &pl->prog);
    if (st == MF_OK)
        pl->ready = 1;
    return st;
}

mf_status mf_gpu_combine(mf_gpu *g, const mf_combine_desc *d, int64_t T,
                         int32_t k, int64_t D, const float *x, const float *w,
                         const float *residual, float *out)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    const int has_res = residual != NULL, exact = d->exact != 0;
    const uint64_t nw = (uint64_t)T * (uint64_t)k,
                   nx = nw * (uint64_t)D, no = (uint64_t)T * (uint64_t)D;
    const uint64_t in_words = nw + nx + (has_res ? no : 0);
    if (in_words * 4 > vk->max_binding || no * 4 > vk->max_binding)
        return MF_ERR_DEVICE_OOM;
    combine_push pc = {.T = (uint32_t)T, .k = (uint32_t)k, .D = (uint32_t)D,
                       .x_off = (uint32_t)nw,
                       .res_off = (uint32_t)(nw + nx)};
    combine_key key;
    memset(&key, 0, sizeof key);
    key.T = T;
    key.D = D;
    key.k = k;
    key.exact = exact;
    key.has_res = has_res;
    mf_vk_plans *c = &g->plans[MF_GPU_OP_COMBINE];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        st = build(g, pl, &pc, exact, has_res);
        if (st != MF_OK) {
            mf_vk_plans_drop(vk, c, pl);
            return st;
        }
    }
    float *in = pl->io[0].map;
    memcpy(in, w, (size_t)nw * sizeof(float));
    memcpy(in + nw, x, (size_t)nx * sizeof(float));
    if (has_res)
        memcpy(in + nw + nx, residual, (size_t)no * sizeof(float));
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    memcpy(out, pl->io[1].map, (size_t)no * sizeof(float));
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}
