/* mf_moe_gate_up: validation, impl resolution and the fused CPU run.
 *
 * Fusion plan: the (token, slot) pairs are grouped by expert, so the tokens
 * routed to one expert share a single pass over its rows (one kernel call
 * with M = their count, x rows passed by pointer, never copied). The output
 * columns of all selected experts, expert after expert, form one range that
 * is split across threads by cost: every expert's gate and up rows are the
 * same size, so a column streams the same bytes in every expert, plus some
 * arithmetic per token the expert serves (GU_TOKEN_COST). A thread walks its
 * range in blocks of GU_BLOCK columns: gate and up dot products of the block
 * (kernel calls of GU_SUB rows) land in stack buffers, get their biases, go
 * through the glu kernel and are written to h. Each thread requests its rows
 * from memory a fixed distance ahead of the ones it computes, across block
 * and expert boundaries. INT8 quantizes each x row once per call, before
 * the split. */
#include <math.h>

#include "../cpu/unfused/unfused.h"
#include "moe_plan.h"

/* Output columns per block: the f32 gate/up results of a block for
 * MF_MOE_MCHUNK tokens (3 * 16 * 32 floats = 6 KiB) stay in L1. */
#define GU_BLOCK 32

/* Columns per kernel call (multiple of 16: the AVX-512 kernels take 16 rows
 * per pass). GU_BLOCK is a multiple of it. */
#define GU_SUB 16

/* Below this many weight bytes a call runs on one thread. Measured (2
 * threads, weights in cache, the pool's wake and join included): two
 * threads win from about 36 KiB on, by 1.6x at 72 KiB. */
#define GU_MIN_PARALLEL_BYTES (32 * 1024)

/* Work split: a column of a group serving M pairs costs 1 + GU_TOKEN_COST *
 * (M - 1) columns of a group serving one (its rows stream once; each extra
 * token adds only arithmetic on cached rows). */
#define GU_TOKEN_COST 0.25

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
    double cost;           /* sum over groups of F * col_cost */
    size_t row_cost_g, row_cost_u; /* bytes one row streams */
} gu_job;

static double col_cost(const mf_moe_groups *g, int32_t gi)
{
    return 1.0 + GU_TOKEN_COST * (g->start[gi + 1] - g->start[gi] - 1);
}

/* Where task i of n starts (in output columns, groups one after another):
 * the column where i / n of the total cost is reached, rounded to a multiple
 * of 16 inside its group. Monotone in i; 0 for i = 0, units for i = n. */
static int64_t gu_edge(const gu_job *jb, int i, int n)
{
    if (i <= 0)
        return 0;
    if (i >= n)
        return jb->units;
    const mf_moe_groups *g = jb->g;
    double target = jb->cost * i / n, acc = 0;
    for (int32_t gi = 0; gi < g->n_groups; gi++) {
        double c = col_cost(g, gi), span = c * (double)jb->F;
        if (target < acc + span) {
            int64_t off = (int64_t)((target - acc) / c + 8) / 16 * 16;
            return (int64_t)gi * jb->F + (off < jb->F ? off : jb->F);
        }
        acc += span;
    }
    return jb->units;
}

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

/* The rows of sub-block [c, c + ns) (global columns, one group): gate rows,
 * then up rows (INTERLEAVED: one run of 2 * ns rows). Returns the count. */
static int gu_rows(const gu_job *jb, int64_t c, int64_t ns, mf_moe_rows *out)
{
    const int32_t gi = (int32_t)(c / jb->F);
    const int64_t e = jb->g->expert[gi], F = jb->F, n0 = c - gi * F;
    switch (jb->layout) {
    case MF_GLU_SEPARATE:
        out[0] = (mf_moe_rows){jb->wg, e * F + n0, ns};
        out[1] = (mf_moe_rows){jb->wu, e * F + n0, ns};
        return 2;
    case MF_GLU_CONCAT:
        out[0] = (mf_moe_rows){jb->wg, e * 2 * F + n0, ns};
        out[1] = (mf_moe_rows){jb->wg, e * 2 * F + F + n0, ns};
        return 2;
    default:
        out[0] = (mf_moe_rows){jb->wg, e * 2 * F + 2 * n0, 2 * ns};
        return 1;
    }
}

/* Width of the sub-block starting at global column c: GU_SUB, cut at the
 * end of c's group and at hi. */
static int64_t gu_sub_width(const gu_job *jb, int64_t c, int64_t hi)
{
    int64_t end = (c / jb->F + 1) * jb->F;
    if (end > hi)
        end = hi;
    return end - c < GU_SUB ? end - c : GU_SUB;
}

/* Prefetch cursor: the sub-blocks of a thread's range, requested from memory
 * MF_MOE_PREFETCH_BYTES ahead of the one being computed. */
typedef struct gu_pf {
    int64_t c, hi;
    size_t issued, used;
} gu_pf;

static void gu_pf_advance(const gu_job *jb, gu_pf *pf, size_t used_now)
{
    pf->used += used_now;
    while (pf->c < pf->hi && pf->issued < pf->used + MF_MOE_PREFETCH_BYTES) {
        int64_t ns = gu_sub_width(jb, pf->c, pf->hi);
        mf_moe_rows r[2];
        int nr = gu_rows(jb, pf->c, ns, r);
        for (int i = 0; i < nr; i++)
            pf->issued += mf_moe_prefetch(&r[i]);
        pf->c += ns;
    }
}

