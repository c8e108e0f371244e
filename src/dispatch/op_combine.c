/* mf_combine: validation, impl resolution, the element split across
 * threads.
 *
 * The T * D outputs are one flat range split into equal parts (edges on
 * multiples of 16 floats, one cache line); a part walks the tokens it
 * covers and calls the kernel on its slice of each. Threads are used only
 * above COMBINE_PAR_MIN_READ floats read (T * k * D): see its comment. */
#include "../cpu/unfused/unfused.h"
#include "internal.h"

/* Measured with a timing program on the development machine (AMD EPYC,
 * 2 cores, AVX-512 kernels, exact = 0, k = 8, T = 1, pool workers spinning;
 * median of 301 x 10 calls, taken while the machine was shared, load
 * average ~10), 1 thread vs the split forced on 2:
 *   D = 2048 (16K floats read):  0.57 us vs 0.94 us
 *   D = 4096 (32K):              1.40 us vs 1.41 us
 *   D = 5120 (40K):              1.75 us vs 1.68 us
 *   D = 7168 (56K):              2.43 us vs 2.02 us
 *   D = 16384 (128K):            5.75 us vs 3.57 us
 * Waking the second worker and joining costs ~0.7 us: the split pays from
 * about 40K floats read. */
#define COMBINE_PAR_MIN_READ 40960

typedef struct combine_job {
    void (*fn)(int32_t k, int64_t D, int64_t d0, int64_t d1, const float *x_t,
               const float *w_t, const float *res_t, float *out_t);
    int64_t T, D;
    int32_t k;
    const float *x, *w, *res;
    float *out;
} combine_job;

static void combine_task(void *arg, int i, int n)
{
    const combine_job *jb = arg;
    const int64_t D = jb->D, k = jb->k;
    int64_t lo, hi;
    mf_split(jb->T * D, n, i, 16, &lo, &hi);
    int64_t t = lo < D ? 0 : lo / D; /* one division per part at most */
    for (int64_t d0 = lo - t * D; t * D < hi; t++, d0 = 0) {
        const int64_t d1 = hi - t * D < D ? hi - t * D : D;
        jb->fn(jb->k, D, d0, d1, jb->x + t * k * D, jb->w + t * k,
               jb->res ? jb->res + t * D : NULL, jb->out + t * D);
    }
}

static mf_status check(const mf_combine_desc *d, int64_t T, int32_t k,
                       int64_t D, const float *x, const float *w,
                       const float *res, const float *out)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (d->exact != 0 && d->exact != 1))
        return MF_ERR_INVALID_ARG;
    if (!x || !w || !out || T < 1 || T > MF_MAX_T || k < 1 || k > MF_MAX_E ||
        D < 1 || D > MF_MAX_DIM)
        return MF_ERR_INVALID_ARG;
    size_t nx, nw, no;
    if (!mf_mul_size((size_t)T * (size_t)k, (size_t)D * sizeof(float), &nx) ||
        !mf_mul_size((size_t)T, (size_t)k * sizeof(float), &nw) ||
        !mf_mul_size((size_t)T, (size_t)D * sizeof(float), &no))
        return MF_ERR_INVALID_ARG;
    /* out may be residual itself, but must not overlap anything else */
    if (mf_overlap(out, no, x, nx) || mf_overlap(out, no, w, nw) ||
        (res != out && mf_overlap(out, no, res, res ? no : 0)))
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

static int combine_tasks(const mf_exec *ex, int64_t T, int32_t k, int64_t D)
{
    if (ex->threads < 2 || T * k * D < COMBINE_PAR_MIN_READ)
        return 1;
    int64_t parts = T * D / 16;
    return parts < ex->threads ? (int)(parts < 1 ? 1 : parts) : ex->threads;
}

mf_status mf_combine(mf_ctx *ctx, const mf_combine_desc *d, int64_t T,
                     int32_t k, int64_t D, const float *x, const float *w,
                     const float *residual, float *out)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    mf_status st = check(d, T, k, D, x, w, residual, out);
    if (st != MF_OK)
        return st;
    mf_exec ex;
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        return mf_unfused_combine(T, k, D, x, w, residual, out);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        return mf_gpu_combine(ctx->gpu, d, T, k, D, x, w, residual, out);
    case MF_IMPL_AUTO: {
        mf_op_shape s = {.op = MF_OP_COMBINE, .T = T, .k = k, .N = D,
                         .mode = d->exact};
        if (mf_route_gpu(ctx, &s)) {
            st = mf_gpu_combine(ctx->gpu, d, T, k, D, x, w, residual, out);
            /* A device failure leaves the work to the CPU below. */
            if (st != MF_ERR_DEVICE && st != MF_ERR_DEVICE_LOST &&
                st != MF_ERR_DEVICE_OOM)
                return st;
        }
    }
        /* fall through */
    case MF_IMPL_CPU:
        /* the context's own set, always available: no lookup */
        ex = (mf_exec){ctx->kern, ctx->threads, ctx->pool};
        break;
    default:
        st = mf_exec_resolve(ctx, d->impl, &ex);
        if (st != MF_OK)
            return st;
        break;
    }
    combine_job jb = {.fn = d->exact ? ex.kern->combine_exact
                                     : ex.kern->combine,
                      .T = T, .D = D, .k = k, .x = x, .w = w,
                      .res = residual, .out = out};
    mf_exec_parallel(&ex, combine_tasks(&ex, T, k, D), combine_task, &jb);
    return MF_OK;
}
