/* The context's GPU as the public API describes it. */
#include "internal.h"

mf_status mf_ctx_gpu_info(const mf_ctx *ctx, mf_gpu_info *out)
{
    if (!ctx || !out)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_ctx_gpu_status(ctx);
    if (st != MF_OK)
        return st;
    return mf_gpu_info_get(ctx->gpu, out);
}
