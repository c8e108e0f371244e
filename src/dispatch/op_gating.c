/* mf_gating: validation, impl resolution, the row split across threads.
 *
 * Kernels take one row with a scratch of 4 * E + 64 floats: a stack buffer
 * per task (a small one for E <= 256, so decode-size calls touch one or two
 * pages), never the heap. Rows are split across the context's threads only
 * when the call is large enough to pay for waking the workers (see
 * GATING_PAR_MIN_ELEMS). */
#include <math.h>

#include "../cpu/unfused/unfused.h"
#include "internal.h"

#define GATING_SMALL_E 256

/* A row split across threads pays once each task has GATING_PAR_MIN_ROWS
 * rows or GATING_PAR_MIN_ELEMS logits (see gating_tasks). Measured on the development
 * machine (AMD EPYC, 2 cores, AVX-512 kernels, pool workers spinning; median
 * wall time of mf_gating, 2 threads over 1): E=8 top-k-softmax k=2: T=4
 * 1.41x (slower), T=8 0.94x, T=16 0.71x; E=128 softmax k=8: T=2 1.12x,
 * T=4 0.78x, T=8 0.64x; E=256 grouped sigmoid k=8: T=2 0.96x, T=4 0.55x.
 * Waking a worker costs ~100-150 ns here. */
#ifndef GATING_PAR_MIN_ELEMS
#define GATING_PAR_MIN_ELEMS 512
#endif
#define GATING_PAR_MIN_ROWS 8

typedef struct gating_job {
    const mf_kernels *kern;
    const mf_gating_desc *d;
    const float *logits;
    int64_t T;
    int32_t *idx;
    float *w;
} gating_job;

static void rows(const gating_job *jb, int64_t r0, int64_t r1, float *scratch)
{
    const int64_t E = jb->d->n_experts, k = jb->d->k;
    for (int64_t r = r0; r < r1; r++)
        jb->kern->gating_row(jb->d, jb->logits + r * E, jb->idx + r * k,
                             jb->w + r * k, scratch);
}

static __attribute__((noinline)) void rows_big(const gating_job *jb,
                                               int64_t r0, int64_t r1)
{
    _Alignas(64) float scratch[4 * MF_MAX_E + 64];
    rows(jb, r0, r1, scratch);
}

static void gating_task(void *arg, int i, int n)
{
    const gating_job *jb = arg;
    int64_t r0, r1;
    mf_split(jb->T, n, i, 1, &r0, &r1);
    if (jb->d->n_experts <= GATING_SMALL_E) {
        _Alignas(64) float scratch[4 * GATING_SMALL_E + 64];
        rows(jb, r0, r1, scratch);
    } else {
        rows_big(jb, r0, r1);
    }
}

static mf_status check(const mf_gating_desc *d, const float *logits,
                       int64_t T, const int32_t *idx, const float *w)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (unsigned)d->mode >= MF_GATING_MODE_COUNT_)
        return MF_ERR_INVALID_ARG;
    if (!logits || !idx || !w || T < 1 || T > MF_MAX_T)
        return MF_ERR_INVALID_ARG;
    const int32_t E = d->n_experts, k = d->k;
    if (E < 1 || E > MF_MAX_E || k < 1 || k > E)
        return MF_ERR_INVALID_ARG;
    if (d->renormalize != 0 && d->renormalize != 1)
        return MF_ERR_INVALID_ARG;
    if (!isfinite(d->scale))
        return MF_ERR_INVALID_ARG;
    if (d->n_group > 1) {
        if (d->mode != MF_GATING_SIGMOID_GROUPED || E % d->n_group != 0)
            return MF_ERR_INVALID_ARG;
        if (d->topk_group < 1 || d->topk_group > d->n_group ||
            (int64_t)d->topk_group * (E / d->n_group) < k)
            return MF_ERR_INVALID_ARG;
    } else if (d->n_group < 0 || d->topk_group < 0 || d->topk_group > 1) {
        return MF_ERR_INVALID_ARG;
    }
    size_t nl, no;
    if (!mf_mul_size((size_t)T, (size_t)E * sizeof(float), &nl) ||
        !mf_mul_size((size_t)T, (size_t)k * sizeof(float), &no))
        return MF_ERR_INVALID_ARG;
    const size_t nb = d->bias ? (size_t)E * sizeof(float) : 0;
    if (mf_overlap(idx, no, w, no) || mf_overlap(idx, no, logits, nl) ||
        mf_overlap(w, no, logits, nl) || mf_overlap(idx, no, d->bias, nb) ||
        mf_overlap(w, no, d->bias, nb))
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

/* Tasks for a CPU run: each task gets at least GATING_PAR_MIN_ELEMS
 * logits or GATING_PAR_MIN_ROWS rows, whichever allows more tasks, so a
 * call wakes only as many workers as its work pays for (on a 16-core host,
 * splitting 4 rows of E = 128 over 4 tasks took 1.83 us against ~1.0 us on
 * one thread: three wake-ups for 0.25 us of work each). */
static int gating_tasks(const mf_exec *ex, int64_t T, int32_t E)
{
    if (ex->threads < 2 || T < 2)
        return 1;
    int64_t by_elems = T * E / GATING_PAR_MIN_ELEMS;
    int64_t by_rows = T / GATING_PAR_MIN_ROWS;
    int64_t n = by_elems > by_rows ? by_elems : by_rows;
    if (n > T)
        n = T;
    if (n > ex->threads)
        n = ex->threads;
    return n < 1 ? 1 : (int)n;
}

mf_status mf_gating(mf_ctx *ctx, const mf_gating_desc *d, const float *logits,
                    int64_t T, int32_t *idx, float *weights)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    mf_status st = check(d, logits, T, idx, weights);
    if (st != MF_OK)
        return st;
    const mf_op_shape s = {.op = MF_OP_GATING, .T = T, .E = d->n_experts,
                           .k = d->k, .mode = (int)d->mode};
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        return mf_unfused_gating(d, logits, T, idx, weights);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        mf_ctx_gpu_forms(ctx, &s);
        return mf_gpu_gating(ctx->gpu, d, logits, T, idx, weights);
    case MF_IMPL_AUTO: {
        if (mf_route_gpu(ctx, &s)) {
            mf_ctx_gpu_forms(ctx, &s);
            st = mf_gpu_gating(ctx->gpu, d, logits, T, idx, weights);
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
    if (d->impl == MF_IMPL_AUTO || d->impl == MF_IMPL_CPU) {
        /* the context's own set, checked when it was created: skips the
         * CPU-feature lookup on the decode hot path */
        ex = (mf_exec){.kern = ctx->kern, .threads = ctx->threads,
                       .pool = ctx->pool};
    } else {
        st = mf_exec_resolve(ctx, d->impl, &ex);
        if (st != MF_OK)
            return st;
    }
    gating_job jb = {.kern = ex.kern, .d = d, .logits = logits, .T = T,
                     .idx = idx, .w = weights};
    int tasks = gating_tasks(&ex, T, d->n_experts);
    if (tasks == 1)
        gating_task(&jb, 0, 1);
    else
        mf_exec_parallel(&ex, tasks, gating_task, &jb);
    return MF_OK;
}
