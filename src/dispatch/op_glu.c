/* mf_glu: validation, impl resolution, the element split across threads.
 *
 * The T * n outputs are one flat range split into equal parts (edges on
 * multiples of 32 elements); a part walks the rows it covers and calls the
 * kernel on its slice of each. Threads are used only above
 * GLU_PAR_MIN_ELEMS outputs: see its comment. */
#include <math.h>

#include "../cpu/unfused/unfused.h"
#include "internal.h"

/* Measured with a timing program on the development machine (AMD EPYC,
 * 2 cores, AVX-512 kernels, SwiGLU f32 SEPARATE, T = 1, pool workers
 * spinning; median of 301 x 10 calls, taken while the machine was shared,
 * load average ~10), 1 thread vs the split forced on 2:
 *   n = 768:    0.11 us vs 0.83 us
 *   n = 4096:   0.55 us vs 0.98 us
 *   n = 8192:   1.10 us vs 1.33 us
 *   n = 12288:  1.64 us vs 1.62 us
 *   n = 16384:  2.15 us vs 1.86 us
 *   n = 32768:  4.22 us vs 2.87 us
 * Waking the second worker and joining costs ~0.7 us: the split pays from
 * about 16K outputs (the other kinds cost more per element, so this is
 * conservative for them). */
#define GLU_PAR_MIN_ELEMS 16384

typedef struct glu_job {
    const mf_kernels *kern;
    mf_glu_desc d; /* defaults resolved */
    int64_t T, n;
    size_t isz, osz; /* element sizes of in_type and out_type */
    const unsigned char *gate, *up;
    unsigned char *out;
} glu_job;

static void glu_rows(const glu_job *jb, int64_t lo, int64_t hi)
{
    const int64_t n = jb->n;
    int64_t t = lo < n ? 0 : lo / n; /* one division per part at most */
    int64_t n0 = lo - t * n;
    for (; t * n < hi; t++, n0 = 0) {
        const int64_t n1 = hi - t * n < n ? hi - t * n : n;
        const unsigned char *g, *u;
        switch (jb->d.layout) {
        case MF_GLU_SEPARATE:
            g = jb->gate + (size_t)(t * n) * jb->isz;
            u = jb->up + (size_t)(t * n) * jb->isz;
            break;
        case MF_GLU_CONCAT:
            g = jb->gate + (size_t)(2 * t * n) * jb->isz;
            u = g + (size_t)n * jb->isz;
            break;
        default:
            g = jb->gate + (size_t)(2 * t * n) * jb->isz;
            u = NULL;
            break;
        }
        jb->kern->glu(&jb->d, n0, n1, g, u, jb->out + (size_t)(t * n) * jb->osz);
    }
}

static void glu_task(void *arg, int i, int n)
{
    const glu_job *jb = arg;
    int64_t lo, hi;
    mf_split(jb->T * jb->n, n, i, 32, &lo, &hi);
    glu_rows(jb, lo, hi);
}

static int float_type(mf_type t)
{
    return t == MF_TYPE_F32 || t == MF_TYPE_F16 || t == MF_TYPE_BF16;
}

static size_t type_size(mf_type t)
{
    return t == MF_TYPE_F32 ? 4 : 2;
}

static mf_status check(const mf_glu_desc *d, int64_t T, int64_t n,
                       const void *gate, const void *up, const void *out)
{
    if ((unsigned)d->impl >= MF_IMPL_COUNT_ ||
        (unsigned)d->kind >= MF_GLU_KIND_COUNT_ ||
        (unsigned)d->layout >= MF_GLU_LAYOUT_COUNT_ ||
        (unsigned)d->in_type >= MF_TYPE_COUNT_ ||
        (unsigned)d->out_type >= MF_TYPE_COUNT_)
        return MF_ERR_INVALID_ARG;
    if (d->kind == MF_GLU_SWIGLU_OAI &&
        (!isfinite(d->limit) || d->limit < 0 || !isfinite(d->alpha)))
        return MF_ERR_INVALID_ARG;
    if (!gate || !out || T < 1 || T > MF_MAX_T || n < 1 || n > MF_MAX_DIM)
        return MF_ERR_INVALID_ARG;
    if ((d->layout == MF_GLU_SEPARATE) != (up != NULL))
        return MF_ERR_INVALID_ARG;
    size_t ng, no;
    const size_t isz = float_type(d->in_type) ? type_size(d->in_type) : 4;
    const size_t osz = float_type(d->out_type) ? type_size(d->out_type) : 4;
    const size_t per_row = d->layout == MF_GLU_SEPARATE ? 1 : 2;
    if (!mf_mul_size((size_t)T * per_row, (size_t)n * isz, &ng) ||
        !mf_mul_size((size_t)T, (size_t)n * osz, &no))
        return MF_ERR_INVALID_ARG;
    if (mf_overlap(out, no, gate, ng) || mf_overlap(out, no, up, up ? ng : 0))
        return MF_ERR_INVALID_ARG;
    if (!float_type(d->in_type) || !float_type(d->out_type))
        return MF_ERR_UNSUPPORTED;
    return MF_OK;
}

static int glu_tasks(const mf_exec *ex, int64_t T, int64_t n)
{
    if (ex->threads < 2 || T * n < GLU_PAR_MIN_ELEMS)
        return 1;
    int64_t parts = T * n / 32;
    return parts < ex->threads ? (int)(parts < 1 ? 1 : parts) : ex->threads;
}

mf_status mf_glu(mf_ctx *ctx, const mf_glu_desc *d, int64_t T, int64_t n,
                 const void *gate, const void *up, void *out)
{
    if (!ctx || !d)
        return MF_ERR_INVALID_ARG;
    mf_status st = check(d, T, n, gate, up, out);
    if (st != MF_OK)
        return st;
    mf_exec ex;
    switch (d->impl) {
    case MF_IMPL_UNFUSED:
        return mf_unfused_glu(d, T, n, gate, up, out);
    case MF_IMPL_GPU:
        if (!ctx->gpu)
            return MF_ERR_UNSUPPORTED;
        return mf_gpu_glu(ctx->gpu, d, T, n, gate, up, out);
    case MF_IMPL_AUTO: {
        mf_op_shape s = {.op = MF_OP_GLU, .T = T, .N = n,
                         .wtype = d->in_type, .mode = (int)d->kind};
        if (mf_route_gpu(ctx, &s)) {
            st = mf_gpu_glu(ctx->gpu, d, T, n, gate, up, out);
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
    glu_job jb = {.kern = ex.kern, .d = *d, .T = T, .n = n,
                  .isz = type_size(d->in_type), .osz = type_size(d->out_type),
                  .gate = gate, .up = up, .out = out};
    if (jb.d.limit == 0.0f)
        jb.d.limit = 7.0f;
    if (jb.d.alpha == 0.0f)
        jb.d.alpha = 1.702f;
    const int tasks = glu_tasks(&ex, T, n);
    if (tasks <= 1)
        glu_rows(&jb, 0, T * n);
    else
        mf_exec_parallel(&ex, tasks, glu_task, &jb);
    return MF_OK;
}
