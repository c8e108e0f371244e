/* mf_moe_gate_up: validation, impl resolution and the fused CPU run.
 *
 * Fusion plan: the (token, slot) pairs are grouped by expert, so the tokens
 * routed to one expert share a single pass over its rows (one kernel call
 * with M = their count, x rows passed by pointer, never copied). The output
 * columns of all selected experts, expert after expert, form one range that
 * is split evenly across threads: every expert's gate and up rows are the
 * same size, so equal column counts stream equal bytes. A thread walks its
 * range in blocks of GU_BLOCK columns: gate and up dot products of the block
 * land in stack buffers, get their biases, go through the glu kernel and are
 * written to h. INT8 quantizes each x row once per call, before the split. */
#include <math.h>

#include "../cpu/unfused/unfused.h"
#include "moe_plan.h"

/* Output columns per block: the f32 gate/up results of a block for
 * MF_MOE_MCHUNK tokens (3 * 16 * 32 floats = 6 KiB) stay in L1. */
#define GU_BLOCK 32

/* Below this many weight bytes a call runs on one thread: waking the pool
 * and joining costs about as much as streaming this much. */
#define GU_MIN_PARALLEL_BYTES (96 * 1024)

typedef struct gu_job {
    const mf_kernels *kern;
    mf_glu_desc glu;       /* F32 in and out, defaults resolved */
    mf_glu_layout layout;  /* row layout of the weights */
    const mf_tensor *wg, *wu;
    const float *bg, *bu;
    int64_t H, F;
    int32_t k;
    const float *x;
    const mf_q8blk *xq;    /* INT8: [T, H / 32] blocks; NULL for EXACT */
    float *h;
    const mf_moe_groups *g;
    int64_t units;         /* n_groups * F output columns */
} gu_job;

/* Dot products of rows [r0, r0 + nr) of w with the M activation rows of
 * pairs pair[0 .. M). */
static void gu_dot(const gu_job *jb, const mf_tensor *w, int64_t r0,
                   int64_t nr, const int32_t *pair, int M, float *const *y)
{
    int64_t H = jb->H;
    if (jb->xq) {
        const mf_q8blk *xs[MF_MOE_MCHUNK];
        for (int m = 0; m < M; m++)
            xs[m] = jb->xq + (pair[m] / jb->k) * (H / 32);
        jb->kern->qdot_q8(w, r0, nr, xs, M, y);
    } else {
        const float *xs[MF_MOE_MCHUNK];
        for (int m = 0; m < M; m++)
            xs[m] = jb->x + (pair[m] / jb->k) * H;
        jb->kern->qdot(w, r0, nr, xs, M, y);
    }
}

static void add_bias(float *y, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += b[i];
}

/* Columns [n0, n1) of group gi, for all of its pairs. */
static void gu_segment(const gu_job *jb, int32_t gi, int64_t n0, int64_t n1)
{
    const mf_moe_groups *g = jb->g;
    const int64_t e = g->expert[gi], F = jb->F;
    const int32_t s0 = g->start[gi], s1 = g->start[gi + 1];
    float gbuf[MF_MOE_MCHUNK * 2 * GU_BLOCK];
    float ubuf[MF_MOE_MCHUNK * GU_BLOCK];
    float *gy[MF_MOE_MCHUNK], *uy[MF_MOE_MCHUNK];
    for (int m = 0; m < MF_MOE_MCHUNK; m++) {
        gy[m] = gbuf + m * 2 * GU_BLOCK;
        uy[m] = ubuf + m * GU_BLOCK;
    }
    for (int64_t b0 = n0; b0 < n1; b0 += GU_BLOCK) {
        int64_t nb = n1 - b0 < GU_BLOCK ? n1 - b0 : GU_BLOCK;
        for (int32_t c0 = s0; c0 < s1; c0 += MF_MOE_MCHUNK) {
            int M = s1 - c0 < MF_MOE_MCHUNK ? s1 - c0 : MF_MOE_MCHUNK;
            const int32_t *pair = g->pair + c0;
            switch (jb->layout) {
            case MF_GLU_SEPARATE:
                gu_dot(jb, jb->wg, e * F + b0, nb, pair, M, gy);
                gu_dot(jb, jb->wu, e * F + b0, nb, pair, M, uy);
                for (int m = 0; m < M; m++) {
                    if (jb->bg)
                        add_bias(gy[m], jb->bg + e * F + b0, nb);
                    if (jb->bu)
                        add_bias(uy[m], jb->bu + e * F + b0, nb);
                }
                break;
            case MF_GLU_CONCAT:
                gu_dot(jb, jb->wg, e * 2 * F + b0, nb, pair, M, gy);
                gu_dot(jb, jb->wg, e * 2 * F + F + b0, nb, pair, M, uy);
                for (int m = 0; m < M && jb->bg; m++) {
                    add_bias(gy[m], jb->bg + e * 2 * F + b0, nb);
                    add_bias(uy[m], jb->bg + e * 2 * F + F + b0, nb);
                }
                break;
            default: /* INTERLEAVED: gate and up rows alternate */
                gu_dot(jb, jb->wg, e * 2 * F + 2 * b0, 2 * nb, pair, M, gy);
                for (int m = 0; m < M && jb->bg; m++)
                    add_bias(gy[m], jb->bg + e * 2 * F + 2 * b0, 2 * nb);
                break;
            }
            for (int m = 0; m < M; m++)
                jb->kern->glu(&jb->glu, 0, nb, gy[m],
                              jb->layout == MF_GLU_INTERLEAVED ? NULL : uy[m],
                              jb->h + (int64_t)pair[m] * F + b0);
        }
    }
}

