/* mf_gating on the device (shaders/gating.comp). One workgroup per token
 * row. Indices equal the reference's: the softmax modes select on exactly
 * the reference's floats; in sigmoid mode the shader proves its selection
 * against bounds on the reference's libm scores and flags the rows it
 * cannot prove, which are recomputed here with the reference kernel. With
 * more than GATING_MAX_GROUPS groups every row takes that host path. */
#include <stdlib.h>
#include <string.h>

#include "../cpu/kernels.h"
#include "gpu_internal.h"
#include "shaders.h"

#define GATING_MAX_GROUPS 1024
/* Above this k the selection is kept in the output buffer (SELG), not in
 * the shader's 32-entry shared arrays. */
#define GATING_ROUNDS_MAX 32

typedef struct gating_key {
    int32_t mode, E, k, renorm, has_bias, G, topk_group;
    int32_t rank; /* rank_mode() when recorded */
    int32_t seqm; /* seq_merge() when recorded */
    uint32_t scale_bits;
    int64_t T;
} gating_key;

typedef struct gating_push {
    uint32_t T, E, k, renorm, has_bias, G, topk_group;
    float scale;
} gating_push;

static uint32_t pow2_at_least(uint32_t x)
{
    uint32_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

/* Every row by the reference (for shapes the shader does not take). */
static void host_rows(mf_gpu *g, const mf_gating_desc *d, const float *logits,
                      int64_t T, int32_t *idx, float *w, const uint32_t *flags)
{
    const mf_kernels *ref = mf_kernels_get(MF_ISA_SCALAR);
    const int64_t E = d->n_experts, k = d->k;
    for (int64_t r = 0; r < T; r++)
        if (!flags || flags[r]) {
            ref->gating_row(d, logits + r * E, idx + r * k, w + r * k,
                            g->scratch);
            g->gating_host_rows++;
        }
}

/* Selection by rank (one pass over the keys in shared memory) for
 * k > GATING_ROUNDS_MAX where the keys fit, else k workgroup arg-max
 * rounds. Rounds are faster at small k on the H200 (device time, same run:
 * Qwen3 E=128 k=8 8.22 vs 8.90 us, DeepSeek-V3 E=256 k=8 11.17 vs
 * 17.28 us, Mixtral E=8 k=2 6.21 vs 6.88 us: gpu-h200-gating-rank.txt).
 * MOEFUSE_GPU_GATING_RANK=1 ranks at every k, =0 runs the rounds at every
 * k (what a device with too little shared memory runs); the tests compare
 * both. Below the variable, the form gating_rank that the placement cache
 * measured for the shape (mf_gpu_forms_use) decides. Read when a plan is
 * recorded. */
static int rank_mode(const mf_vk *vk, uint32_t k)
{
    int f = mf_gpu_form(vk, MF_GPU_FORM_GATING_RANK); /* env, then forms */
    if (f != MF_GPU_FORM_AUTO)
        return f;
    return k > GATING_ROUNDS_MAX;
}

/* MOEFUSE_GPU_GATING_MERGE=seq: the groups' slices merged one after
 * another rather than by a subgroup butterfly (the same bits; for A/B
 * runs). Read when a plan is recorded. */
static uint32_t seq_merge(void)
{
    return (uint32_t)mf_gpu_env_is("MOEFUSE_GPU_GATING_MERGE", "seq");
}

/* The pipeline for a call's push constants and mode. */
static mf_status gating_pipe(mf_vk *vk, const gating_push *pc, int mode,
                             int mirror, const mf_vk_pipe **pipe)
{
    uint32_t E = pc->E, G = pc->G;
    /* MOEFUSE_GPU_GATING_WG=32..1024 overrides the workgroup size */
    uint32_t wg = mf_gpu_env_pow2("MOEFUSE_GPU_GATING_WG", 32, 1024);
    if (!wg) {
        /* 128 from 65 experts on (on the H200 0.3-0.5 us less device time
         * than 64 at E = 128 and 256, 256 was slower: gating-wg-h200.txt),
         * doubled to 256 while there are more than 4 experts an
         * invocation */
        wg = E > 64 ? 128 : 64;
        while (wg < 256 && wg * 4 < E)
            wg <<= 1;
    }
    while (wg < vk->subgroup_size)
        wg <<= 1;
    if (wg > vk->max_wg_size)
        return MF_ERR_UNSUPPORTED;
    uint32_t per = pow2_at_least((E + wg - 1) / wg);
    uint32_t gmax = G > 1 ? pow2_at_least(G) : 1;
    /* r_key, r_idx, s_sum; s_sel, s_selx, s_w; the group arrays (and the
     * slices' top-2 keys when several invocations share a group); flags */
    size_t shared = 32 * (size_t)wg + 3 * 4 * 32 + 16 * (size_t)gmax + 8;
    if (gmax > 1 && wg >= 2 * gmax)
        shared += 24 * (size_t)wg;
    if (shared > vk->shared_bytes)
        return MF_ERR_UNSUPPORTED;
    /* Sigmoid mode caches every expert's score and bounds where they fit
     * (else the shader computes them again where it needs them). */
    uint32_t scap = 1;
    if (mode == MF_GATING_SIGMOID_GROUPED &&
        shared + 12 * (size_t)wg * per <= vk->shared_bytes) {
        scap = wg * per;
        shared += 12 * (size_t)scap;
    }
    uint32_t rankn = 1;
    if (rank_mode(vk, pc->k) &&
        shared + 4 * (size_t)wg * per <= vk->shared_bytes) {
        rankn = wg * per;
        shared += 4 * (size_t)rankn;
    }
    /* The row's logits in shared memory where they also fit: read once. */
    uint32_t lcap = 1;
    if (shared + 4 * (size_t)wg * per <= vk->shared_bytes)
        lcap = wg * per;
    mf_vk_pipe_desc pd = {
        .shader = vk->subgroup_arith ? &mf_shader_gating_sg
                                     : &mf_shader_gating_sh,
        .n_bindings = 4,
        .push_bytes = sizeof *pc,
        .n_spec = 10,
        .spec = {wg, per, (uint32_t)mode, gmax, rankn, scap, lcap,
                 pc->k > GATING_ROUNDS_MAX, (uint32_t)mirror, seq_merge()},
    };
    return mf_vk_pipe_get(vk, &pd, pipe);
}

static mf_status build(mf_gpu *g, mf_vk_plan *pl, const gating_push *pc,
                       int mode)
{
    mf_vk *vk = &g->vk;
    uint32_t E = pc->E;
    const mf_vk_pipe *pipe;
    mf_status st = gating_pipe(vk, pc, mode, 0, &pipe);
    if (st != MF_OK)
        return st;
    size_t T = pc->T;
    int in = mf_vk_plan_io(vk, pl, (E + T * E) * sizeof(float), MF_VK_IN, &st);
    if (in < 0)
        return st;
    int out = mf_vk_plan_io(vk, pl, (2 * T * pc->k + T) * sizeof(uint32_t),
                            MF_VK_OUT, &st);
    if (out < 0)
        return st;
    st = mf_vk_prog_init(vk, &pl->prog, 1);
    if (st == MF_OK)
        st = mf_vk_prog_begin(vk, &pl->prog);
    if (st != MF_OK)
        return st;
    /* the bias at the start of in, before the logits; no mirror */
    mf_vk_bind b[4] = {{.buf = &pl->io[in].dev}, {.buf = &pl->io[out].dev},
                       {.buf = &pl->io[in].dev}, {.buf = &pl->io[out].dev}};
    uint32_t groups = T < vk->max_groups_x ? (uint32_t)T : vk->max_groups_x;
    mf_vk_cmd_upload(vk, &pl->prog, &pl->io[in]);
    mf_vk_cmd_dispatch(vk, &pl->prog, pipe, b, pc, groups, 1, 1);
    mf_vk_cmd_download(vk, &pl->prog, &pl->io[out]);
    st = mf_vk_prog_end(vk, &pl->prog);
    if (st == MF_OK)
        pl->ready = 1;
    return st;
}

mf_status mf_gpu_gating(mf_gpu *g, const mf_gating_desc *d,
                        const float *logits, int64_t T, int32_t *idx,
                        float *weights)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    const int32_t E = d->n_experts, k = d->k;
    const int sig = d->mode == MF_GATING_SIGMOID_GROUPED;
    const int32_t G = sig && d->n_group > 1 ? d->n_group : 1;
    if (G > GATING_MAX_GROUPS) {
        host_rows(g, d, logits, T, idx, weights, NULL);
        return MF_OK;
    }
    /* Bytes of the larger buffer against one binding's range. */
    if ((uint64_t)(E + T * E) * 4 > vk->max_binding ||
        (uint64_t)(2 * T * k + T) * 4 > vk->max_binding)
        return MF_ERR_DEVICE_OOM;

    gating_push pc = {
        .T = (uint32_t)T, .E = (uint32_t)E, .k = (uint32_t)k,
        .renorm = d->mode == MF_GATING_TOPK_SOFTMAX ? 0u
                                                    : (uint32_t)d->renormalize,
        .has_bias = d->bias != NULL, .G = (uint32_t)G,
        .topk_group = G > 1 ? (uint32_t)d->topk_group : 1u,
        .scale = d->scale,
    };
    gating_key key;
    memset(&key, 0, sizeof key);
    key.mode = (int32_t)d->mode;
    key.E = E;
    key.k = k;
    key.renorm = (int32_t)pc.renorm;
    key.has_bias = (int32_t)pc.has_bias;
    key.G = G;
    key.topk_group = (int32_t)pc.topk_group;
    memcpy(&key.scale_bits, &d->scale, 4);
    key.T = T;
    key.rank = rank_mode(&g->vk, (uint32_t)k);
    key.seqm = (int32_t)seq_merge();

    mf_vk_plans *c = &g->plans[MF_GPU_OP_GATING];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        st = build(g, pl, &pc, (int)d->mode);
        if (st != MF_OK) {
            mf_vk_plans_drop(vk, c, pl);
            return st;
        }
    }
    float *in = pl->io[0].map;
    if (d->bias)
        memcpy(in, d->bias, (size_t)E * sizeof(float));
    else
        memset(in, 0, (size_t)E * sizeof(float));
    memcpy(in + E, logits, (size_t)(T * E) * sizeof(float));
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    const uint32_t *out = pl->io[1].map;
    const size_t n = (size_t)(T * k);
    memcpy(idx, out, n * sizeof(int32_t));
    memcpy(weights, out + n, n * sizeof(float));
    g->gating_device_rows += T;
    if (sig)
        host_rows(g, d, logits, T, idx, weights, out + 2 * n);
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}

