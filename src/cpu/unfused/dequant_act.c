/* Unfused dequantize + activation: the whole tensor dequantized to f32, then
 * one activation pass over it, then one conversion pass to the output type
 * (each pass over the whole array, the reference kernels doing the work). */
#include <stdint.h>
#include <stdlib.h>

#include "../kernels.h"
#include "unfused.h"

mf_status mf_unfused_dequant_act(const mf_dequant_desc *d, const mf_tensor *w,
                                 void *out)
{
    const mf_kernels *ref = mf_kernels_get(MF_ISA_SCALAR);
    const int64_t rows = w->e * w->n, K = w->k;
    float *f = out;
    if (d->out_type != MF_TYPE_F32) {
        if ((size_t)rows > SIZE_MAX / sizeof(float) / (size_t)K)
            return MF_ERR_OUT_OF_MEMORY;
        f = malloc((size_t)rows * (size_t)K * sizeof(float));
        if (!f)
            return MF_ERR_OUT_OF_MEMORY;
    }
    for (int64_t r = 0; r < rows; r++)
        ref->dequant_row(w, r, f + r * K);
    if (d->act != MF_ACT_NONE)
        ref->act(d->act, f, rows * K);
    if (d->out_type != MF_TYPE_F32) {
        ref->store(d->out_type, f, out, rows * K);
        free(f);
    }
    return MF_OK;
}
