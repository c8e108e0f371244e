/* avx512 combine kernels: out = sum_j w_j x_j (+ residual) on [d0, d1).
 *
 * combine: FMA accumulation (acc = fma(w_j, x_j, acc)), within the bound
 * mf_combine states. combine_exact: a multiply then an add per slot, in slot
 * order, residual last: the exact sequence, bit-identical to the reference
 * (the build's -ffp-contract=off, and the pragma for clang, keep the
 * compiler from fusing them).
 * 64 outputs per step in four accumulators; the tail uses masked loads and
 * stores, so no byte outside [d0, d1) is touched. Each output is read from
 * the residual before it is written, so out may be the residual. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "avx512.h"
#include "vmath.h"

static void combine_fma(int32_t k, int64_t D, int64_t d0, int64_t d1,
                        const float *x_t, const float *w_t, const float *res_t,
                        float *out_t)
{
    int64_t i = d0;
    for (; i + 64 <= d1; i += 64) {
        const float *x0 = x_t + i;
        __m512 w0 = _mm512_set1_ps(w_t[0]);
        __m512 a0 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0));
        __m512 a1 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0 + 16));
        __m512 a2 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0 + 32));
        __m512 a3 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0 + 48));
        for (int32_t j = 1; j < k; j++) {
            const float *xj = x_t + (int64_t)j * D + i;
            __m512 wj = _mm512_set1_ps(w_t[j]);
            a0 = _mm512_fmadd_ps(wj, _mm512_loadu_ps(xj), a0);
            a1 = _mm512_fmadd_ps(wj, _mm512_loadu_ps(xj + 16), a1);
            a2 = _mm512_fmadd_ps(wj, _mm512_loadu_ps(xj + 32), a2);
            a3 = _mm512_fmadd_ps(wj, _mm512_loadu_ps(xj + 48), a3);
        }
        if (res_t) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(res_t + i));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(res_t + i + 16));
            a2 = _mm512_add_ps(a2, _mm512_loadu_ps(res_t + i + 32));
            a3 = _mm512_add_ps(a3, _mm512_loadu_ps(res_t + i + 48));
        }
        _mm512_storeu_ps(out_t + i, a0);
        _mm512_storeu_ps(out_t + i + 16, a1);
        _mm512_storeu_ps(out_t + i + 32, a2);
        _mm512_storeu_ps(out_t + i + 48, a3);
    }
    for (; i < d1; i += 16) {
        const __mmask16 m = mf512_head(d1 - i);
        __m512 a = _mm512_mul_ps(_mm512_set1_ps(w_t[0]),
                                 _mm512_maskz_loadu_ps(m, x_t + i));
        for (int32_t j = 1; j < k; j++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(w_t[j]),
                                _mm512_maskz_loadu_ps(m, x_t + (int64_t)j * D + i),
                                a);
        if (res_t)
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, res_t + i));
        _mm512_mask_storeu_ps(out_t + i, m, a);
    }
}

static void combine_exact(int32_t k, int64_t D, int64_t d0, int64_t d1,
                          const float *x_t, const float *w_t,
                          const float *res_t, float *out_t)
{
    int64_t i = d0;
    for (; i + 64 <= d1; i += 64) {
        const float *x0 = x_t + i;
        __m512 w0 = _mm512_set1_ps(w_t[0]);
        __m512 a0 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0));
        __m512 a1 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0 + 16));
        __m512 a2 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0 + 32));
        __m512 a3 = _mm512_mul_ps(w0, _mm512_loadu_ps(x0 + 48));
        for (int32_t j = 1; j < k; j++) {
            const float *xj = x_t + (int64_t)j * D + i;
            __m512 wj = _mm512_set1_ps(w_t[j]);
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(wj, _mm512_loadu_ps(xj)));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(wj, _mm512_loadu_ps(xj + 16)));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(wj, _mm512_loadu_ps(xj + 32)));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(wj, _mm512_loadu_ps(xj + 48)));
        }
        if (res_t) {
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(res_t + i));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(res_t + i + 16));
            a2 = _mm512_add_ps(a2, _mm512_loadu_ps(res_t + i + 32));
            a3 = _mm512_add_ps(a3, _mm512_loadu_ps(res_t + i + 48));
        }
        _mm512_storeu_ps(out_t + i, a0);
        _mm512_storeu_ps(out_t + i + 16, a1);
        _mm512_storeu_ps(out_t + i + 32, a2);
        _mm512_storeu_ps(out_t + i + 48, a3);
    }
    for (; i < d1; i += 16) {
        const __mmask16 m = mf512_head(d1 - i);
        __m512 a = _mm512_mul_ps(_mm512_set1_ps(w_t[0]),
                                 _mm512_maskz_loadu_ps(m, x_t + i));
        for (int32_t j = 1; j < k; j++)
            a = _mm512_add_ps(a, _mm512_mul_ps(_mm512_set1_ps(w_t[j]),
                                               _mm512_maskz_loadu_ps(m, x_t + (int64_t)j * D + i)));
        if (res_t)
            a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, res_t + i));
        _mm512_mask_storeu_ps(out_t + i, m, a);
    }
}

void mf_avx512_init_combine(mf_kernels *k)
{
    k->combine = combine_fma;
    k->combine_exact = combine_exact;
}
