/* Impl resolution, parallel runs, small checked-arithmetic helpers. */
#include <stdint.h>

#include "internal.h"

mf_status mf_exec_resolve(const mf_ctx *ctx, mf_impl impl, mf_exec *out)
{
    mf_isa isa;
    int threads = ctx->threads;
    switch (impl) {
    case MF_IMPL_AUTO:
    case MF_IMPL_CPU: isa = ctx->isa; break;
    case MF_IMPL_REF: isa = MF_ISA_SCALAR; threads = 1; break;
    case MF_IMPL_SCALAR: isa = MF_ISA_SCALAR; break;
    case MF_IMPL_AVX2: isa = MF_ISA_AVX2; break;
    case MF_IMPL_AVX512: isa = MF_ISA_AVX512; break;
    case MF_IMPL_NEON: isa = MF_ISA_NEON; break;
    default: return MF_ERR_INVALID_ARG;
    }
    const mf_kernels *k = mf_kernels_get(isa);
    if (!k || !mf_cpu_info_cached()->isa_available[isa])
        return MF_ERR_UNSUPPORTED;
    out->kern = k;
    out->threads = threads;
    out->pool = threads > 1 ? ctx->pool : NULL;
    return MF_OK;
}

void mf_exec_parallel(const mf_exec *ex, int max_tasks,
                      void (*fn)(void *arg, int i, int n), void *arg)
{
    int n = ex->threads < max_tasks ? ex->threads : max_tasks;
    if (n <= 1 || !ex->pool) {
        fn(arg, 0, 1);
        return;
    }
    mf_pool_run(ex->pool, n, fn, arg);
}

void mf_split(int64_t total, int n, int i, int64_t align, int64_t *lo,
              int64_t *hi)
{
    if (align < 1)
        align = 1;
    int64_t units = (total + align - 1) / align;
    int64_t a = units * i / n * align, b = units * (i + 1) / n * align;
    *lo = a < total ? a : total;
    *hi = b < total ? b : total;
}

int mf_mul_size(size_t a, size_t b, size_t *out)
{
    if (a && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

int mf_overlap(const void *a, size_t na, const void *b, size_t nb)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return na && nb && x < y + nb && y < x + na;
}
