/* avx2 combine kernels: out = sum_j w_j x_j (+ residual) on [d0, d1).
 *
 * combine: FMA accumulation (acc = fma(w_j, x_j, acc)), within the bound
 * mf_combine states. combine_exact: a multiply then an add per slot, in slot
 * order, residual last: the exact sequence, bit-identical to the reference
 * (the build's -ffp-contract=off, and the pragma for clang, keep the
 * compiler from fusing the scalar tail's operations).
 * 32 outputs per step in four accumulators, then 8 per step, then a scalar
 * tail. Each output is read from the residual before it is written, so out
 * may be the residual. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>

#include "avx2.h"
#include "vmath.h"

static void combine_fma(int32_t k, int64_t D, int64_t d0, int64_t d1,
                        const float *x_t, const float *w_t, const float *res_t,
                        float *out_t)
{
    int64_t i = d0;
    for (; i + 32 <= d1; i += 32) {
        const float *x0 = x_t + i;
        __m256 w0 = _mm256_set1_ps(w_t[0]);
        __m256 a0 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0));
        __m256 a1 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0 + 8));
        __m256 a2 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0 + 16));
        __m256 a3 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0 + 24));
        for (int32_t j = 1; j < k; j++) {
            const float *xj = x_t + (int64_t)j * D + i;
            __m256 wj = _mm256_set1_ps(w_t[j]);
            a0 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(xj), a0);
            a1 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(xj + 8), a1);
            a2 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(xj + 16), a2);
            a3 = _mm256_fmadd_ps(wj, _mm256_loadu_ps(xj + 24), a3);
        }
        if (res_t) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(res_t + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(res_t + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(res_t + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(res_t + i + 24));
        }
        _mm256_storeu_ps(out_t + i, a0);
        _mm256_storeu_ps(out_t + i + 8, a1);
        _mm256_storeu_ps(out_t + i + 16, a2);
        _mm256_storeu_ps(out_t + i + 24, a3);
    }
    for (; i + 8 <= d1; i += 8) {
        __m256 a = _mm256_mul_ps(_mm256_set1_ps(w_t[0]), _mm256_loadu_ps(x_t + i));
        for (int32_t j = 1; j < k; j++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(w_t[j]),
                                _mm256_loadu_ps(x_t + (int64_t)j * D + i), a);
        if (res_t)
            a = _mm256_add_ps(a, _mm256_loadu_ps(res_t + i));
        _mm256_storeu_ps(out_t + i, a);
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
    for (; i + 32 <= d1; i += 32) {
        const float *x0 = x_t + i;
        __m256 w0 = _mm256_set1_ps(w_t[0]);
        __m256 a0 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0));
        __m256 a1 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0 + 8));
        __m256 a2 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0 + 16));
        __m256 a3 = _mm256_mul_ps(w0, _mm256_loadu_ps(x0 + 24));
        for (int32_t j = 1; j < k; j++) {
            const float *xj = x_t + (int64_t)j * D + i;
            __m256 wj = _mm256_set1_ps(w_t[j]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(wj, _mm256_loadu_ps(xj)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(wj, _mm256_loadu_ps(xj + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(wj, _mm256_loadu_ps(xj + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(wj, _mm256_loadu_ps(xj + 24)));
        }
        if (res_t) {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(res_t + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(res_t + i + 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(res_t + i + 16));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(res_t + i + 24));
        }
        _mm256_storeu_ps(out_t + i, a0);
        _mm256_storeu_ps(out_t + i + 8, a1);
        _mm256_storeu_ps(out_t + i + 16, a2);
        _mm256_storeu_ps(out_t + i + 24, a3);
    }
    for (; i + 8 <= d1; i += 8) {
        __m256 a = _mm256_mul_ps(_mm256_set1_ps(w_t[0]), _mm256_loadu_ps(x_t + i));
        for (int32_t j = 1; j < k; j++)
            a = _mm256_add_ps(a, _mm256_mul_ps(_mm256_set1_ps(w_t[j]),
                                               _mm256_loadu_ps(x_t + (int64_t)j * D + i)));
        if (res_t)
            a = _mm256_add_ps(a, _mm256_loadu_ps(res_t + i));
        _mm256_storeu_ps(out_t + i, a);
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

void mf_avx2_init_combine(mf_kernels *k)
{
    k->combine = combine_fma;
    k->combine_exact = combine_exact;
}
