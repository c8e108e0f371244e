/* The quantized-weight ops on the device: not implemented by this backend
 * yet, so the front doors run them on the CPU (MF_IMPL_GPU gets
 * MF_ERR_UNSUPPORTED). */
#include "gpu_internal.h"

mf_status mf_gpu_dequant_act(mf_gpu *g, const mf_dequant_desc *d,
                             const mf_tensor *w, void *out)
{
    (void)g, (void)d, (void)w, (void)out;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_qmv(mf_gpu *g, const mf_qmv_desc *d, const mf_tensor *w,
                     const float *x, int64_t M, float *y)
{
    (void)g, (void)d, (void)w, (void)x, (void)M, (void)y;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_moe_gate_up(mf_gpu *g, const mf_moe_gate_up_desc *d,
                             int64_t T, int32_t k, const float *x,
                             const int32_t *idx, float *h)
{
    (void)g, (void)d, (void)T, (void)k, (void)x, (void)idx, (void)h;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_moe_down_combine(mf_gpu *g, const mf_moe_down_desc *d,
                                  int64_t T, int32_t k, const float *h,
                                  const int32_t *idx, const float *w,
                                  const float *residual, float *y)
{
    (void)g, (void)d, (void)T, (void)k, (void)h, (void)idx, (void)w;
    (void)residual, (void)y;
    return MF_ERR_UNSUPPORTED;
}