/* Block [c, c + nb) (global columns, one group, nb <= GU_BLOCK), for all
 * of the group's pairs. */
static void gu_block(const gu_job *jb, int64_t c, int64_t nb, gu_pf *pf)
{
    const mf_moe_groups *g = jb->g;
    const int32_t gi = (int32_t)(c / jb->F);
    const int64_t e = g->expert[gi], F = jb->F, b0 = c - gi * F;
    const int32_t s0 = g->start[gi], s1 = g->start[gi + 1];
    const int il = jb->layout == MF_GLU_INTERLEAVED;
    float gbuf[MF_MOE_MCHUNK * 2 * GU_BLOCK];
    float ubuf[MF_MOE_MCHUNK * GU_BLOCK];
    float *gy[MF_MOE_MCHUNK], *uy[MF_MOE_MCHUNK], *ys[MF_MOE_MCHUNK];
    for (int m = 0; m < MF_MOE_MCHUNK; m++) {
        gy[m] = gbuf + m * 2 * GU_BLOCK;
        uy[m] = ubuf + m * GU_BLOCK;
    }
    for (int32_t c0 = s0; c0 < s1; c0 += MF_MOE_MCHUNK) {
        const int M = s1 - c0 < MF_MOE_MCHUNK ? s1 - c0 : MF_MOE_MCHUNK;
        const int32_t *pair = g->pair + c0;
        for (int64_t u0 = 0; u0 < nb; u0 += GU_SUB) {
            const int64_t ns = nb - u0 < GU_SUB ? nb - u0 : GU_SUB;
            mf_moe_rows r[2];
            const int nr = gu_rows(jb, c + u0, ns, r);
            if (c0 == s0) /* the rows come from memory once */
                gu_pf_advance(jb, pf,
                              (size_t)ns * (il ? 2 * jb->row_cost_g
                                               : jb->row_cost_g +
                                                     jb->row_cost_u));
            for (int m = 0; m < M; m++)
                ys[m] = gy[m] + (il ? 2 * u0 : u0);
            gu_dot(jb, r[0].w, r[0].r0, r[0].nr, pair, M, ys);
            if (nr == 2) {
                for (int m = 0; m < M; m++)
                    ys[m] = uy[m] + u0;
                gu_dot(jb, r[1].w, r[1].r0, r[1].nr, pair, M, ys);
            }
        }
        for (int m = 0; m < M && (jb->bg || jb->bu); m++) {
            switch (jb->layout) {
            case MF_GLU_SEPARATE:
                if (jb->bg)
                    add_bias(gy[m], jb->bg + e * F + b0, nb);
                if (jb->bu)
                    add_bias(uy[m], jb->bu + e * F + b0, nb);
                break;
            case MF_GLU_CONCAT:
                add_bias(gy[m], jb->bg + e * 2 * F + b0, nb);
                add_bias(uy[m], jb->bg + e * 2 * F + F + b0, nb);
                break;
            default: /* INTERLEAVED: gate and up rows alternate */
                add_bias(gy[m], jb->bg + e * 2 * F + 2 * b0, 2 * nb);
                break;
            }
        }
        for (int m = 0; m < M; m++)
            jb->kern->glu(&jb->glu, 0, nb, gy[m], il ? NULL : uy[m],
                          jb->h + (int64_t)pair[m] * F + b0);
    }
}

static void gu_task(void *arg, int i, int n)
{
    const gu_job *jb = arg;
    const int64_t lo = gu_edge(jb, i, n), hi = gu_edge(jb, i + 1, n);
    gu_pf pf = {.c = lo, .hi = hi};
    gu_pf_advance(jb, &pf, 0);
    for (int64_t c = lo; c < hi;) {
        int64_t end = (c / jb->F + 1) * jb->F;
        if (end > hi)
            end = hi;
        int64_t nb = end - c < GU_BLOCK ? end - c : GU_BLOCK;
        gu_block(jb, c, nb, &pf);
        c += nb;
    }
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
    const int int8 = d->prec == MF_PREC_INT8 && mf_type_quantized(wg->type);

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
    for (int32_t gi = 0; gi < g.n_groups; gi++)
        jb.cost += col_cost(&g, gi) * (double)F;
    jb.row_cost_g = mf_moe_row_cost(jb.wg);
    jb.row_cost_u = mf_moe_row_cost(jb.wu);
    if (d->layout == MF_GLU_INTERLEAVED)
        jb.glu.layout = MF_GLU_INTERLEAVED;

    size_t bytes = (size_t)jb.units * (jb.row_cost_g + jb.row_cost_u);
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
    const mf_op_shape s = {.op = MF_OP_MOE_GATE_UP, .T = T,
                           .E = d->w_gate->e, .k = k, .N = F,
                           .K = d->w_gate->k, .wtype = d->w_gate->type,
                           .mode = (int)d->glu};
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        return mf_unfused_moe_gate_up(d, T, k, x, idx, h);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        mf_ctx_gpu_forms_n(ctx, &s, d->prec == MF_PREC_EXACT);
        return mf_gpu_moe_gate_up(ctx->gpu, d, T, k, x, idx, h);
    case MF_IMPL_AUTO: {
        if (mf_route_gpu(ctx, &s)) {
            mf_ctx_gpu_forms_n(ctx, &s, d->prec == MF_PREC_EXACT);
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
