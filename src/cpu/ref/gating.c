/* The scalar reference of mf_gating: one token row per call, libm expf, the
 * selection rule of gating_ref.h. This is the oracle every other impl is
 * compared with.
 *
 * Exact sequence per mode (x = canon(logit + bias), or canon(logit) with no
 * bias; every sum in double, in index order, rounded to f32 once):
 *  SOFTMAX_TOPK   idx = topk(x); m = x[idx[0]] (the row maximum);
 *                 m = -Inf: weights 0. m = +Inf: p = 1/n for the n +Inf
 *                 entries, 0 elsewhere. Otherwise e_i = expf(x_i - m),
 *                 S = (float)sum(e_i), w_j = e_idx_j / S.
 *                 Selecting on x equals selecting on p in exact arithmetic
 *                 (softmax is strictly increasing) and needs no exp, so
 *                 every impl compares the same floats; rounded p values of
 *                 near-equal logits would otherwise tie.
 *  TOPK_SOFTMAX   idx = topk(x); m = x[idx[0]]; the same three cases over
 *                 the k selected entries only (e_j = expf(x_idx_j - m)).
 *  SIGMOID_GROUPED s_i = mf_gating_sigmoid(logit_i) (1 / (1 + expf(-x)) for
 *                 x >= 0, e / (1 + e) with e = expf(x) for x < 0);
 *                 score_i = s_i + canon(bias_i) (s_i without bias);
 *                 groups: group score = canon(score_a + score_b) for the
 *                 group's top-2 (a, b by the selection rule), its one score
 *                 for single-expert groups; keep topk_group groups by the
 *                 selection rule on group scores; idx = topk(score) over the
 *                 kept experts; w_j = s_idx_j.
 * Then mf_gating_finish (renormalize unless TOPK_SOFTMAX, then scale). */
#include <math.h>
#include <string.h>

#include "gating_ref.h"
#include "ref.h"

#define GATING_MAX_E 4096

void mf_gating_topk(const float *key, int32_t n, int32_t k, int32_t *out)
{
    int32_t cnt = 0;
    for (int32_t i = 0; i < n; i++) {
        float v = key[i];
        if (isnan(v))
            continue;
        if (cnt == k && !(v > key[out[k - 1]]))
            continue;
        /* First slot holding a strictly smaller key: equal keys stay ahead
         * (they have lower indices). */
        int32_t lo = 0, hi = cnt;
        while (lo < hi) {
            int32_t mid = lo + (hi - lo) / 2;
            if (key[out[mid]] < v)
                hi = mid;
            else
                lo = mid + 1;
        }
        int32_t last = cnt < k ? cnt : k - 1;
        if (last > lo)
            memmove(out + lo + 1, out + lo, (size_t)(last - lo) * sizeof *out);
        out[lo] = i;
        if (cnt < k)
            cnt++;
    }
}

float mf_gating_sigmoid(float x)
{
    if (isnan(x))
        return 0.0f;
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x); /* x < 0: no overflow, subnormal results kept */
    return e / (1.0f + e);
}

void mf_gating_finish(float *w, int32_t k, int renorm, float scale)
{
    if (renorm) {
        double t = 0.0;
        for (int32_t j = 0; j < k; j++)
            t += w[j];
        float tf = (float)t;
        if (tf > 0.0f)
            for (int32_t j = 0; j < k; j++)
                w[j] = w[j] / tf;
    }
    if (scale != 1.0f)
        for (int32_t j = 0; j < k; j++)
            w[j] = w[j] * scale;
}

/* Weights of the softmax over the entries sel[0..n) of x (n = E with sel
 * NULL), written for the k selected; m is their maximum. */
static void softmax_weights(const float *x, const int32_t *sel, int32_t n,
                            const int32_t *idx, int32_t k, float m, float *w)
{
    if (m == -INFINITY) {
        for (int32_t j = 0; j < k; j++)
            w[j] = 0.0f;
        return;
    }
    if (m == INFINITY) {
        int32_t ninf = 0;
        for (int32_t i = 0; i < n; i++)
            ninf += x[sel ? sel[i] : i] == INFINITY;
        float p = 1.0f / (float)ninf;
        for (int32_t j = 0; j < k; j++)
            w[j] = x[idx[j]] == INFINITY ? p : 0.0f;
        return;
    }
    double t = 0.0;
    for (int32_t i = 0; i < n; i++)
        t += expf(x[sel ? sel[i] : i] - m);
    float s = (float)t;
    for (int32_t j = 0; j < k; j++)
        w[j] = expf(x[idx[j]] - m) / s;
}

static void row_softmax(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *x)
{
    int32_t E = d->n_experts, k = d->k;
    for (int32_t i = 0; i < E; i++)
        x[i] = mf_gating_canon(d->bias ? logits[i] + d->bias[i] : logits[i]);
    mf_gating_topk(x, E, k, idx);
    float m = x[idx[0]];
    if (d->mode == MF_GATING_SOFTMAX_TOPK) {
        softmax_weights(x, NULL, E, idx, k, m, w);
        mf_gating_finish(w, k, d->renormalize, mf_gating_scale(d));
    } else {
        softmax_weights(x, idx, k, idx, k, m, w);
        mf_gating_finish(w, k, 0, mf_gating_scale(d));
    }
}

static void row_sigmoid(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    int32_t E = d->n_experts, k = d->k, G = mf_gating_groups(d);
    float *s = scratch, *score = scratch + E, *key = scratch + 2 * E;
    float *gscore = scratch + 3 * E;
    for (int32_t i = 0; i < E; i++) {
        s[i] = mf_gating_sigmoid(logits[i]);
        score[i] = d->bias ? s[i] + mf_gating_canon(d->bias[i]) : s[i];
    }
    if (G > 1) {
        int32_t gs = E / G;
        int32_t gsel[GATING_MAX_E];
        for (int32_t g = 0; g < G; g++) {
            const float *sg = score + (size_t)g * gs;
            if (gs == 1) {
                gscore[g] = sg[0];
            } else {
                int32_t t2[2];
                mf_gating_topk(sg, gs, 2, t2);
                gscore[g] = mf_gating_canon(sg[t2[0]] + sg[t2[1]]);
            }
        }
        mf_gating_topk(gscore, G, d->topk_group, gsel);
        for (int32_t i = 0; i < E; i++)
            key[i] = NAN;
        for (int32_t j = 0; j < d->topk_group; j++)
            memcpy(key + (size_t)gsel[j] * gs, score + (size_t)gsel[j] * gs,
                   (size_t)gs * sizeof *key);
        mf_gating_topk(key, E, k, idx);
    } else {
        mf_gating_topk(score, E, k, idx);
    }
    for (int32_t j = 0; j < k; j++)
        w[j] = s[idx[j]];
    mf_gating_finish(w, k, d->renormalize, mf_gating_scale(d));
}

void mf_ref_gating_row(const mf_gating_desc *d, const float *logits,
                       int32_t *idx, float *w, float *scratch)
{
    if (d->mode == MF_GATING_SIGMOID_GROUPED)
        row_sigmoid(d, logits, idx, w, scratch);
    else
        row_softmax(d, logits, idx, w, scratch);
}

void mf_ref_init_gating(mf_kernels *k)
{
    k->gating_row = mf_ref_gating_row;
}
