/* mf_gating, AVX2: one token row per call.
 *
 * Selection compares exactly the floats the reference compares (see
 * src/cpu/avx512/gating.c for the argument): the softmax modes select on the
 * keys canon(logit + bias), computed with the same IEEE add; sigmoid mode
 * bounds each score with a polynomial sigmoid (vmath.h, <= 3 ulp) and a
 * margin of s~ 2^-18 + 2^-100, then mf_gating_sigmoid_certified re-scores
 * exactly the experts the bounds cannot rule out.
 *
 * Top-k for k <= 16 and E >= 16: 16 lane maxima (two registers, element i in
 * lane i mod 16) give a threshold t = their k-th largest; the keys >= t (at
 * most 32, else the portable selection runs) are collected in index order
 * from compare masks and selected with the portable rule. Rows whose
 * maximum is +-Inf take the reference path. Softmax weights: polynomial
 * exp, sums in double. */
#include <math.h>

#include "../ref/gating_ref.h"
#include "avx2.h"
#include "vmath.h"

#define MAX_CAND 32

/* key[0..E) = canon(logit + bias), key[E..E+16) = -Inf; returns the max. */
static float load_keys(const mf_gating_desc *d, const float *logits,
                       int32_t E, float *key)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf;
    int32_t i = 0;
    for (; i + 8 <= E; i += 8) {
        __m256 v = _mm256_loadu_ps(logits + i);
        if (d->bias)
            v = _mm256_add_ps(v, _mm256_loadu_ps(d->bias + i));
        v = _mm256_blendv_ps(v, ninf, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm256_storeu_ps(key + i, v);
        mx = _mm256_max_ps(mx, v);
    }
    float m = -INFINITY;
    for (; i < E; i++) {
        key[i] = mf_gating_canon(d->bias ? logits[i] + d->bias[i] : logits[i]);
        m = key[i] > m ? key[i] : m;
    }
    _mm256_storeu_ps(key + E, ninf);
    _mm256_storeu_ps(key + E + 8, ninf);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(mx),
                          _mm256_extractf128_ps(mx, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float hv = _mm_cvtss_f32(h);
    return hv > m ? hv : m;
}

/* The reference's top-k of key[0..E) (padded with 16 -Inf). */
static void select_topk(const float *key, int32_t E, int32_t k, int32_t *idx)
{
    if (k > 16 || E < 16) {
        mf_gating_topk(key, E, k, idx);
        return;
    }
    __m256 m0 = _mm256_loadu_ps(key), m1 = _mm256_loadu_ps(key + 8);
    for (int32_t i = 16; i < E; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(key + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(key + i + 8));
    }
    float lm[16];
    int32_t sel[16];
    _mm256_storeu_ps(lm, m0);
    _mm256_storeu_ps(lm + 8, m1);
    mf_gating_topk(lm, 16, k, sel);
    const __m256 t = _mm256_set1_ps(lm[sel[k - 1]]);
    float cv[MAX_CAND];
    int32_t ci[MAX_CAND], pos[16];
    int32_t n = 0;
    for (int32_t i = 0; i < E; i += 8) {
        unsigned bits = (unsigned)_mm256_movemask_ps(
            _mm256_cmp_ps(_mm256_loadu_ps(key + i), t, _CMP_GE_OQ));
        if (E - i < 8)
            bits &= (1u << (E - i)) - 1u;
        if (n + __builtin_popcount(bits) > MAX_CAND) {
            mf_gating_topk(key, E, k, idx);
            return;
        }
        while (bits) {
            int32_t b = __builtin_ctz(bits);
            bits &= bits - 1;
            cv[n] = key[i + b];
            ci[n++] = i + b;
        }
    }
    mf_gating_topk(cv, n, k, pos);
    for (int32_t j = 0; j < k; j++)
        idx[j] = ci[pos[j]];
}

/* sum in double of exp(x[i] - m) over n (a multiple of 8); e[] gets the
 * exps when not NULL. */
static double exp_sum(const float *x, int32_t n, float m, float *e)
{
    const __m256 vm = _mm256_set1_ps(m);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int32_t i = 0; i < n; i += 8) {
        __m256 v = mf256_exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (e)
            _mm256_storeu_ps(e + i, v);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    __m256d a = _mm256_add_pd(a0, a1);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a),
                           _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

static void row_softmax(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    const int32_t E = d->n_experts, k = d->k;
    const int32_t kp = (k + 7) & ~7;
    float *key = scratch, *xs = scratch + E + 16, *e = xs + kp;
    float m = load_keys(d, logits, E, key);
    if (!isfinite(m)) {
        mf_ref_gating_row(d, logits, idx, w, scratch);
        return;
    }
    select_topk(key, E, k, idx);
    for (int32_t j = 0; j < kp; j++)
        xs[j] = j < k ? key[idx[j]] : -INFINITY;
    const int topk_first = d->mode == MF_GATING_TOPK_SOFTMAX;
    double s = exp_sum(xs, kp, m, e);
    if (!topk_first)
        s = exp_sum(key, (E + 7) & ~7, m, NULL);
    const __m256 vs = _mm256_set1_ps((float)s);
    int32_t j = 0;
    for (; j + 8 <= k; j += 8)
        _mm256_storeu_ps(w + j, _mm256_div_ps(_mm256_loadu_ps(e + j), vs));
    for (; j < k; j++)
        w[j] = e[j] / (float)s;
    mf_gating_finish(w, k, !topk_first && d->renormalize, mf_gating_scale(d));
}

static void row_sigmoid(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    const int32_t E = d->n_experts;
    float *lo = scratch, *hi = scratch + E;
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256 rel = _mm256_set1_ps(0x1p-18f), ab = _mm256_set1_ps(0x1p-100f);
    int32_t i = 0;
    for (; i < E; i += 8) {
        float xb[8], bb[8];
        const float *xp = logits + i, *bp = d->bias ? d->bias + i : NULL;
        if (E - i < 8) { /* tail through a padded buffer */
            for (int32_t q = 0; q < 8; q++) {
                xb[q] = i + q < E ? logits[i + q] : 0.0f;
                bb[q] = bp && i + q < E ? bp[q] : 0.0f;
            }
            xp = xb;
            bp = bp ? bb : NULL;
        }
        __m256 x = _mm256_loadu_ps(xp);
        x = _mm256_blendv_ps(x, ninf, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
        __m256 s = mf256_sigmoid(x);
        __m256 mg = _mm256_fmadd_ps(s, rel, ab);
        __m256 l = _mm256_sub_ps(s, mg), h = _mm256_add_ps(s, mg);
        if (bp) {
            __m256 b = _mm256_loadu_ps(bp);
            b = _mm256_blendv_ps(b, ninf, _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
            l = _mm256_add_ps(l, b);
            h = _mm256_add_ps(h, b);
        }
        if (E - i < 8) {
            float lb[8], hb[8];
            _mm256_storeu_ps(lb, l);
            _mm256_storeu_ps(hb, h);
            for (int32_t q = 0; i + q < E; q++) {
                lo[i + q] = lb[q];
                hi[i + q] = hb[q];
            }
        } else {
            _mm256_storeu_ps(lo + i, l);
            _mm256_storeu_ps(hi + i, h);
        }
    }
    mf_gating_sigmoid_certified(d, logits, lo, hi, idx, w, scratch + 2 * E);
}

static void gating_row(const mf_gating_desc *d, const float *logits,
                       int32_t *idx, float *w, float *scratch)
{
    /* Small routers: the reference is as fast or faster here (measured, one
     * thread, T=1: E=8 ref 66-97 ns vs 101-109 ns; E=32 top-k-softmax ref 145 ns
     * vs 167 ns); from E=64 the vector kernel wins (ref 246-444 ns vs 193-367). */
    if (d->n_experts <= 16 || (d->mode == MF_GATING_TOPK_SOFTMAX && d->n_experts <= 32)) {
        mf_ref_gating_row(d, logits, idx, w, scratch);
        return;
    }
    if (d->mode == MF_GATING_SIGMOID_GROUPED)
        row_sigmoid(d, logits, idx, w, scratch);
    else
        row_softmax(d, logits, idx, w, scratch);
}

void mf_avx2_init_gating(mf_kernels *k)
{
    k->gating_row = gating_row;
}
