/* mf_moe_down_combine: validation, impl resolution and the fused CPU run.
 *
 * Fusion plan: the H output rows are split evenly across threads (every
 * expert's rows are the same size, so equal row counts stream equal bytes).
 * A thread walks its rows in blocks of DN_BLOCK: for each expert group (the
 * pairs routed to one expert, sharing one pass over its rows) the dot
 * products of the block land in that thread's block buffer, one row of
 * DN_BLOCK floats per (token, slot) pair, plus the expert bias; then each
 * token's outputs are combined in slot order j = 0..k-1 (times w, plus the
 * residual) with every product and sum rounded to f32 in that order, as
 * mf_combine's exact sequence, and written to y. Each thread requests its
 * rows from memory a fixed distance ahead of the ones it computes. INT8
 * quantizes each h row once per call, before the split. */
#include "../cpu/unfused/unfused.h"
#include "moe_plan.h"

/* Output rows per block: a thread's block buffer holds T * k * DN_BLOCK
 * floats (128 bytes per pair). */
#define DN_BLOCK 32

/* Below this many weight bytes a call runs on one thread (measured as for
 * mf_moe_gate_up: two threads break even at 18-36 KiB). */
#define DN_MIN_PARALLEL_BYTES (32 * 1024)

typedef struct dn_job {
    const mf_kernels *kern;
    const mf_tensor *wd;
    const float *bd;
    int64_t T, H, F;
    int32_t k;
    const float *h;
    const mf_q8blk *hq; /* INT8: [T * k, F / 32] blocks; NULL for EXACT */
    const float *w, *res;
    float *y;
    const mf_moe_groups *g;
    size_t row_cost;    /* bytes one row of w_down streams */
    float *blk;         /* per task: T * k * DN_BLOCK floats */
    size_t blk_stride;  /* floats from one task's buffer to the next */
} dn_job;

static void dn_dot(const dn_job *jb, int64_t e, int64_t r0, int64_t nr,
                   const int32_t *pair, int M, float *const *y)
{
    int64_t F = jb->F;
    if (jb->hq) {
        const mf_q8blk *hs[MF_MOE_MCHUNK];
        for (int m = 0; m < M; m++)
            hs[m] = jb->hq + pair[m] * (F / 32);
        jb->kern->qdot_q8(jb->wd, e * jb->H + r0, nr, hs, M, y);
    } else {
        const float *hs[MF_MOE_MCHUNK];
        for (int m = 0; m < M; m++)
            hs[m] = jb->h + pair[m] * F;
        jb->kern->qdot(jb->wd, e * jb->H + r0, nr, hs, M, y);
    }
}

/* Prefetch cursor: (row block, group) pieces of a thread's range in the
 * order they are computed, requested from memory MF_MOE_PREFETCH_BYTES
 * ahead of the one being computed. */
typedef struct dn_pf {
    int64_t r, hi;
    int32_t gi;
    size_t issued, used;
} dn_pf;

static void dn_pf_advance(const dn_job *jb, dn_pf *pf, size_t used_now)
{
    pf->used += used_now;
    while (pf->r < pf->hi && pf->issued < pf->used + MF_MOE_PREFETCH_BYTES) {
        int64_t nb = pf->hi - pf->r < DN_BLOCK ? pf->hi - pf->r : DN_BLOCK;
        mf_moe_rows rows = {jb->wd, jb->g->expert[pf->gi] * jb->H + pf->r,
                            nb};
        pf->issued += mf_moe_prefetch(&rows);
        if (++pf->gi == jb->g->n_groups) {
            pf->gi = 0;
            pf->r += nb;
        }
    }
}

/* Rows [r0, r0 + nb) of every pair into buf (pair p at buf + p * DN_BLOCK),
 * biases added. */
static void dn_block(const dn_job *jb, float *buf, int64_t r0, int64_t nb,
                     dn_pf *pf)
{
    const mf_moe_groups *g = jb->g;
    float *ys[MF_MOE_MCHUNK];
    for (int32_t gi = 0; gi < g->n_groups; gi++) {
        const int64_t e = g->expert[gi];
        const int32_t s1 = g->start[gi + 1];
        dn_pf_advance(jb, pf, (size_t)nb * jb->row_cost);
        for (int32_t c0 = g->start[gi]; c0 < s1; c0 += MF_MOE_MCHUNK) {
            int M = s1 - c0 < MF_MOE_MCHUNK ? s1 - c0 : MF_MOE_MCHUNK;
            const int32_t *pair = g->pair + c0;
            for (int m = 0; m < M; m++)
                ys[m] = buf + (int64_t)pair[m] * DN_BLOCK;
            dn_dot(jb, e, r0, nb, pair, M, ys);
            if (!jb->bd)
                continue;
            const float *b = jb->bd + e * jb->H + r0;
            for (int m = 0; m < M; m++)
                for (int64_t i = 0; i < nb; i++)
                    ys[m][i] += b[i];
        }
    }
}

