/* Unfused quantized matvec, as a plain C engine runs it: the whole weight
 * matrix dequantized to f32 first, one OpenBLAS sgemv per activation row,
 * then a bias pass, then an activation pass. The prec field is ignored (the
 * f32 weights make every result the EXACT one). */
#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>

#include "../kernels.h"
#include "unfused.h"

mf_status mf_unfused_qmv(const mf_qmv_desc *d, const mf_tensor *w,
                         const float *x, int64_t M, float *y)
{
    const mf_kernels *ref = mf_kernels_get(MF_ISA_SCALAR);
    const int64_t N = w->n, K = w->k;
    if ((size_t)N > SIZE_MAX / sizeof(float) / (size_t)K)
        return MF_ERR_OUT_OF_MEMORY;
    float *wf = malloc((size_t)N * (size_t)K * sizeof(float));
    if (!wf)
        return MF_ERR_OUT_OF_MEMORY;
    for (int64_t r = 0; r < N; r++)
        ref->dequant_row(w, r, wf + r * K);
    for (int64_t m = 0; m < M; m++)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)N, (int)K, 1.0f, wf,
                    (int)K, x + m * K, 1, 0.0f, y + m * N, 1);
    if (d->bias)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                y[m * N + n] += d->bias[n];
    if (d->act != MF_ACT_NONE)
        ref->act(d->act, y, M * N);
    free(wf);
    return MF_OK;
}
