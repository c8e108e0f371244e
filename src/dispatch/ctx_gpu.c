/* The context's GPU as the public API describes it. */
#include "internal.h"

mf_status mf_ctx_gpu_info(const mf_ctx *ctx, mf_gpu_info *out)
{
    if (!ctx || !out)
        return MF_ERR_INVALID_ARG;
    if (!ctx->gpu)
        return ctx->gpu_status != MF_OK ? ctx->gpu_status : MF_ERR_DEVICE;
    return mf_gpu_info_get(ctx->gpu, out);
}