/* y[t, r0 .. r0 + nb) = sum_j w[t, j] * buf[t, j] (+ residual), slot order,
 * each product and sum rounded to f32. */
static void dn_combine(const dn_job *jb, const float *buf, int64_t r0,
                       int64_t nb)
{
    const int32_t k = jb->k;
    float acc[DN_BLOCK];
    for (int64_t t = 0; t < jb->T; t++) {
        const float *bt = buf + t * k * DN_BLOCK, *wt = jb->w + t * k;
        for (int64_t i = 0; i < nb; i++)
            acc[i] = wt[0] * bt[i];
        for (int32_t j = 1; j < k; j++) {
            const float wj = wt[j], *bj = bt + (int64_t)j * DN_BLOCK;
            for (int64_t i = 0; i < nb; i++)
                acc[i] = acc[i] + wj * bj[i];
        }
        float *yt = jb->y + t * jb->H + r0;
        if (jb->res) {
            const float *rt = jb->res + t * jb->H + r0;
            for (int64_t i = 0; i < nb; i++)
                yt[i] = acc[i] + rt[i];
        } else {
            for (int64_t i = 0; i < nb; i++)
                yt[i] = acc[i];
        }
    }
}

static void dn_task(void *arg, int i, int n)
{
    const dn_job *jb = arg;
    float *buf = jb->blk + (size_t)i * jb->blk_stride;
    int64_t lo, hi;
    mf_split(jb->H, n, i, 16, &lo, &hi);
    dn_pf pf = {.r = lo, .hi = hi};
    dn_pf_advance(jb, &pf, 0);
    for (int64_t r0 = lo; r0 < hi; r0 += DN_BLOCK) {
        int64_t nb = hi - r0 < DN_BLOCK ? hi - r0 : DN_BLOCK;
        dn_block(jb, buf, r0, nb, &pf);
        dn_combine(jb, buf, r0, nb);
    }
}

static mf_status check(const mf_moe_down_desc *d, int64_t T, int32_t k,
                       const float *h, const int32_t *idx, const float *w,
                       const float *residual, const float *y)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (unsigned)d->prec >= MF_PREC_COUNT_)
        return MF_ERR_INVALID_ARG;
    if (!h || !idx || !w || !y || !d->w_down || T < 1 || T > MF_MAX_T ||
        k < 1)
        return MF_ERR_INVALID_ARG;
    const mf_tensor *wd = d->w_down;
    mf_status st = mf_tensor_check(wd);
    if (st != MF_OK)
        return st;
    const int64_t E = wd->e, H = wd->n, F = wd->k;
    if (E > MF_MAX_E || k > E)
        return MF_ERR_INVALID_ARG;
    size_t pairs, hb, yb, bb;
    if (!mf_mul_size((size_t)T, (size_t)k, &pairs) ||
        !mf_mul_size(pairs * (size_t)F, 4, &hb) ||
        !mf_mul_size((size_t)T * (size_t)H, 4, &yb) ||
        !mf_mul_size((size_t)E * (size_t)H, 4, &bb))
        return MF_ERR_INVALID_ARG;
    if (!mf_moe_idx_valid(idx, (int64_t)pairs, E))
        return MF_ERR_INVALID_ARG;
    if (mf_overlap(y, yb, h, hb) || mf_overlap(y, yb, idx, pairs * 4) ||
        mf_overlap(y, yb, w, pairs * 4) ||
        mf_overlap(y, yb, d->b_down, d->b_down ? bb : 0) ||
        (residual != y && mf_overlap(y, yb, residual, residual ? yb : 0)) ||
        mf_moe_tensor_overlaps(wd, y, yb))
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