/* The gating dispatch of a call, recorded into another program (the MoE
 * chain, src/gpu/chain.c): in holds the logits [T, E] from float E on, bias
 * the bias [E] (zeros without one); out receives idx [T, k], w [T, k] and
 * the flags [T] of rows the host must recompute (sigmoid mode), and mirror
 * (when not NULL) the same words once each row is final. MF_ERR_UNSUPPORTED
 * for shapes the shader does not take. */
mf_status mf_gpu_gating_record(mf_gpu *g, mf_vk_prog *p,
                               const mf_gating_desc *d, int64_t T,
                               const mf_vk_bind *in, const mf_vk_bind *bias,
                               const mf_vk_bind *out, const mf_vk_bind *mirror)
{
    mf_vk *vk = &g->vk;
    const int sig = d->mode == MF_GATING_SIGMOID_GROUPED;
    const int32_t G = sig && d->n_group > 1 ? d->n_group : 1;
    if (G > GATING_MAX_GROUPS)
        return MF_ERR_UNSUPPORTED;
    gating_push pc = {
        .T = (uint32_t)T, .E = (uint32_t)d->n_experts, .k = (uint32_t)d->k,
        .renorm = d->mode == MF_GATING_TOPK_SOFTMAX ? 0u
                                                    : (uint32_t)d->renormalize,
        .has_bias = d->bias != NULL, .G = (uint32_t)G,
        .topk_group = G > 1 ? (uint32_t)d->topk_group : 1u,
        .scale = d->scale,
    };
    const mf_vk_pipe *pipe;
    mf_status st = gating_pipe(vk, &pc, (int)d->mode, mirror != NULL, &pipe);
    if (st != MF_OK)
        return st;
    mf_vk_bind b[4] = {*in, *out, *bias, mirror ? *mirror : *out};
    uint32_t groups = (uint64_t)T < vk->max_groups_x ? (uint32_t)T
                                                     : vk->max_groups_x;
    mf_vk_cmd_dispatch(vk, p, pipe, b, &pc, groups, 1, 1);
    return MF_OK;
}
