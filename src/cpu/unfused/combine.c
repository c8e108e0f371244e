/* Unfused combine: what an engine without a fused kernel runs per token —
 * one scale pass per slot into a temporary (tmp_j = w_j * x_j), one sum
 * pass per slot (acc = tmp_0, acc = acc + tmp_j in slot order), then one
 * residual add pass (out = acc + residual). Every product and sum is
 * rounded to f32 with no fused multiply-add (the library builds with
 * -ffp-contract=off), which is exactly mf_combine's exact sequence: the
 * result is bit-identical to the reference. out may be the residual. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <stdint.h>
#include <stdlib.h>

#include "unfused.h"

mf_status mf_unfused_combine(int64_t T, int32_t k, int64_t D, const float *x,
                             const float *w, const float *residual,
                             float *out)
{
    /* k scaled rows and one accumulator row, reused for every token */
    if ((size_t)k + 1 > SIZE_MAX / sizeof(float) / (size_t)D)
        return MF_ERR_OUT_OF_MEMORY;
    float *tmp = malloc(((size_t)k + 1) * (size_t)D * sizeof(float));
    if (!tmp)
        return MF_ERR_OUT_OF_MEMORY;
    float *acc = tmp + (size_t)k * (size_t)D;
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * k * D;
        const float *wt = w + t * k;
        for (int32_t j = 0; j < k; j++) {
            float *tj = tmp + (size_t)j * (size_t)D;
            const float *xj = xt + (int64_t)j * D;
            const float wj = wt[j];
            for (int64_t i = 0; i < D; i++)
                tj[i] = wj * xj[i];
        }
        for (int64_t i = 0; i < D; i++)
            acc[i] = tmp[i];
        for (int32_t j = 1; j < k; j++) {
            const float *tj = tmp + (size_t)j * (size_t)D;
            for (int64_t i = 0; i < D; i++)
                acc[i] = acc[i] + tj[i];
        }
        float *ot = out + t * D;
        if (residual) {
            const float *rt = residual + t * D;
            for (int64_t i = 0; i < D; i++)
                ot[i] = acc[i] + rt[i];
        } else {
            for (int64_t i = 0; i < D; i++)
                ot[i] = acc[i];
        }
    }
    free(tmp);
    return MF_OK;
}
