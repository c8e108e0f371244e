/* Weight residency front door (weights.h): validation, then the context's
 * GPU (src/gpu/wcache.c). */
#include "internal.h"

mf_status mf_weights_upload(mf_ctx *ctx, const mf_tensor *t,
                            mf_progress_fn progress, void *user)
{
    if (!ctx || !t)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_tensor_check(t);
    if (st != MF_OK)
        return st;
    if (!ctx->gpu)
        return MF_ERR_UNSUPPORTED;
    return mf_gpu_weights_upload(ctx->gpu, t, progress, user);
}

mf_status mf_weights_evict(mf_ctx *ctx, const mf_tensor *t)
{
    if (!ctx)
        return MF_ERR_INVALID_ARG;
    if (t) {
        mf_status st = mf_tensor_check(t);
        if (st != MF_OK)
            return st;
    }
    if (!ctx->gpu)
        return MF_OK;
    return mf_gpu_weights_evict(ctx->gpu, t);
}

mf_status mf_weights_evict_range(mf_ctx *ctx, const void *p, size_t bytes)
{
    if (!ctx || !p || bytes == 0)
        return MF_ERR_INVALID_ARG;
    if (!ctx->gpu)
        return MF_OK;
    return mf_gpu_weights_evict_range(ctx->gpu, p, bytes);
}

mf_status mf_weights_stats_get(const mf_ctx *ctx, mf_weights_stats *out)
{
    if (!ctx || !out)
        return MF_ERR_INVALID_ARG;
    mf_gpu_weights_stats(ctx->gpu, out);
    return MF_OK;
}
