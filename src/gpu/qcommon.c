/* Helpers the quantized-weight ops share: format spec constants, the
 * thread layout of the matvec shaders, and dropping the plans that bind an
 * evicted tensor. */
#include <string.h>

#include "quant.h"

uint32_t mf_wfmt(const mf_tensor *t)
{
    uint32_t g = 0, st = 0;
    if (t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8) {
        g = (uint32_t)t->group_size;
        st = (uint32_t)t->scale_type;
    }
    return (uint32_t)t->type | g << 8 | st << 16;
}

uint32_t mf_qlanes(const mf_vk *vk, uint32_t nb)
{
    uint32_t cap = 32;
    if (mf_quse_subgroup(vk) && vk->subgroup_size < cap)
        cap = vk->subgroup_size;
    uint32_t l = 1;
    while (l < cap && 4 * l <= nb)
        l <<= 1;
    return l;
}

uint32_t mf_qwg(const mf_vk *vk)
{
    return vk->max_wg_size < 128 ? vk->max_wg_size : 128;
}

int mf_quse_subgroup(const mf_vk *vk)
{
    return vk->subgroup_arith &&
           (vk->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) != 0;
}

/* Plans of the quantized ops key on the ids of the tensors they bind: the
 * first four uint32 of every key. */
static int binds(const mf_vk_plan *pl, uint32_t id)
{
    uint32_t ids[4];
    if (pl->key_bytes < sizeof ids)
        return 0;
    memcpy(ids, pl->key, sizeof ids);
    return ids[0] == id || ids[1] == id || ids[2] == id || ids[3] == id;
}

void mf_quant_drop_plans(mf_gpu *g, uint32_t id)
{
    static const mf_gpu_op ops[] = {MF_GPU_OP_DEQUANT, MF_GPU_OP_QMV,
                                    MF_GPU_OP_MOE_GATE_UP,
                                    MF_GPU_OP_MOE_DOWN};
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        mf_vk_plans *c = &g->plans[ops[o]];
        for (int i = 0; i < MF_VK_PLANS; i++)
            if (c->used[i] && binds(&c->slot[i], id))
                mf_vk_plans_drop(&g->vk, c, &c->slot[i]);
    }
    if (g->quant && g->quant->chains)
        mf_chain_plans_drop_id(g, g->quant->chains, id);
}