static void gu_task(void *arg, int i, int n)
{
    const gu_job *jb = arg;
    int64_t lo, hi;
    mf_split(jb->units, n, i, 16, &lo, &hi);
    while (lo < hi) {
        int32_t gi = (int32_t)(lo / jb->F);
        int64_t end = ((int64_t)gi + 1) * jb->F;
        if (end > hi)
            end = hi;
        gu_segment(jb, gi, lo - gi * jb->F, end - gi * jb->F);
        lo = end;
    }
}

static int is_quantized(mf_type t)
{
    return t == MF_TYPE_Q4_0 || t == MF_TYPE_Q8_0 || t == MF_TYPE_MLX_Q4 ||
           t == MF_TYPE_MLX_Q8;
}

static mf_status check(const mf_moe_gate_up_desc *d, int64_t T, int32_t k,
                       const float *x, const int32_t *idx, const float *h,
                       int64_t *F_out)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (unsigned)d->prec >= MF_PREC_COUNT_ ||
        (unsigned)d->glu >= MF_GLU_KIND_COUNT_ ||
        (unsigned)d->layout >= MF_GLU_LAYOUT_COUNT_)
        return MF_ERR_INVALID_ARG;
    if (d->glu == MF_GLU_SWIGLU_OAI &&
        (!isfinite(d->limit) || d->limit < 0 || !isfinite(d->alpha)))
        return MF_ERR_INVALID_ARG;
    if (!x || !idx || !h || !d->w_gate || T < 1 || T > MF_MAX_T || k < 1)
        return MF_ERR_INVALID_ARG;
    const mf_tensor *wg = d->w_gate, *wu = d->w_up;
    mf_status st = mf_tensor_check(wg);
    if (st != MF_OK)
        return st;
    int64_t E = wg->e, H = wg->k, F;
    if (E > MF_MAX_E || k > E)
        return MF_ERR_INVALID_ARG;
    if (d->layout == MF_GLU_SEPARATE) {
        if (!wu)
            return MF_ERR_INVALID_ARG;
        st = mf_tensor_check(wu);
        if (st != MF_OK)
            return st;
        if (wu->type != wg->type || wu->e != E || wu->n != wg->n ||
            wu->k != H)
            return MF_ERR_INVALID_ARG;
        F = wg->n;
    } else {
        if (wu || d->b_up || wg->n % 2)
            return MF_ERR_INVALID_ARG;
        F = wg->n / 2;
    }
    size_t pairs, xb, hb, bb;
    if (!mf_mul_size((size_t)T, (size_t)k, &pairs) ||
        !mf_mul_size((size_t)T * (size_t)H, 4, &xb) ||
        !mf_mul_size(pairs * (size_t)F, 4, &hb) ||
        !mf_mul_size((size_t)E * (size_t)wg->n, 4, &bb))
        return MF_ERR_INVALID_ARG;
    if (!mf_moe_idx_valid(idx, (int64_t)pairs, E))
        return MF_ERR_INVALID_ARG;
    if (mf_overlap(h, hb, x, xb) || mf_overlap(h, hb, idx, pairs * 4) ||
        mf_overlap(h, hb, d->b_gate, d->b_gate ? bb : 0) ||
        mf_overlap(h, hb, d->b_up, d->b_up ? bb : 0) ||
        mf_moe_tensor_overlaps(wg, h, hb) ||
        (wu && mf_moe_tensor_overlaps(wu, h, hb)))
        return MF_ERR_INVALID_ARG;
    *F_out = F;
    return MF_OK;
}

