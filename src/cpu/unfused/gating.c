/* Unfused gating: the pass sequence a plain C engine runs, one row at a
 * time, each step a separate loop over a temporary array:
 *   softmax modes: bias add -> max -> exp -> sum -> divide (all E) ->
 *                  full qsort of all E (key, index) pairs -> gather ->
 *                  renormalize -> scale;
 *   sigmoid mode:  sigmoid -> bias add -> per-group full sorts -> group
 *                  sort -> mask -> full sort of the kept experts -> gather
 *                  -> renormalize -> scale.
 * The arithmetic is the reference's (same expressions, same summation
 * order), so results match MF_IMPL_REF bit for bit; only the work differs.
 * Sorting keys are the biased logits (softmax modes) and scores (sigmoid
 * mode), ties broken by the lower index, as gating_ref.h defines. */
#include <math.h>
#include <stdlib.h>

#include "../ref/gating_ref.h"
#include "unfused.h"

#define GATING_MAX_E 4096

typedef struct pair {
    float key;
    int32_t id;
} pair;

static int pair_cmp(const void *pa, const void *pb)
{
    const pair *a = pa, *b = pb;
    if (a->key > b->key)
        return -1;
    if (a->key < b->key)
        return 1;
    return (a->id > b->id) - (a->id < b->id);
}

typedef struct tmp {
    float x[GATING_MAX_E];     /* biased logits or scores */
    float p[GATING_MAX_E];     /* probabilities or sigmoids */
    pair pr[GATING_MAX_E];     /* sort array */
    float gscore[GATING_MAX_E];
    unsigned char keep[GATING_MAX_E];
} tmp;

static void probabilities(const float *x, int32_t E, float *p)
{
    float m = -INFINITY;
    for (int32_t i = 0; i < E; i++)
        m = x[i] > m ? x[i] : m;
    if (m == -INFINITY) {
        for (int32_t i = 0; i < E; i++)
            p[i] = 0.0f;
    } else if (m == INFINITY) {
        int32_t ninf = 0;
        for (int32_t i = 0; i < E; i++)
            ninf += x[i] == INFINITY;
        float q = 1.0f / (float)ninf;
        for (int32_t i = 0; i < E; i++)
            p[i] = x[i] == INFINITY ? q : 0.0f;
    } else {
        for (int32_t i = 0; i < E; i++)
            p[i] = expf(x[i] - m);
        double t = 0.0;
        for (int32_t i = 0; i < E; i++)
            t += p[i];
        float s = (float)t;
        for (int32_t i = 0; i < E; i++)
            p[i] = p[i] / s;
    }
}

static void sort_all(const float *x, int32_t E, pair *pr)
{
    for (int32_t i = 0; i < E; i++)
        pr[i] = (pair){x[i], i};
    qsort(pr, (size_t)E, sizeof *pr, pair_cmp);
}

static void row_softmax(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, tmp *t)
{
    int32_t E = d->n_experts, k = d->k;
    for (int32_t i = 0; i < E; i++)
        t->x[i] = d->bias ? logits[i] + d->bias[i] : logits[i];
    for (int32_t i = 0; i < E; i++)
        t->x[i] = mf_gating_canon(t->x[i]);
    if (d->mode == MF_GATING_SOFTMAX_TOPK) {
        probabilities(t->x, E, t->p);
        sort_all(t->x, E, t->pr);
        for (int32_t j = 0; j < k; j++) {
            idx[j] = t->pr[j].id;
            w[j] = t->p[idx[j]];
        }
        mf_gating_finish(w, k, d->renormalize, mf_gating_scale(d));
    } else {
        sort_all(t->x, E, t->pr);
        for (int32_t j = 0; j < k; j++) {
            idx[j] = t->pr[j].id;
            t->x[j] = t->pr[j].key;
        }
        probabilities(t->x, k, w);
        mf_gating_finish(w, k, 0, mf_gating_scale(d));
    }
}

static void row_sigmoid(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, tmp *t)
{
    int32_t E = d->n_experts, k = d->k, G = mf_gating_groups(d);
    int32_t gs = E / G;
    for (int32_t i = 0; i < E; i++)
        t->p[i] = mf_gating_sigmoid(logits[i]);
    for (int32_t i = 0; i < E; i++)
        t->x[i] = d->bias ? t->p[i] + mf_gating_canon(d->bias[i]) : t->p[i];
    for (int32_t g = 0; g < G; g++)
        t->keep[g] = 1;
    if (G > 1) {
        for (int32_t g = 0; g < G; g++) {
            if (gs == 1) {
                t->gscore[g] = t->x[g];
                continue;
            }
            sort_all(t->x + (size_t)g * gs, gs, t->pr);
            t->gscore[g] = mf_gating_canon(t->pr[0].key + t->pr[1].key);
        }
        sort_all(t->gscore, G, t->pr);
        for (int32_t g = 0; g < G; g++)
            t->keep[g] = 0;
        for (int32_t j = 0; j < d->topk_group; j++)
            t->keep[t->pr[j].id] = 1;
    }
    int32_t n = 0;
    for (int32_t i = 0; i < E; i++)
        if (t->keep[i / gs])
            t->pr[n++] = (pair){t->x[i], i};
    qsort(t->pr, (size_t)n, sizeof *t->pr, pair_cmp);
    for (int32_t j = 0; j < k; j++) {
        idx[j] = t->pr[j].id;
        w[j] = t->p[idx[j]];
    }
    mf_gating_finish(w, k, d->renormalize, mf_gating_scale(d));
}

mf_status mf_unfused_gating(const mf_gating_desc *d, const float *logits,
                            int64_t T, int32_t *idx, float *weights)
{
    tmp t;
    int32_t E = d->n_experts, k = d->k;
    for (int64_t r = 0; r < T; r++) {
        const float *lr = logits + r * E;
        int32_t *ir = idx + r * k;
        float *wr = weights + r * k;
        if (d->mode == MF_GATING_SIGMOID_GROUPED)
            row_sigmoid(d, lr, ir, wr, &t);
        else
            row_softmax(d, lr, ir, wr, &t);
    }
    return MF_OK;
}
