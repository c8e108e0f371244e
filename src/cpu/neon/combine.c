/* neon combine kernels: out = sum_j w_j x_j (+ residual) on [d0, d1).
 *
 * combine: FMA accumulation (acc = fma(w_j, x_j, acc)), within the bound
 * mf_combine states. combine_exact: a multiply then an add per slot, in slot
 * order, residual last: the exact sequence, bit-identical to the reference
 * (the build's -ffp-contract=off, and the pragma for clang, keep the
 * compiler from fusing vmulq/vaddq or the scalar tail's operations).
 * 16 outputs per step in four accumulators, then 4 per step, then a scalar
 * tail. Each output is read from the residual before it is written, so out
 * may be the residual. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "neon.h"
#include "vmath.h"

#if defined(__aarch64__)

#include <math.h>

static void combine_fma(int32_t k, int64_t D, int64_t d0, int64_t d1,
                        const float *x_t, const float *w_t, const float *res_t,
                        float *out_t)
{
    int64_t i = d0;
    for (; i + 16 <= d1; i += 16) {
        const float *x0 = x_t + i;
        const float w0 = w_t[0];
        float32x4_t a0 = vmulq_n_f32(vld1q_f32(x0), w0);
        float32x4_t a1 = vmulq_n_f32(vld1q_f32(x0 + 4), w0);
        float32x4_t a2 = vmulq_n_f32(vld1q_f32(x0 + 8), w0);
        float32x4_t a3 = vmulq_n_f32(vld1q_f32(x0 + 12), w0);
        for (int32_t j = 1; j < k; j++) {
            const float *xj = x_t + (int64_t)j * D + i;
            const float wj = w_t[j];
            a0 = vfmaq_n_f32(a0, vld1q_f32(xj), wj);
            a1 = vfmaq_n_f32(a1, vld1q_f32(xj + 4), wj);
            a2 = vfmaq_n_f32(a2, vld1q_f32(xj + 8), wj);
            a3 = vfmaq_n_f32(a3, vld1q_f32(xj + 12), wj);
        }
        if (res_t) {
            a0 = vaddq_f32(a0, vld1q_f32(res_t + i));
            a1 = vaddq_f32(a1, vld1q_f32(res_t + i + 4));
            a2 = vaddq_f32(a2, vld1q_f32(res_t + i + 8));
            a3 = vaddq_f32(a3, vld1q_f32(res_t + i + 12));
        }
        vst1q_f32(out_t + i, a0);
        vst1q_f32(out_t + i + 4, a1);
        vst1q_f32(out_t + i + 8, a2);
        vst1q_f32(out_t + i + 12, a3);
    }
    for (; i + 4 <= d1; i += 4) {
        float32x4_t a = vmulq_n_f32(vld1q_f32(x_t + i), w_t[0]);
        for (int32_t j = 1; j < k; j++)
            a = vfmaq_n_f32(a, vld1q_f32(x_t + (int64_t)j * D + i), w_t[j]);
        if (res_t)
            a = vaddq_f32(a, vld1q_f32(res_t + i));
        vst1q_f32(out_t + i, a);
    }
    for (; i < d1; i++) {
        float a = w_t[0] * x_t[i];
        for (int32_t j = 1; j < k; j++)
            a = fmaf(w_t[j], x_t[(int64_t)j * D + i], a);
        out_t[i] = res_t ? a + res_t[i] : a;
    }
}

static void combine_exact(int32_t k, int64_t D, int64_t d0, int64_t d1,
                          const float *x_t, const float *w_t,
                          const float *res_t, float *out_t)
{
    int64_t i = d0;
    for (; i + 16 <= d1; i += 16) {
        const float *x0 = x_t + i;
        const float w0 = w_t[0];
        float32x4_t a0 = vmulq_n_f32(vld1q_f32(x0), w0);
        float32x4_t a1 = vmulq_n_f32(vld1q_f32(x0 + 4), w0);
        float32x4_t a2 = vmulq_n_f32(vld1q_f32(x0 + 8), w0);
        float32x4_t a3 = vmulq_n_f32(vld1q_f32(x0 + 12), w0);
        for (int32_t j = 1; j < k; j++) {
            const float *xj = x_t + (int64_t)j * D + i;
            const float wj = w_t[j];
            a0 = vaddq_f32(a0, vmulq_n_f32(vld1q_f32(xj), wj));
            a1 = vaddq_f32(a1, vmulq_n_f32(vld1q_f32(xj + 4), wj));
            a2 = vaddq_f32(a2, vmulq_n_f32(vld1q_f32(xj + 8), wj));
            a3 = vaddq_f32(a3, vmulq_n_f32(vld1q_f32(xj + 12), wj));
        }
        if (res_t) {
            a0 = vaddq_f32(a0, vld1q_f32(res_t + i));
            a1 = vaddq_f32(a1, vld1q_f32(res_t + i + 4));
            a2 = vaddq_f32(a2, vld1q_f32(res_t + i + 8));
            a3 = vaddq_f32(a3, vld1q_f32(res_t + i + 12));
        }
        vst1q_f32(out_t + i, a0);
        vst1q_f32(out_t + i + 4, a1);
        vst1q_f32(out_t + i + 8, a2);
        vst1q_f32(out_t + i + 12, a3);
    }
    for (; i + 4 <= d1; i += 4) {
        float32x4_t a = vmulq_n_f32(vld1q_f32(x_t + i), w_t[0]);
        for (int32_t j = 1; j < k; j++)
            a = vaddq_f32(a, vmulq_n_f32(vld1q_f32(x_t + (int64_t)j * D + i), w_t[j]));
        if (res_t)
            a = vaddq_f32(a, vld1q_f32(res_t + i));
        vst1q_f32(out_t + i, a);
    }
    for (; i < d1; i++) {
        float a = w_t[0] * x_t[i];
        for (int32_t j = 1; j < k; j++) {
            float p = w_t[j] * x_t[(int64_t)j * D + i];
            a = a + p;
        }
        out_t[i] = res_t ? a + res_t[i] : a;
    }
}

void mf_neon_init_combine(mf_kernels *k)
{
    k->combine = combine_fma;
    k->combine_exact = combine_exact;
}

#endif
