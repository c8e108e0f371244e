/* mf_dequant_act: validation, impl resolution, the row-parallel CPU run.
 *
 * Each row is dequantized by the kernel set's dequant_row, then (when asked)
 * activated in place and converted to the output type while it is in L1.
 * With an f32 output the row is written straight into `out`; other output
 * types go through one f32 row buffer per task. */
#include <stdlib.h>

#include "../cpu/unfused/unfused.h"
#include "tensor_span.h"

/* Below this many weight bytes a call runs on one thread. Measured on the
 * 2-core development machine (Q4_0 rows of K = 2048 to f32, best of 5000
 * calls): 9 KiB takes 0.50 us on one thread and 0.78 us on two, 36 KiB
 * 1.84 us against 1.45 us; they tie near 20 KiB. */
#define DQ_MIN_PARALLEL_BYTES (24 * 1024)

/* f32 row buffers up to this many floats per task live on the caller's
 * stack; longer rows take one malloc per call. */
#define DQ_STACK_FLOATS 4096

typedef struct dq_job {
    const mf_kernels *kern;
    const mf_tensor *w;
    mf_act act;
    mf_type out_type;
    void *out;
    float *tmp; /* [tasks, K] f32 row buffers (non-f32 outputs) */
} dq_job;

static size_t type_size(mf_type t) { return t == MF_TYPE_F32 ? 4 : 2; }

static void dq_task(void *arg, int i, int n)
{
    const dq_job *jb = arg;
    const int64_t K = jb->w->k;
    int64_t lo, hi;
    mf_split(jb->w->e * jb->w->n, n, i, 4, &lo, &hi);
    for (int64_t r = lo; r < hi; r++) {
        float *f = jb->out_type == MF_TYPE_F32 ? (float *)jb->out + r * K
                                               : jb->tmp + (int64_t)i * K;
        jb->kern->dequant_row(jb->w, r, f);
        if (jb->act != MF_ACT_NONE)
            jb->kern->act(jb->act, f, K);
        if (jb->out_type != MF_TYPE_F32)
            jb->kern->store(jb->out_type, f,
                            (unsigned char *)jb->out + (size_t)(r * K) * 2, K);
    }
}

static mf_status run_cpu(const mf_exec *ex, const mf_dequant_desc *d,
                         const mf_tensor *w, void *out)
{
    if ((d->act != MF_ACT_NONE && !ex->kern->act) ||
        (d->out_type != MF_TYPE_F32 && !ex->kern->store))
        return MF_ERR_UNSUPPORTED;
    const int64_t rows = w->e * w->n, K = w->k;
    size_t bytes = (size_t)rows * mf_tensor_span_row_cost(w);
    int tasks = bytes < DQ_MIN_PARALLEL_BYTES ? 1 : ex->threads;
    if (tasks > rows)
        tasks = (int)rows;
    _Alignas(64) float stack[DQ_STACK_FLOATS];
    float *heap = NULL;
    dq_job jb = {.kern = ex->kern, .w = w, .act = d->act,
                 .out_type = d->out_type, .out = out, .tmp = stack};
    if (d->out_type != MF_TYPE_F32 && (int64_t)tasks * K > DQ_STACK_FLOATS) {
        heap = malloc((size_t)tasks * (size_t)K * sizeof(float));
        if (!heap)
            return MF_ERR_OUT_OF_MEMORY;
        jb.tmp = heap;
    }
    mf_exec_parallel(ex, tasks, dq_task, &jb);
    free(heap);
    return MF_OK;
}

static mf_status check(const mf_dequant_desc *d, const mf_tensor *w,
                       const void *out)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (unsigned)d->act >= MF_ACT_COUNT_ ||
        (unsigned)d->out_type >= MF_TYPE_COUNT_ || !out)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_tensor_check(w);
    if (st != MF_OK)
        return st;
    if (d->out_type != MF_TYPE_F32 && d->out_type != MF_TYPE_F16 &&
        d->out_type != MF_TYPE_BF16)
        return MF_ERR_UNSUPPORTED;
    size_t elems, bytes;
    if (!mf_mul_size((size_t)w->e * (size_t)w->n, (size_t)w->k, &elems) ||
        !mf_mul_size(elems, type_size(d->out_type), &bytes))
        return MF_ERR_INVALID_ARG;
    if (mf_tensor_span_overlaps(w, out, bytes))
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}

mf_status mf_dequant_act(mf_ctx *ctx, const mf_dequant_desc *d,
                         const mf_tensor *w, void *out)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    mf_status st = check(d, w, out);
    if (st != MF_OK)
        return st;
    switch (d->impl) {
    case MF_IMPL_UNFUSED: {
        const mf_kernels *ref = mf_kernels_get(MF_ISA_SCALAR);
        if ((d->act != MF_ACT_NONE && !ref->act) ||
            (d->out_type != MF_TYPE_F32 && !ref->store))
            return MF_ERR_UNSUPPORTED;
        return mf_unfused_dequant_act(d, w, out);
    }
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        return mf_gpu_dequant_act(ctx->gpu, d, w, out);
    case MF_IMPL_AUTO: {
        mf_op_shape s = {.op = MF_OP_DEQUANT, .E = w->e, .N = w->n,
                         .K = w->k, .wtype = w->type, .mode = (int)d->act};
        if (mf_route_gpu(ctx, &s)) {
            st = mf_gpu_dequant_act(ctx->gpu, d, w, out);
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
    return run_cpu(&ex, d, w, out);
}
