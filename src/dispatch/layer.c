/* mf_moe_layer: router matvec -> gating -> gate/up/GLU -> down/combine
 * (+ shared expert, + residual), each step through the public ops so every
 * impl (reference, unfused, CPU sets, GPU, routed) runs the same chain.
 * Without a shared expert, MF_IMPL_GPU (and AUTO when the router places the
 * whole chain on the GPU) records the four steps into one GPU submit
 * instead (src/gpu/chain.c). */
#include <stdlib.h>
#include <string.h>

#include "costmodel.h"
#include "internal.h"

#define CHAIN_MEMO 8

struct mf_moe_layer {
    mf_ctx *ctx;
    mf_moe_config cfg;
    mf_moe_weights w;
    /* scratch, grown to T rows */
    int64_t cap_T, last_T;
    float *logits;  /* [T, E] */
    int32_t *idx;   /* [T, k] */
    float *wts;     /* [T, k] */
    float *h;       /* [T, k, F] */
    float *sgu;     /* [T, 2 Fs] shared gate | up */
    float *sh;      /* [T, Fs] */
    float *sres;    /* [T, H] shared output (+ residual) */
    /* AUTO's whole-chain decisions per T (use_chain), valid while the
     * context's placement_gen is memo_gen: routing the chain costs more
     * than a microsecond, a T = 1 GPU step ~80 us */
    int64_t memo_T[CHAIN_MEMO];
    int memo_use[CHAIN_MEMO], memo_n, memo_next;
    uint64_t memo_gen;
};

static int tensor_is(const mf_tensor *t, int64_t e, int64_t n, int64_t k)
{
    return mf_tensor_check(t) == MF_OK && t->e == e && t->n == n && t->k == k;
}

