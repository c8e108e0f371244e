/* Helpers the quantized-weight ops share: format spec constants, the
 * thread layout of the matvec shaders, and dropping the plans that bind an
 * evicted tensor. */
#include <stdlib.h>
#include <string.h>

#include "../cpu/kernels.h"
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

int mf_gpu_env_is(const char *name, const char *value)
{
    const char *e = getenv(name);
    return e && strcmp(e, value) == 0;
}

uint32_t mf_gpu_env_pow2(const char *name, uint32_t lo, uint32_t hi)
{
    const char *e = getenv(name);
    long v = e ? strtol(e, NULL, 10) : 0;
    if (v < (long)lo || v > (long)hi || (v & (v - 1)) != 0)
        return 0;
    return (uint32_t)v;
}

uint32_t mf_qlanes(const mf_vk *vk, uint32_t nb)
{
    uint32_t cap = 32;
    if (mf_quse_subgroup(vk) && vk->subgroup_size < cap)
        cap = vk->subgroup_size;
    uint32_t want = mf_gpu_env_pow2("MOEFUSE_GPU_QLANES", 1, 32);
    if (want)
        return want < cap ? want : cap;
    uint32_t l = 1;
    while (l < cap && l < nb)
        l <<= 1;
    return l;
}

uint32_t mf_qlanes_gu_i8(const mf_vk *vk, uint32_t nb)
{
    uint32_t l = mf_qlanes(vk, nb);
    if (!mf_gpu_env_pow2("MOEFUSE_GPU_QLANES", 1, 32) && l > 16)
        l = 16;
    return l;
}

uint32_t mf_qrpw(uint64_t rows, uint32_t groups_per_wg, uint64_t other)
{
    uint32_t want = mf_gpu_env_pow2("MOEFUSE_GPU_QRPW", 1, 8);
    if (want)
        return want;
    /* 4 only when even then the device has work to spare (many tokens),
     * else 2 while the dispatch keeps MF_QMIN_GROUPS workgroups */
    for (uint32_t rpw = 4; rpw > 1; rpw >>= 1) {
        uint64_t per = (uint64_t)groups_per_wg * rpw;
        uint64_t wgs = (rows + per - 1) / per * other;
        if (wgs >= (rpw == 4 ? 8 * MF_QMIN_GROUPS : MF_QMIN_GROUPS))
            return rpw;
    }
    uint32_t rpw = 1;
    return rpw;
}

uint32_t mf_qgroup(uint64_t pairs, uint64_t experts, uint64_t min_mean,
                   int form)
{
    const char *e = getenv("MOEFUSE_GPU_MOE_GROUP");
    if (e && strcmp(e, "0") == 0)
        return 0;
    uint32_t want = mf_gpu_env_pow2("MOEFUSE_GPU_MOE_GROUP", 1, 16);
    if (want)
        return want;
    if (form == 0 || form == 1)
        return form ? 4 : 0;
    if (min_mean == 0 || experts == 0 || pairs < min_mean * experts)
        return 0;
    return 4;
}

void mf_qgroup_fit(const mf_vk *vk, int subgroup, uint32_t wg, uint32_t per,
                   size_t words, uint32_t *m, uint32_t *rpw)
{
    for (;;) {
        uint64_t sums = (uint64_t)per * *m * *rpw;
        uint64_t bytes = 4 * ((subgroup ? 0 : sums * wg) + words);
        if (32 * (uint64_t)*m + sums <= MF_QGROUP_FLOATS &&
            bytes <= vk->shared_bytes)
            return;
        if (*rpw > 1)
            *rpw >>= 1;
        else if (*m > 1)
            *m >>= 1;
        else {
            *m = 0;
            return;
        }
    }
}

int mf_qint8(const mf_vk *vk, mf_precision prec, const mf_tensor *const *w,
             int n)
{
    if (prec != MF_PREC_INT8 || !vk->int_dot)
        return 0;
    for (int i = 0; i < n; i++)
        if (!mf_type_quantized(w[i]->type))
            return 0;
    return 1;
}

uint32_t mf_qkb(const mf_vk *vk, uint32_t nb, uint32_t rows, size_t other)
{
    if (other >= vk->shared_bytes || rows == 0)
        return 0;
    size_t cap = vk->shared_bytes - other;
    if (cap > 16384)
        cap = 16384;
    size_t fit = cap / ((size_t)MF_QI8_BLOCK_BYTES * rows);
    uint32_t test_kb = mf_gpu_env_pow2("MOEFUSE_GPU_I8_KB", 32, 1024);
    if (test_kb && test_kb < fit)
        fit = test_kb;
    if (fit >= nb)
        return nb;
    if (fit >= 32)
        fit &= ~(size_t)31;
    return (uint32_t)fit;
}

uint32_t mf_qxkb(const mf_vk *vk, uint32_t nb, uint32_t m, uint32_t tpr,
                 size_t other)
{
    if (m == 0 || tpr == 0 || nb == 0 || other >= vk->shared_bytes)
        return 0;
    size_t cap = vk->shared_bytes - other;
    if (cap > 24576)
        cap = 24576;
    const size_t per = (size_t)16 * 8 * m; /* bytes per staged block */
    const size_t fit = cap / per;
    if (fit == 0)
        return 0;
    /* the most blocks kb with (kb | 1) blocks' staging in cap */
    size_t kb = (fit & 1) ? fit : fit - 1;
    const uint32_t test_kb = mf_gpu_env_pow2("MOEFUSE_GPU_XKB", 1, 1024);
    if (test_kb && test_kb < kb)
        kb = test_kb > tpr ? test_kb : (tpr < kb ? tpr : kb);
    if (kb >= nb)
        return nb;
    kb -= kb % tpr;
    return kb >= tpr ? (uint32_t)kb : 0;
}

uint32_t mf_qwg_i8(const mf_vk *vk)
{
    uint32_t wg = mf_gpu_env_pow2("MOEFUSE_GPU_QWG", 32, 1024);
    if (!wg)
        wg = 256;
    return vk->max_wg_size < wg ? vk->max_wg_size : wg;
}

uint32_t mf_qwg(const mf_vk *vk)
{
    uint32_t wg = mf_gpu_env_pow2("MOEFUSE_GPU_QWG", 32, 1024);
    if (!wg)
        wg = 128;
    return vk->max_wg_size < wg ? vk->max_wg_size : wg;
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
