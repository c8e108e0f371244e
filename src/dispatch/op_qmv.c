/* mf_qmv: validation, impl resolution and the CPU runs.
 *
 * M <= QMV_MAX_M (decode): the output rows are split across threads (edges
 * on multiples of 16 rows); a thread walks its rows in blocks of
 * QMV_ROW_BLOCK, one kernel call per block computing all M dot products of
 * each row in one pass over its weights, then adds the bias and applies the
 * activation to the block while it is in L1. INT8 quantizes the activation
 * rows once per call, before the split.
 *
 * M > QMV_MAX_M: chunks of weight rows are dequantized to f32 (threaded)
 * and multiplied with OpenBLAS sgemm; the epilogue runs over y at the end.
 * MF_IMPL_REF never takes this path: it runs its dot kernel for every M. */
#include <cblas.h>
#include <stdlib.h>

#include "../cpu/unfused/unfused.h"
#include "tensor_span.h"

#define QMV_MAX_M 32
#define QMV_ROW_BLOCK 64

/* Below this many weight bytes a call runs on one thread. Measured on the
 * 2-core development machine (Q4_0, K = 2048, M = 1, rows in cache, best
 * of 5000 calls): one and two threads tie near 20 KiB; at 27 KiB two take
 * 0.8 us against 1.1 us, at 36 KiB 0.9 us against 1.5 us (EXACT; INT8
 * 1.0 against 1.3 us). Rows from memory favour two threads further. */
#define QMV_MIN_PARALLEL_BYTES (24 * 1024)

/* Quantized activations up to this size live on the caller's stack. */
#define QMV_STACK_BYTES 16384

/* f32 rows dequantized per sgemm call on the M > QMV_MAX_M path. */
#define QMV_GEMM_CHUNK_BYTES ((size_t)8 << 20)

typedef struct qmv_job {
    const mf_kernels *kern;
    const mf_tensor *w;
    const float *x;
    mf_q8blk *xq;       /* INT8: [M, K / 32]; NULL for EXACT */
    int M;
    int64_t N, K;
    float *y;
    const float *bias;
    mf_act act;
} qmv_job;

/* Bias and activation of rows [r0, r0 + nr) of y's M rows. */
static void epilogue(const mf_kernels *kern, const float *bias, mf_act act,
                     float *const *yp, int M, int64_t r0, int64_t nr)
{
    for (int m = 0; m < M; m++) {
        float *ym = yp[m];
        if (bias)
            for (int64_t i = 0; i < nr; i++)
                ym[i] += bias[r0 + i];
        if (act != MF_ACT_NONE)
            kern->act(act, ym, nr);
    }
}

static void qmv_task(void *arg, int i, int n)
{
    const qmv_job *jb = arg;
    const int M = jb->M;
    const int64_t N = jb->N, K = jb->K;
    int64_t lo, hi;
    mf_split(N, n, i, 16, &lo, &hi);
    const float *xs[QMV_MAX_M];
    const mf_q8blk *xq[QMV_MAX_M];
    float *yp[QMV_MAX_M];
    for (int m = 0; m < M; m++) {
        xs[m] = jb->x + m * K;
        xq[m] = jb->xq ? jb->xq + m * (K / 32) : NULL;
    }
    for (int64_t r0 = lo; r0 < hi; r0 += QMV_ROW_BLOCK) {
        int64_t nr = hi - r0 < QMV_ROW_BLOCK ? hi - r0 : QMV_ROW_BLOCK;
        for (int m = 0; m < M; m++)
            yp[m] = jb->y + m * N + r0;
        if (jb->xq)
            jb->kern->qdot_q8(jb->w, r0, nr, xq, M, yp);
        else
            jb->kern->qdot(jb->w, r0, nr, xs, M, yp);
        epilogue(jb->kern, jb->bias, jb->act, yp, M, r0, nr);
    }
}

static void quant_task(void *arg, int i, int n)
{
    const qmv_job *jb = arg;
    int64_t lo, hi;
    mf_split(jb->M, n, i, 1, &lo, &hi);
    for (int64_t m = lo; m < hi; m++)
        jb->kern->quantize_q8(jb->x + m * jb->K, jb->K,
                              jb->xq + m * (jb->K / 32));
}

static int row_tasks(const mf_exec *ex, const mf_tensor *w)
{
    size_t bytes = (size_t)w->n * mf_tensor_span_row_cost(w);
    if (bytes < QMV_MIN_PARALLEL_BYTES)
        return 1;
    int64_t t = (w->n + 15) / 16;
    return t < ex->threads ? (int)t : ex->threads;
}

/* M <= QMV_MAX_M streaming run (every M for the reference, in slices). */
static mf_status run_stream(const mf_exec *ex, const mf_qmv_desc *d,
                            const mf_tensor *w, const float *x, int64_t M,
                            float *y, int int8)
{
    const int64_t N = w->n, K = w->k;
    int tasks = row_tasks(ex, w);
    _Alignas(64) unsigned char stack[QMV_STACK_BYTES];
    void *heap = NULL;
    mf_q8blk *xq = NULL;
    if (int8) {
        size_t need = (size_t)M * (size_t)(K / 32) * sizeof(mf_q8blk);
        xq = (mf_q8blk *)stack;
        if (need > sizeof stack) {
            heap = malloc(need);
            if (!heap)
                return MF_ERR_OUT_OF_MEMORY;
            xq = heap;
        }
    }
    for (int64_t m0 = 0; m0 < M; m0 += QMV_MAX_M) {
        int mc = M - m0 < QMV_MAX_M ? (int)(M - m0) : QMV_MAX_M;
        qmv_job jb = {.kern = ex->kern, .w = w, .x = x + m0 * K, .xq = xq,
                      .M = mc, .N = N, .K = K, .y = y + m0 * N,
                      .bias = d->bias, .act = d->act};
        if (int8)
            mf_exec_parallel(ex, (int64_t)mc * K >= 32768 ? mc : 1,
                             quant_task, &jb);
        mf_exec_parallel(ex, tasks, qmv_task, &jb);
    }
    free(heap);
    return MF_OK;
}

