/* mf_dequant_act on the device (shaders/dequant.comp), the tensor resident.
 * Exact decode (bit-identical with act NONE and f32 output), activation
 * with the reference's formulas, 16-bit outputs rounded as the reference
 * rounds. */
#include <string.h>

#include "quant.h"
#include "shaders.h"

typedef struct dq_key {
    uint32_t wid[4];
    int32_t act, out_type;
} dq_key;

typedef struct dq_push {
    uint32_t total, K, nb, soff, boff, gpr;
} dq_push;

mf_status mf_gpu_dequant_act(mf_gpu *g, const mf_dequant_desc *d,
                             const mf_tensor *w, void *out)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    const uint64_t total = (uint64_t)w->e * (uint64_t)w->n * (uint64_t)w->k;
    const uint64_t ob = d->out_type == MF_TYPE_F32 ? total * 4
                                                   : (total + 1) / 2 * 4;
    if (ob > vk->max_binding || total > UINT32_MAX)
        return MF_ERR_DEVICE_OOM;
    mf_wcache_begin(g);
    const mf_wres *res;
    st = mf_wcache_get(g, w, &res);
    if (st != MF_OK)
        return st;
    if (!mf_wres_buf(res))
        return MF_ERR_DEVICE_OOM; /* split: the shader reads one buffer */
    dq_key key;
    memset(&key, 0, sizeof key);
    key.wid[0] = res->id;
    key.act = (int32_t)d->act;
    key.out_type = (int32_t)d->out_type;
    mf_vk_plans *c = &g->plans[MF_GPU_OP_DEQUANT];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        uint32_t wg = mf_qwg(vk);
        mf_vk_pipe_desc pd = {
            .shader = &mf_shader_dequant,
            .n_bindings = 2,
            .push_bytes = sizeof(dq_push),
            .n_spec = 4,
            .spec = {wg, mf_wfmt(w), (uint32_t)d->act, (uint32_t)d->out_type},
        };
        const mf_vk_pipe *pipe;
        st = mf_vk_pipe_get(vk, &pd, &pipe);
        int o = -1;
        if (st == MF_OK)
            o = mf_vk_plan_io(vk, pl, (size_t)ob, MF_VK_OUT, &st);
        if (o >= 0)
            st = mf_vk_prog_init(vk, &pl->prog, 1);
        if (o >= 0 && st == MF_OK)
            st = mf_vk_prog_begin(vk, &pl->prog);
        if (o >= 0 && st == MF_OK) {
            dq_push pc = {
                .total = (uint32_t)total, .K = (uint32_t)w->k,
                .nb = res->lay.nb, .soff = (uint32_t)(res->lay.soff / 4),
                .boff = (uint32_t)(res->lay.boff / 4),
                .gpr = w->group_size ? (uint32_t)(w->k / w->group_size) : 0};
            mf_vk_bind b[2] = {{.buf = mf_wres_buf(res)}, {.buf = &pl->io[o].dev}};
            uint64_t words = ob / 4, groups = (words + wg - 1) / wg;
            if (groups > vk->max_groups_x)
                groups = vk->max_groups_x;
            mf_vk_cmd_dispatch(vk, &pl->prog, pipe, b, &pc, (uint32_t)groups,
                               1, 1);
            mf_vk_cmd_download(vk, &pl->prog, &pl->io[o]);
            st = mf_vk_prog_end(vk, &pl->prog);
        }
        if (st != MF_OK) {
            mf_vk_plans_drop(vk, c, pl);
            return st;
        }
        pl->ready = 1;
    }
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    size_t bytes = d->out_type == MF_TYPE_F32 ? (size_t)total * 4
                                              : (size_t)total * 2;
    memcpy(out, pl->io[0].map, bytes);
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}
