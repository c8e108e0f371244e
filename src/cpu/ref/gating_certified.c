/* Certified SIGMOID_GROUPED selection for vector kernels.
 *
 * A vector kernel computes each expert's score with a polynomial sigmoid and
 * passes bounds lo <= exact <= hi (exact being the reference's f32 score).
 * Only experts that the bounds cannot rule out are re-scored with the
 * reference's own arithmetic (mf_gating_sigmoid, libm expf), and every
 * decision compares exact scores, so the selection is the reference's:
 *  - an expert is ruled out of a group's top-2 when two experts of the group
 *    have lo >= L > its hi (L the group's second largest lo): both score
 *    strictly higher, whatever the tie rule;
 *  - group scores then come from exact top-2 scores, and the group choice is
 *    the reference's, on the same floats;
 *  - among kept experts, one is ruled out of the top-k when k kept experts
 *    have lo >= L > its hi (L the k-th largest kept lo).
 * The final weights are the reference's s of the selected experts, put
 * through the same mf_gating_finish: bit-identical. */
#include <math.h>
#include <string.h>

#include "gating_ref.h"

#define GATING_MAX_E 4096

static float exact_score(const mf_gating_desc *d, const float *logits,
                         float *ex, int32_t i)
{
    if (isnan(ex[i])) {
        float s = mf_gating_sigmoid(logits[i]);
        ex[i] = d->bias ? s + mf_gating_canon(d->bias[i]) : s;
    }
    return ex[i];
}

/* Exact top-2 score sum of the group [b, b + gs), gs >= 2. */
static float group_score(const mf_gating_desc *d, const float *logits,
                         const float *lo, const float *hi, float *ex,
                         int32_t b, int32_t gs)
{
    /* L: the second largest lo, repeats counted (5, 5 gives 5). */
    float a1 = -INFINITY, L = -INFINITY;
    for (int32_t i = b; i < b + gs; i++) {
        float v = lo[i];
        if (v > a1) {
            L = a1;
            a1 = v;
        } else if (v > L) {
            L = v;
        }
    }
    int32_t t1 = -1, t2 = -1;
    float v1 = -INFINITY, v2 = -INFINITY;
    for (int32_t i = b; i < b + gs; i++) {
        if (!(hi[i] >= L))
            continue;
        float v = exact_score(d, logits, ex, i);
        if (t1 < 0 || v > v1) {
            t2 = t1;
            v2 = v1;
            t1 = i;
            v1 = v;
        } else if (t2 < 0 || v > v2) {
            t2 = i;
            v2 = v;
        }
    }
    return mf_gating_canon(v1 + v2);
}

void mf_gating_sigmoid_certified(const mf_gating_desc *d, const float *logits,
                                 const float *lo, const float *hi,
                                 int32_t *idx, float *w, float *scratch)
{
    int32_t E = d->n_experts, k = d->k, G = mf_gating_groups(d);
    int32_t gs = E / G;
    float *ex = scratch, *key = scratch + E;
    for (int32_t i = 0; i < E; i++)
        ex[i] = NAN;
    unsigned char keep[GATING_MAX_E];
    if (G > 1) {
        int32_t gsel[GATING_MAX_E];
        float *gscore = key; /* free until the final stage */
        for (int32_t g = 0; g < G; g++)
            gscore[g] = gs == 1 ? exact_score(d, logits, ex, g)
                                : group_score(d, logits, lo, hi, ex, g * gs, gs);
        mf_gating_topk(gscore, G, d->topk_group, gsel);
        memset(keep, 0, (size_t)G);
        for (int32_t j = 0; j < d->topk_group; j++)
            keep[gsel[j]] = 1;
    } else {
        keep[0] = 1;
    }
    /* L: the k-th largest lo among kept experts (idx is scratch here). */
    for (int32_t g = 0, i = 0; g < G; g++)
        for (int32_t e = 0; e < gs; e++, i++)
            key[i] = keep[g] ? lo[i] : NAN;
    mf_gating_topk(key, E, k, idx);
    float L = lo[idx[k - 1]];
    for (int32_t g = 0, i = 0; g < G; g++)
        for (int32_t e = 0; e < gs; e++, i++)
            key[i] = keep[g] && hi[i] >= L ? exact_score(d, logits, ex, i)
                                           : NAN;
    mf_gating_topk(key, E, k, idx);
    for (int32_t j = 0; j < k; j++)
        w[j] = mf_gating_sigmoid(logits[idx[j]]);
    mf_gating_finish(w, k, d->renormalize, mf_gating_scale(d));
}