typedef struct gemm_job {
    const mf_kernels *kern;
    const mf_tensor *w;
    int64_t n0, nc, K;
    float *buf;
    /* epilogue */
    float *y;
    int64_t M, N;
    const float *bias;
    mf_act act;
} gemm_job;

static void dequant_task(void *arg, int i, int n)
{
    const gemm_job *jb = arg;
    int64_t lo, hi;
    mf_split(jb->nc, n, i, 4, &lo, &hi);
    for (int64_t r = lo; r < hi; r++)
        jb->kern->dequant_row(jb->w, jb->n0 + r, jb->buf + r * jb->K);
}

static void gemm_epilogue_task(void *arg, int i, int n)
{
    const gemm_job *jb = arg;
    int64_t lo, hi;
    mf_split(jb->M, n, i, 1, &lo, &hi);
    for (int64_t m = lo; m < hi; m++) {
        float *ym = jb->y + m * jb->N;
        epilogue(jb->kern, jb->bias, jb->act, &ym, 1, 0, jb->N);
    }
}

/* M > QMV_MAX_M: f32 dequantization in chunks of rows + sgemm. */
static mf_status run_gemm(const mf_exec *ex, const mf_qmv_desc *d,
                          const mf_tensor *w, const float *x, int64_t M,
                          float *y)
{
    const int64_t N = w->n, K = w->k;
    int64_t nc = (int64_t)(QMV_GEMM_CHUNK_BYTES / ((size_t)K * 4));
    nc = nc < 64 ? 64 : nc / 64 * 64;
    if (nc > N)
        nc = N;
    float *buf = malloc((size_t)nc * (size_t)K * sizeof(float));
    if (!buf)
        return MF_ERR_OUT_OF_MEMORY;
    gemm_job jb = {.kern = ex->kern, .w = w, .K = K, .buf = buf, .y = y,
                   .M = M, .N = N, .bias = d->bias, .act = d->act};
    int tasks = row_tasks(ex, w);
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        jb.n0 = n0;
        jb.nc = N - n0 < nc ? N - n0 : nc;
        mf_exec_parallel(ex, tasks, dequant_task, &jb);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M,
                    (int)jb.nc, (int)K, 1.0f, x, (int)K, buf, (int)K, 0.0f,
                    y + n0, (int)N);
    }
    if (d->bias || d->act != MF_ACT_NONE)
        mf_exec_parallel(ex, M * N >= 65536 ? ex->threads : 1,
                         gemm_epilogue_task, &jb);
    free(buf);
    return MF_OK;
}

static mf_status check(const mf_qmv_desc *d, const mf_tensor *w,
                       const float *x, int64_t M, const float *y)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (unsigned)d->prec >= MF_PREC_COUNT_ ||
        (unsigned)d->act >= MF_ACT_COUNT_ || !x || !y || M < 1 ||
        M > MF_MAX_T)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_tensor_check(w);
    if (st != MF_OK)
        return st;
    if (w->e != 1)
        return MF_ERR_INVALID_ARG;
    size_t xb, yb;
    if (!mf_mul_size((size_t)M * (size_t)w->k, 4, &xb) ||
        !mf_mul_size((size_t)M * (size_t)w->n, 4, &yb))
        return MF_ERR_INVALID_ARG;
    if (mf_overlap(y, yb, x, xb) ||
        mf_overlap(y, yb, d->bias, d->bias ? (size_t)w->n * 4 : 0) ||
        mf_tensor_span_overlaps(w, y, yb))
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

mf_status mf_qmv(mf_ctx *ctx, const mf_qmv_desc *d, const mf_tensor *w,
                 const float *x, int64_t M, float *y)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    mf_status st = check(d, w, x, M, y);
    if (st != MF_OK)
        return st;
    const mf_op_shape s = {.op = MF_OP_QMV, .T = M, .E = 1, .N = w->n,
                           .K = w->k, .wtype = w->type, .mode = (int)d->prec};
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        if (d->act != MF_ACT_NONE && !mf_kernels_get(MF_ISA_SCALAR)->act)
            return MF_ERR_UNSUPPORTED;
        return mf_unfused_qmv(d, w, x, M, y);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        mf_ctx_gpu_forms(ctx, &s);
        return mf_gpu_qmv(ctx->gpu, d, w, x, M, y);
    case MF_IMPL_AUTO: {
        if (mf_route_gpu(ctx, &s)) {
            mf_ctx_gpu_forms(ctx, &s);
            st = mf_gpu_qmv(ctx->gpu, d, w, x, M, y);
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
    if (d->act != MF_ACT_NONE && !ex.kern->act)
        return MF_ERR_UNSUPPORTED;
    if (M > QMV_MAX_M && d->impl != MF_IMPL_REF)
        return run_gemm(&ex, d, w, x, M, y);
    int int8 = d->prec == MF_PREC_INT8 && mf_type_quantized(w->type) &&
               M <= QMV_MAX_M;
    return run_stream(&ex, d, w, x, M, y, int8);
}
