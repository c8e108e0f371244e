/* mf_combine on the device: not in this backend yet (the front door runs
 * it on the CPU; MF_IMPL_GPU gets MF_ERR_UNSUPPORTED). */
#include "gpu_internal.h"

mf_status mf_gpu_combine(mf_gpu *g, const mf_combine_desc *d, int64_t T,
                         int32_t k, int64_t D, const float *x, const float *w,
                         const float *residual, float *out)
{
    (void)g, (void)d, (void)T, (void)k, (void)D, (void)x, (void)w;
    (void)residual, (void)out;
    return MF_ERR_UNSUPPORTED;
}