static mf_status check_config(const mf_moe_config *c)
{
    if (c->hidden < 1 || c->hidden > MF_MAX_DIM || c->expert_ffn < 1 ||
        c->expert_ffn > MF_MAX_DIM || c->n_experts < 1 ||
        c->n_experts > MF_MAX_E || c->top_k < 1 || c->top_k > c->n_experts ||
        (unsigned)c->router >= MF_GATING_MODE_COUNT_ ||
        (unsigned)c->glu >= MF_GLU_KIND_COUNT_ ||
        (unsigned)c->gate_up_layout >= MF_GLU_LAYOUT_COUNT_ ||
        c->n_shared < 0 || c->n_shared > 1 ||
        (c->n_shared && (c->shared_ffn < 1 || c->shared_ffn > MF_MAX_DIM)))
        return MF_ERR_INVALID_ARG;
    if (c->correction_bias && c->router != MF_GATING_SIGMOID_GROUPED)
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

static mf_status check_weights(const mf_moe_config *c, const mf_moe_weights *w)
{
    int64_t H = c->hidden, F = c->expert_ffn, E = c->n_experts;
    if (!tensor_is(&w->router, 1, E, H))
        return MF_ERR_INVALID_ARG;
    if (!c->router_bias != !w->router_bias ||
        !c->correction_bias != !w->correction_bias ||
        !c->expert_bias != !w->gate_bias || !c->expert_bias != !w->down_bias ||
        (c->expert_bias && (c->gate_up_layout == MF_GLU_SEPARATE) != !!w->up_bias))
        return MF_ERR_INVALID_ARG;
    if (c->gate_up_layout == MF_GLU_SEPARATE) {
        if (!tensor_is(&w->gate, E, F, H) || !tensor_is(&w->up, E, F, H) ||
            w->up.type != w->gate.type)
            return MF_ERR_INVALID_ARG;
    } else if (!tensor_is(&w->gate, E, 2 * F, H) || w->up.data) {
        return MF_ERR_INVALID_ARG;
    }
    if (!tensor_is(&w->down, E, H, F))
        return MF_ERR_INVALID_ARG;
    if (c->n_shared) {
        int64_t Fs = c->shared_ffn;
        if (!tensor_is(&w->shared_gate, 1, Fs, H) ||
            !tensor_is(&w->shared_up, 1, Fs, H) ||
            !tensor_is(&w->shared_down, 1, H, Fs))
            return MF_ERR_INVALID_ARG;
    } else if (w->shared_gate.data || w->shared_up.data || w->shared_down.data) {
        return MF_ERR_INVALID_ARG;
    }
    return MF_OK;
}

mf_status mf_moe_layer_create(mf_ctx *ctx, const mf_moe_config *cfg,
                              const mf_moe_weights *w, mf_moe_layer **out)
{
    if (!ctx || !cfg || !w || !out)
        return MF_ERR_INVALID_ARG;
    mf_status st = check_config(cfg);
    if (st == MF_OK)
        st = check_weights(cfg, w);
    if (st != MF_OK)
        return st;
    mf_moe_layer *l = calloc(1, sizeof *l);
    if (!l)
        return MF_ERR_OUT_OF_MEMORY;
    l->ctx = ctx;
    l->cfg = *cfg;
    l->w = *w;
    *out = l;
    return MF_OK;
}

static void free_scratch(mf_moe_layer *l)
{
    free(l->logits);
    free(l->idx);
    free(l->wts);
    free(l->h);
    free(l->sgu);
    free(l->sh);
    free(l->sres);
    l->logits = l->wts = l->h = l->sgu = l->sh = l->sres = NULL;
    l->idx = NULL;
    l->cap_T = 0;
}

void mf_moe_layer_destroy(mf_moe_layer *l)
{
    if (!l)
        return;
    free_scratch(l);
    free(l);
}

static mf_status grow(mf_moe_layer *l, int64_t T)
{
    if (T <= l->cap_T)
        return MF_OK;
    const mf_moe_config *c = &l->cfg;
    size_t t = (size_t)T, k = (size_t)c->top_k, Fs = (size_t)c->shared_ffn;
    float *logits = malloc(t * (size_t)c->n_experts * sizeof(float));
    int32_t *idx = malloc(t * k * sizeof(int32_t));
    float *wts = malloc(t * k * sizeof(float));
    float *h = malloc(t * k * (size_t)c->expert_ffn * sizeof(float));
    float *sgu = c->n_shared ? malloc(t * 2 * Fs * sizeof(float)) : NULL;
    float *sh = c->n_shared ? malloc(t * Fs * sizeof(float)) : NULL;
    float *sres = c->n_shared ? malloc(t * (size_t)c->hidden * sizeof(float)) : NULL;
    if (!logits || !idx || !wts || !h || (c->n_shared && (!sgu || !sh || !sres))) {
        free(logits), free(idx), free(wts), free(h), free(sgu), free(sh), free(sres);
        return MF_ERR_OUT_OF_MEMORY;
    }
    free_scratch(l);
    l->logits = logits, l->idx = idx, l->wts = wts, l->h = h;
    l->sgu = sgu, l->sh = sh, l->sres = sres;
    l->cap_T = T;
    l->last_T = 0;
    return MF_OK;
}

/* Shared expert: sres = down(swiglu(gate x, up x)) (+ residual). */
static mf_status shared_expert(mf_moe_layer *l, const mf_moe_run *r,
                               const float *x, int64_t T,
                               const float *residual)
{
    const mf_moe_config *c = &l->cfg;
    int64_t Fs = c->shared_ffn, H = c->hidden;
    mf_qmv_desc q = {.impl = r->impl, .prec = r->prec};
    float *g = l->sgu, *u = l->sgu + (size_t)(T * Fs);
    mf_status st = mf_qmv(l->ctx, &q, &l->w.shared_gate, x, T, g);
    if (st == MF_OK)
        st = mf_qmv(l->ctx, &q, &l->w.shared_up, x, T, u);
    if (st != MF_OK)
        return st;
    mf_glu_desc gd = {.impl = r->impl, .kind = MF_GLU_SWIGLU,
                      .layout = MF_GLU_SEPARATE, .in_type = MF_TYPE_F32,
                      .out_type = MF_TYPE_F32};
    st = mf_glu(l->ctx, &gd, T, Fs, g, u, l->sh);
    if (st == MF_OK)
        st = mf_qmv(l->ctx, &q, &l->w.shared_down, l->sh, T, l->sres);
    if (st != MF_OK || !residual)
        return st;
    for (size_t i = 0; i < (size_t)(T * H); i++)
        l->sres[i] += residual[i];
    return MF_OK;
}

static int route_whole_chain(const mf_moe_layer *l, int64_t T,
                             double *submit_us, double *ops_us);

/* Whether forward runs the whole block as one GPU chain (router qmv ->
 * gating -> gate/up -> down/combine in one submit, src/gpu/chain.c): with
 * MF_IMPL_GPU, or MF_IMPL_AUTO when the router places all four steps on
 * the GPU in one submit group; never with a shared expert. */
static int use_chain(mf_moe_layer *l, const mf_moe_run *r, int64_t T)
{
    const mf_moe_config *c = &l->cfg;
    mf_ctx *ctx = l->ctx;
    if (c->n_shared || !ctx->gpu || !mf_gpu_usable(ctx->gpu))
        return 0;
    if (r->impl == MF_IMPL_GPU)
        return 1;
    if (r->impl != MF_IMPL_AUTO)
        return 0;
    if (l->memo_gen != ctx->placement_gen) {
        l->memo_n = l->memo_next = 0;
        l->memo_gen = ctx->placement_gen;
    }
    for (int i = 0; i < l->memo_n; i++)
        if (l->memo_T[i] == T)
            return l->memo_use[i];
    int use = route_whole_chain(l, T, NULL, NULL);
    l->memo_T[l->memo_next] = T;
    l->memo_use[l->memo_next] = use;
    l->memo_next = (l->memo_next + 1) % CHAIN_MEMO;
    if (l->memo_n < CHAIN_MEMO)
        l->memo_n++;
    return use;
}

/* The router's verdict: the four steps as one GPU submit rather than op by
 * op. Op by op, every call is routed on its own and every GPU call is its
 * own submit, so the comparison is with that (mf_route_one_submit), not with
 * the chain plan's best split: a plan that keeps the router and gating on
 * the CPU and groups gate_up and down_combine in one GPU submit is not what
 * the op-by-op path runs (on the H100 at Qwen3-30B-A3B shapes it ran 1.15x
 * slower at T = 1 and 1.23x at T = 32 than the one submit,
 * layer-h100-qwen3-fd0f299.txt). */
static int route_whole_chain(const mf_moe_layer *l, int64_t T,
                             double *submit_us, double *ops_us)
{
    const mf_moe_config *c = &l->cfg;
    mf_ctx *ctx = l->ctx;
    mf_op_shape s[4] = {
        {.op = MF_OP_QMV, .T = T, .E = 1, .N = c->n_experts, .K = c->hidden,
         .wtype = l->w.router.type, .mode = MF_PREC_EXACT},
        {.op = MF_OP_GATING, .T = T, .E = c->n_experts, .k = c->top_k,
         .wtype = MF_TYPE_F32, .mode = (int)c->router},
        {.op = MF_OP_MOE_GATE_UP, .T = T, .E = c->n_experts, .k = c->top_k,
         .N = c->expert_ffn, .K = c->hidden, .wtype = l->w.gate.type,
         .mode = (int)c->glu},
        {.op = MF_OP_MOE_DOWN, .T = T, .E = c->n_experts, .k = c->top_k,
         .N = c->hidden, .K = c->expert_ffn, .wtype = l->w.down.type}};
    return mf_route_one_submit(ctx->placement, ctx->gpu != NULL, s, 4,
                               submit_us, ops_us) == 1;
}

mf_status mf_moe_layer_explain(const mf_moe_layer *l, int64_t T,
                               int *one_submit, double *submit_us,
                               double *ops_us)
{
    if (!l || T < 1 || T > MF_MAX_T)
        return MF_ERR_INVALID_ARG;
    double sub = -1, ops = -1;
    int one = 0;
    const mf_ctx *ctx = l->ctx;
    if (!l->cfg.n_shared && ctx->gpu && mf_gpu_usable(ctx->gpu))
        one = route_whole_chain(l, T, &sub, &ops);
    if (one_submit)
        *one_submit = one;
    if (submit_us)
        *submit_us = sub;
    if (ops_us)
        *ops_us = ops;
    return MF_OK;
}

/* The block as one GPU chain; idx and weights land in the scratch for
 * mf_moe_layer_last_routing. */
static mf_status chain_forward(mf_moe_layer *l, const float *x, int64_t T,
                               const float *residual, float *y)
{
    const mf_moe_config *c = &l->cfg;
    int sep = c->gate_up_layout == MF_GLU_SEPARATE;
    mf_gating_desc gd = {.impl = MF_IMPL_GPU, .mode = c->router,
                         .n_experts = c->n_experts, .k = c->top_k,
                         .renormalize = c->renormalize,
                         .bias = l->w.correction_bias, .n_group = c->n_group,
                         .topk_group = c->topk_group, .scale = c->routed_scale};
    mf_moe_gate_up_desc gu = {
        .impl = MF_IMPL_GPU, .glu = c->glu, .limit = c->glu_limit,
        .alpha = c->glu_alpha, .layout = c->gate_up_layout,
        .w_gate = &l->w.gate, .w_up = sep ? &l->w.up : NULL,
        .b_gate = l->w.gate_bias, .b_up = l->w.up_bias};
    mf_moe_down_desc dd = {.impl = MF_IMPL_GPU, .w_down = &l->w.down,
                           .b_down = l->w.down_bias};
    mf_gpu_chain_desc cd = {.router = &l->w.router,
                            .router_bias = l->w.router_bias, .gating = &gd,
                            .gate_up = &gu, .down = &dd};
    const mf_op_shape fs[3] = {
        {.op = MF_OP_GATING, .T = T, .E = c->n_experts, .k = c->top_k,
         .mode = (int)c->router},
        {.op = MF_OP_MOE_GATE_UP, .T = T, .E = c->n_experts, .k = c->top_k,
         .N = c->expert_ffn, .K = c->hidden, .wtype = l->w.gate.type,
         .mode = (int)c->glu},
        {.op = MF_OP_MOE_DOWN, .T = T, .E = c->n_experts, .k = c->top_k,
         .N = c->hidden, .K = c->expert_ffn, .wtype = l->w.down.type}};
    mf_ctx_gpu_forms_n(l->ctx, fs, 3);
    return mf_gpu_moe_chain(l->ctx->gpu, &cd, x, NULL, T, residual, y, l->idx,
                            l->wts, NULL);
}

mf_status mf_moe_layer_forward(mf_moe_layer *l, const mf_moe_run *run,
                               const float *x, int64_t T,
                               const float *residual, float *y)
{
    if (!l || !x || !y || T < 1 || T > MF_MAX_T)
        return MF_ERR_INVALID_ARG;
    mf_moe_run r = run ? *run : (mf_moe_run){MF_IMPL_AUTO, MF_PREC_EXACT};
    if ((unsigned)r.impl >= MF_IMPL_COUNT_ || (unsigned)r.prec >= MF_PREC_COUNT_)
        return MF_ERR_INVALID_ARG;
    const mf_moe_config *c = &l->cfg;
    size_t xy = (size_t)T * (size_t)c->hidden * sizeof(float);
    if (mf_overlap(x, xy, y, xy) || (residual && residual != y &&
                                     mf_overlap(residual, xy, y, xy)))
        return MF_ERR_INVALID_ARG;
    mf_status st = grow(l, T);
    if (st != MF_OK)
        return st;
    l->last_T = 0;
    if (use_chain(l, &r, T)) {
        st = chain_forward(l, x, T, residual, y);
        if (st == MF_OK)
            l->last_T = T;
        /* Shapes the chain does not take run op by op; so does an AUTO
         * call after a device failure (the ops then fall back to the CPU). */
        if (st == MF_OK ||
            (st != MF_ERR_UNSUPPORTED &&
             (r.impl == MF_IMPL_GPU ||
              (st != MF_ERR_DEVICE && st != MF_ERR_DEVICE_LOST &&
               st != MF_ERR_DEVICE_OOM))))
            return st;
    }

    mf_qmv_desc rq = {.impl = r.impl, .prec = MF_PREC_EXACT,
                      .bias = l->w.router_bias};
    st = mf_qmv(l->ctx, &rq, &l->w.router, x, T, l->logits);
    if (st != MF_OK)
        return st;
    mf_gating_desc gd = {.impl = r.impl, .mode = c->router,
                         .n_experts = c->n_experts, .k = c->top_k,
                         .renormalize = c->renormalize,
                         .bias = l->w.correction_bias, .n_group = c->n_group,
                         .topk_group = c->topk_group, .scale = c->routed_scale};
    st = mf_gating(l->ctx, &gd, l->logits, T, l->idx, l->wts);
    if (st != MF_OK)
        return st;
    int sep = c->gate_up_layout == MF_GLU_SEPARATE;
    mf_moe_gate_up_desc gu = {
        .impl = r.impl, .prec = r.prec, .glu = c->glu, .limit = c->glu_limit,
        .alpha = c->glu_alpha, .layout = c->gate_up_layout,
        .w_gate = &l->w.gate, .w_up = sep ? &l->w.up : NULL,
        .b_gate = l->w.gate_bias, .b_up = l->w.up_bias};
    st = mf_moe_gate_up(l->ctx, &gu, T, c->top_k, x, l->idx, l->h);
    if (st != MF_OK)
        return st;
    const float *res = residual;
    if (c->n_shared) {
        st = shared_expert(l, &r, x, T, residual);
        if (st != MF_OK)
            return st;
        res = l->sres;
    }
    mf_moe_down_desc dd = {.impl = r.impl, .prec = r.prec,
                           .w_down = &l->w.down, .b_down = l->w.down_bias};
    st = mf_moe_down_combine(l->ctx, &dd, T, c->top_k, l->h, l->idx, l->wts,
                             res, y);
    if (st == MF_OK)
        l->last_T = T;
    return st;
}

const int32_t *mf_moe_layer_last_routing(const mf_moe_layer *l,
                                         const float **weights, int64_t *T)
{
    if (!l || !l->last_T)
        return NULL;
    if (weights)
        *weights = l->wts;
    if (T)
        *T = l->last_T;
    return l->idx;
}
