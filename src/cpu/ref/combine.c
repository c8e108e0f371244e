/* The scalar reference of mf_combine, and its exact variant.
 *
 * Per element, in this order, every product and sum rounded to f32 and no
 * fused multiply-add (the library builds with -ffp-contract=off; clang also
 * gets the pragma below):
 *   acc = w0*x0; acc = acc + w1*x1; ...; acc = acc + w_{k-1}*x_{k-1};
 *   out = acc + residual
 * The reference uses this sequence for both entries: it is the exact result
 * and the oracle of the FMA variant. Elements are processed in blocks of
 * COMBINE_BLOCK with the slot loop outside, accumulating in a local array,
 * so out may be the residual itself (it is read before it is written). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "ref.h"

#define COMBINE_BLOCK 256

static void combine_ref(int32_t k, int64_t D, int64_t d0, int64_t d1,
                        const float *x_t, const float *w_t,
                        const float *res_t, float *out_t)
{
    float acc[COMBINE_BLOCK];
    for (int64_t b0 = d0; b0 < d1; b0 += COMBINE_BLOCK) {
        const int64_t nb = d1 - b0 < COMBINE_BLOCK ? d1 - b0 : COMBINE_BLOCK;
        const float w0 = w_t[0];
        const float *x0 = x_t + b0;
        for (int64_t i = 0; i < nb; i++)
            acc[i] = w0 * x0[i];
        for (int32_t j = 1; j < k; j++) {
            const float wj = w_t[j];
            const float *xj = x_t + (int64_t)j * D + b0;
            for (int64_t i = 0; i < nb; i++) {
                float p = wj * xj[i];
                acc[i] = acc[i] + p;
            }
        }
        if (res_t) {
            for (int64_t i = 0; i < nb; i++)
                out_t[b0 + i] = acc[i] + res_t[b0 + i];
        } else {
            for (int64_t i = 0; i < nb; i++)
                out_t[b0 + i] = acc[i];
        }
    }
}

void mf_ref_init_combine(mf_kernels *k)
{
    k->combine = combine_ref;
    k->combine_exact = combine_ref;
}
