/* Gating helpers shared by the reference, the unfused baseline and the SIMD
 * gating kernels: the exact selection rule, the exact sigmoid score, and the
 * certified selection that lets a vector kernel select exactly like the
 * reference while computing most scores with a polynomial sigmoid.
 * Portable C, compiled without SIMD flags (src/cpu/ref/).
 *
 * Selection (every mode): keys are f32 values compared as numbers; NaN
 * logits/biases are first mapped to -Inf (mf_gating_canon). The k winners
 * are the k largest keys, a tie going to the lower expert index; they come
 * out in that order. */
#ifndef MF_CPU_REF_GATING_REF_H
#define MF_CPU_REF_GATING_REF_H

#include <math.h>

#include "../kernels.h"

/* NaN -> -Inf; everything else unchanged. */
static inline float mf_gating_canon(float x)
{
    return isnan(x) ? -INFINITY : x;
}

/* The scale the desc asks for (0 means 1). */
static inline float mf_gating_scale(const mf_gating_desc *d)
{
    return d->scale == 0.0f ? 1.0f : d->scale;
}

/* Number of groups in SIGMOID_GROUPED (1 = no groups). */
static inline int32_t mf_gating_groups(const mf_gating_desc *d)
{
    return d->mode == MF_GATING_SIGMOID_GROUPED && d->n_group > 1 ? d->n_group
                                                                   : 1;
}

/* Top-k of key[0..n): out[0..k) gets the indices of the k largest keys,
 * ties to the lower index, in descending order. Entries whose key is NaN
 * are skipped (never selected); at least k entries must not be NaN. */
void mf_gating_topk(const float *key, int32_t n, int32_t k, int32_t *out);

/* The reference's sigmoid of one logit, in f32 with libm's expf:
 * 1 / (1 + expf(-x)) for x >= 0, e / (1 + e) with e = expf(x) for x < 0;
 * a NaN logit counts as -Inf (0). Vector kernels call
 * this to get the exact value the reference compares. */
float mf_gating_sigmoid(float x);

/* Weight post-processing common to every impl: if renorm, w /= sum(w)
 * (sum in double, rounded to f32 once; a zero sum leaves the weights);
 * then w *= scale (skipped when scale is 1). */
void mf_gating_finish(float *w, int32_t k, int renorm, float scale);

/* The reference kernel (also the fallback of vector kernels for rare rows,
 * e.g. an +Inf logit in the softmax modes). */
void mf_ref_gating_row(const mf_gating_desc *d, const float *logits,
                       int32_t *idx, float *w, float *scratch);

/* SIGMOID_GROUPED selection from score bounds. lo[i] <= score(i) <= hi[i]
 * must hold for the reference's exact score (mf_gating_sigmoid(logit) +
 * canon(bias)). Experts that the bounds cannot rule out are re-scored
 * exactly, so idx is the reference's, and w gets the reference's final
 * weights bit for bit. scratch holds >= 2 * E + 16 floats. */
void mf_gating_sigmoid_certified(const mf_gating_desc *d, const float *logits,
                                 const float *lo, const float *hi,
                                 int32_t *idx, float *w, float *scratch);

#endif