static mf_status run_cpu(const mf_exec *ex, const mf_moe_gate_up_desc *d,
                         int64_t T, int32_t k, int64_t F, const float *x,
                         const int32_t *idx, float *h)
{
    const mf_tensor *wg = d->w_gate;
    const int64_t E = wg->e, H = wg->k, n_pairs = T * k;
    const int int8 = d->prec == MF_PREC_INT8 && is_quantized(wg->type);

    _Alignas(64) unsigned char stack[MF_MOE_STACK_BYTES];
    mf_moe_carve c = {0};
    int ok = 1;
    size_t q8_bytes = int8 ? (size_t)(T * (H / 32)) * sizeof(mf_q8blk) : 0;
    mf_moe_take(&c, mf_moe_groups_bytes(n_pairs, E), &ok);
    mf_moe_take(&c, q8_bytes, &ok);
    if (!ok)
        return MF_ERR_OUT_OF_MEMORY;
    void *heap;
    c.base = mf_moe_scratch_get(c.used, stack, &heap);
    if (!c.base)
        return MF_ERR_OUT_OF_MEMORY;
    c.used = 0;
    void *gmem = mf_moe_take(&c, mf_moe_groups_bytes(n_pairs, E), &ok);
    mf_q8blk *xq = int8 ? mf_moe_take(&c, q8_bytes, &ok) : NULL;

    mf_moe_groups g;
    mf_moe_groups_build(idx, n_pairs, E, gmem, &g);
    if (xq)
        for (int64_t t = 0; t < T; t++)
            ex->kern->quantize_q8(x + t * H, H, xq + t * (H / 32));

    gu_job jb = {
        .kern = ex->kern,
        .glu = {.impl = MF_IMPL_AUTO, .kind = d->glu, .layout = MF_GLU_SEPARATE,
                .in_type = MF_TYPE_F32, .out_type = MF_TYPE_F32,
                .limit = d->limit != 0 ? d->limit : 7.0f,
                .alpha = d->alpha != 0 ? d->alpha : 1.702f},
        .layout = d->layout,
        .wg = wg,
        .wu = d->layout == MF_GLU_SEPARATE ? d->w_up : wg,
        .bg = d->b_gate,
        .bu = d->b_up,
        .H = H, .F = F, .k = k,
        .x = x, .xq = xq, .h = h,
        .g = &g,
        .units = (int64_t)g.n_groups * F,
    };
    if (d->layout == MF_GLU_INTERLEAVED)
        jb.glu.layout = MF_GLU_INTERLEAVED;

    size_t bytes = (size_t)jb.units *
                   (mf_moe_row_cost(jb.wg) + mf_moe_row_cost(jb.wu));
    int64_t tasks = jb.units / 16;
    if (bytes < GU_MIN_PARALLEL_BYTES || tasks < 1)
        tasks = 1;
    mf_exec_parallel(ex, tasks > ex->threads ? ex->threads : (int)tasks,
                     gu_task, &jb);
    mf_moe_scratch_free(heap);
    return MF_OK;
}

mf_status mf_moe_gate_up(mf_ctx *ctx, const mf_moe_gate_up_desc *d, int64_t T,
                         int32_t k, const float *x, const int32_t *idx,
                         float *h)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    int64_t F;
    mf_status st = check(d, T, k, x, idx, h, &F);
    if (st != MF_OK)
        return st;
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        return mf_unfused_moe_gate_up(d, T, k, x, idx, h);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        return mf_gpu_moe_gate_up(ctx->gpu, d, T, k, x, idx, h);
    case MF_IMPL_AUTO: {
        mf_op_shape s = {.op = MF_OP_MOE_GATE_UP, .T = T, .E = d->w_gate->e,
                         .k = k, .N = F, .K = d->w_gate->k,
                         .wtype = d->w_gate->type, .mode = (int)d->glu};
        if (mf_route_gpu(ctx, &s)) {
            st = mf_gpu_moe_gate_up(ctx->gpu, d, T, k, x, idx, h);
            /* A device failure leaves the work to the CPU below. */
            if (st != MF_ERR_DEVICE && st != MF_ERR_DEVICE_LOST &&
                st != MF_ERR_DEVICE_OOM)
                return st;
        }
        break;
    }
    default:
        break;
    }
    mf_exec ex;
    st = mf_exec_resolve(ctx, d->impl, &ex);
    if (st != MF_OK)
        return st;
    return run_cpu(&ex, d, T, k, F, x, idx, h);
}
