/* The Vulkan side as seen from the front door. When the build has no Vulkan,
 * src/gpu/gpu_none.c implements these to report MF_ERR_UNSUPPORTED. Each
 * mf_gpu_<op> takes exactly the public op's arguments (already validated)
 * and runs it on the device with host arrays in and out. Not installed. */
#ifndef MF_GPU_GPU_H
#define MF_GPU_GPU_H

#include <moefuse/moefuse.h>

typedef struct mf_gpu mf_gpu;

/* Brings up a device as the options say. MF_ERR_UNSUPPORTED (no Vulkan in
 * this build), MF_ERR_DEVICE (no loader, no device, missing features),
 * MF_ERR_OUT_OF_MEMORY. */
mf_status mf_gpu_create(const mf_ctx_options *opts, mf_gpu **out);
void mf_gpu_destroy(mf_gpu *g);

mf_status mf_gpu_gating(mf_gpu *g, const mf_gating_desc *d,
                        const float *logits, int64_t T, int32_t *idx,
                        float *weights);
mf_status mf_gpu_combine(mf_gpu *g, const mf_combine_desc *d, int64_t T,
                         int32_t k, int64_t D, const float *x, const float *w,
                         const float *residual, float *out);
mf_status mf_gpu_glu(mf_gpu *g, const mf_glu_desc *d, int64_t T, int64_t n,
                     const void *gate, const void *up, void *out);
mf_status mf_gpu_dequant_act(mf_gpu *g, const mf_dequant_desc *d,
                             const mf_tensor *w, void *out);
mf_status mf_gpu_qmv(mf_gpu *g, const mf_qmv_desc *d, const mf_tensor *w,
                     const float *x, int64_t M, float *y);
mf_status mf_gpu_moe_gate_up(mf_gpu *g, const mf_moe_gate_up_desc *d,
                             int64_t T, int32_t k, const float *x,
                             const int32_t *idx, float *h);
mf_status mf_gpu_moe_down_combine(mf_gpu *g, const mf_moe_down_desc *d,
                                  int64_t T, int32_t k, const float *h,
                                  const int32_t *idx, const float *w,
                                  const float *residual, float *y);

#endif
