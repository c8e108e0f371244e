/* The GPU side of a build without Vulkan: every entry says unsupported. */
#include "gpu.h"

mf_status mf_gpu_create(const mf_ctx_options *opts, mf_gpu **out)
{
    (void)opts;
    (void)out;
    return MF_ERR_UNSUPPORTED;
}

void mf_gpu_destroy(mf_gpu *g) { (void)g; }

mf_status mf_gpu_gating(mf_gpu *g, const mf_gating_desc *d,
                        const float *logits, int64_t T, int32_t *idx,
                        float *weights)
{
    (void)g, (void)d, (void)logits, (void)T, (void)idx, (void)weights;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_combine(mf_gpu *g, const mf_combine_desc *d, int64_t T,
                         int32_t k, int64_t D, const float *x, const float *w,
                         const float *residual, float *out)
{
    (void)g, (void)d, (void)T, (void)k, (void)D, (void)x, (void)w;
    (void)residual, (void)out;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_glu(mf_gpu *g, const mf_glu_desc *d, int64_t T, int64_t n,
                     const void *gate, const void *up, void *out)
{
    (void)g, (void)d, (void)T, (void)n, (void)gate, (void)up, (void)out;
    return MF_ERR_UNSUPPORTED;
}

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

int mf_gpu_usable(const mf_gpu *g)
{
    (void)g;
    return 0;
}

mf_status mf_gpu_info_get(const mf_gpu *g, mf_gpu_info *out)
{
    (void)g, (void)out;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_bench_empty(mf_gpu *g, mf_gpu_timing *t)
{
    (void)g, (void)t;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_bench_steps(mf_gpu *g, mf_gpu_timing *t)
{
    (void)g, (void)t;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_bench_copy(mf_gpu *g, mf_gpu_copy_kind kind, size_t bytes,
                            mf_gpu_timing *t)
{
    (void)g, (void)kind, (void)bytes, (void)t;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_bench_replay(mf_gpu *g, mf_gpu_op op, mf_gpu_timing *t)
{
    (void)g, (void)op, (void)t;
    return MF_ERR_UNSUPPORTED;
}

void mf_gpu_inject_fault(mf_gpu *g, mf_gpu_fault f) { (void)g, (void)f; }
void mf_gpu_inject_fault_after(mf_gpu *g, mf_gpu_fault f, int skip)
{
    (void)g, (void)f, (void)skip;
}

int mf_gpu_validation_messages(void) { return 0; }

int mf_gpu_pipeline_stats(const mf_gpu *g,
                          void (*fn)(void *user, const mf_gpu_pipe_info *p),
                          void *user)
{
    (void)g, (void)fn, (void)user;
    return -1;
}

void mf_gpu_gating_rows(const mf_gpu *g, int64_t *device_rows,
                        int64_t *host_rows)
{
    (void)g;
    *device_rows = 0;
    *host_rows = 0;
}

mf_status mf_gpu_weights_upload(mf_gpu *g, const mf_tensor *t,
                                mf_progress_fn progress, void *user)
{
    (void)g, (void)t, (void)progress, (void)user;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_weights_evict(mf_gpu *g, const mf_tensor *t)
{
    (void)g, (void)t;
    return MF_OK;
}

mf_status mf_gpu_weights_evict_range(mf_gpu *g, const void *p, size_t bytes)
{
    (void)g, (void)p, (void)bytes;
    return MF_OK;
}

void mf_gpu_weights_stats(const mf_gpu *g, mf_weights_stats *out)
{
    (void)g;
    *out = (mf_weights_stats){0};
}

mf_status mf_gpu_part_bytes_set(mf_gpu *g, uint64_t bytes)
{
    (void)g, (void)bytes;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_moe_chain(mf_gpu *g, const mf_gpu_chain_desc *d,
                           const float *x, const float *logits, int64_t T,
                           const float *residual, float *y, int32_t *idx,
                           float *weights, mf_gpu_chain_times *times)
{
    (void)g, (void)d, (void)x, (void)logits, (void)T, (void)residual;
    (void)y, (void)idx, (void)weights, (void)times;
    return MF_ERR_UNSUPPORTED;
}

mf_status mf_gpu_bench_chain(mf_gpu *g, mf_gpu_chain_times *t)
{
    (void)g, (void)t;
    return MF_ERR_UNSUPPORTED;
}

void mf_gpu_forms_use(mf_gpu *g, const mf_gpu_forms *f)
{
    (void)g;
    (void)f;
}

void mf_gpu_forms_current(const mf_gpu *g, mf_gpu_forms *out)
{
    (void)g;
    mf_gpu_forms_auto(out);
}