static mf_status run_cpu(const mf_exec *ex, const mf_moe_down_desc *d,
                         int64_t T, int32_t k, const float *h,
                         const int32_t *idx, const float *w,
                         const float *residual, float *y)
{
    const mf_tensor *wd = d->w_down;
    const int64_t E = wd->e, H = wd->n, F = wd->k, n_pairs = T * k;
    const int int8 = d->prec == MF_PREC_INT8 && mf_type_quantized(wd->type);

    /* Distinct experts bound the bytes streamed; decide the split first,
     * the block buffers are per task. */
    int64_t distinct = n_pairs < E ? n_pairs : E;
    size_t bytes = (size_t)(distinct * H) * mf_moe_row_cost(wd);
    int64_t tasks = H / 16;
    if (bytes < DN_MIN_PARALLEL_BYTES || tasks < 1)
        tasks = 1;
    if (tasks > ex->threads)
        tasks = ex->threads;

    _Alignas(64) unsigned char stack[MF_MOE_STACK_BYTES];
    mf_moe_carve c = {0};
    int ok = 1;
    size_t q8_bytes = 0, blk_bytes = 0, blk_all = 0;
    if (int8 && !mf_mul_size((size_t)n_pairs * (size_t)(F / 32),
                             sizeof(mf_q8blk), &q8_bytes))
        ok = 0;
    if (!mf_mul_size((size_t)n_pairs, DN_BLOCK * sizeof(float), &blk_bytes))
        ok = 0;
    blk_bytes = (blk_bytes + 63) & ~(size_t)63;
    if (!mf_mul_size(blk_bytes, (size_t)tasks, &blk_all))
        ok = 0;
    mf_moe_take(&c, mf_moe_groups_bytes(n_pairs, E), &ok);
    mf_moe_take(&c, q8_bytes, &ok);
    mf_moe_take(&c, blk_all, &ok);
    if (!ok)
        return MF_ERR_OUT_OF_MEMORY;
    void *heap;
    c.base = mf_moe_scratch_get(c.used, stack, &heap);
    if (!c.base)
        return MF_ERR_OUT_OF_MEMORY;
    c.used = 0;
    void *gmem = mf_moe_take(&c, mf_moe_groups_bytes(n_pairs, E), &ok);
    mf_q8blk *hq = int8 ? mf_moe_take(&c, q8_bytes, &ok) : NULL;
    float *blk = mf_moe_take(&c, blk_all, &ok);

    mf_moe_groups g;
    mf_moe_groups_build(idx, n_pairs, E, gmem, &g);
    if (hq)
        for (int64_t p = 0; p < n_pairs; p++)
            ex->kern->quantize_q8(h + p * F, F, hq + p * (F / 32));

    dn_job jb = {
        .kern = ex->kern,
        .wd = wd,
        .bd = d->b_down,
        .T = T, .H = H, .F = F, .k = k,
        .h = h, .hq = hq,
        .w = w, .res = residual, .y = y,
        .g = &g,
        .row_cost = mf_moe_row_cost(wd),
        .blk = blk,
        .blk_stride = blk_bytes / sizeof(float),
    };
    mf_exec_parallel(ex, (int)tasks, dn_task, &jb);
    mf_moe_scratch_free(heap);
    return MF_OK;
}

mf_status mf_moe_down_combine(mf_ctx *ctx, const mf_moe_down_desc *d,
                              int64_t T, int32_t k, const float *h,
                              const int32_t *idx, const float *w,
                              const float *residual, float *y)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    mf_status st = check(d, T, k, h, idx, w, residual, y);
    if (st != MF_OK)
        return st;
    const mf_op_shape s = {.op = MF_OP_MOE_DOWN, .T = T, .E = d->w_down->e,
                           .k = k, .N = d->w_down->n, .K = d->w_down->k,
                           .wtype = d->w_down->type};
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        return mf_unfused_moe_down_combine(d, T, k, h, idx, w, residual, y);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        mf_ctx_gpu_forms_n(ctx, &s, d->prec == MF_PREC_EXACT);
        return mf_gpu_moe_down_combine(ctx->gpu, d, T, k, h, idx, w,
                                       residual, y);
    case MF_IMPL_AUTO: {
        if (mf_route_gpu(ctx, &s)) {
            mf_ctx_gpu_forms_n(ctx, &s, d->prec == MF_PREC_EXACT);
            st = mf_gpu_moe_down_combine(ctx->gpu, d, T, k, h, idx, w,
                                         residual, y);
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
    return run_cpu(&ex, d, T, k, h, idx, w, residual, y);
}
