/* mf_gating, NEON: one token row per call. The algorithm of
 * src/cpu/avx2/gating.c on 4-lane vectors (see src/cpu/avx512/gating.c for
 * why the selection is the reference's): selection on the exact keys
 * canon(logit + bias) with a 16-lane-max threshold (four registers, element
 * i in lane i mod 16) and at most 32 candidates; sigmoid mode bounds each
 * score with vmath.h's sigmoid (<= 3 ulp) and a margin of s~ 2^-18 + 2^-100
 * and re-scores exactly through mf_gating_sigmoid_certified; rows whose
 * maximum is +-Inf take the reference path; exp sums in double. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "neon.h"
#include "vmath.h"

#if defined(__aarch64__)

#include <math.h>

#include "../ref/gating_ref.h"

#define MAX_CAND 32

/* key[0..E) = canon(logit + bias), key[E..E+16) = -Inf; returns the max. */
static float load_keys(const mf_gating_desc *d, const float *logits,
                       int32_t E, float *key)
{
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    float32x4_t mx = ninf;
    int32_t i = 0;
    for (; i + 4 <= E; i += 4) {
        float32x4_t v = vld1q_f32(logits + i);
        if (d->bias)
            v = vaddq_f32(v, vld1q_f32(d->bias + i));
        v = vbslq_f32(vceqq_f32(v, v), v, ninf); /* NaN -> -Inf */
        vst1q_f32(key + i, v);
        mx = vmaxq_f32(mx, v);
    }
    float m = vmaxvq_f32(mx);
    for (; i < E; i++) {
        key[i] = mf_gating_canon(d->bias ? logits[i] + d->bias[i] : logits[i]);
        m = key[i] > m ? key[i] : m;
    }
    for (int q = 0; q < 16; q += 4)
        vst1q_f32(key + E + q, ninf);
    return m;
}

/* The reference's top-k of key[0..E) (padded with 16 -Inf). */
static void select_topk(const float *key, int32_t E, int32_t k, int32_t *idx)
{
    if (k > 16 || E < 16) {
        mf_gating_topk(key, E, k, idx);
        return;
    }
    float32x4_t m0 = vld1q_f32(key), m1 = vld1q_f32(key + 4);
    float32x4_t m2 = vld1q_f32(key + 8), m3 = vld1q_f32(key + 12);
    for (int32_t i = 16; i < E; i += 16) {
        m0 = vmaxq_f32(m0, vld1q_f32(key + i));
        m1 = vmaxq_f32(m1, vld1q_f32(key + i + 4));
        m2 = vmaxq_f32(m2, vld1q_f32(key + i + 8));
        m3 = vmaxq_f32(m3, vld1q_f32(key + i + 12));
    }
    float lm[16];
    int32_t sel[16];
    vst1q_f32(lm, m0);
    vst1q_f32(lm + 4, m1);
    vst1q_f32(lm + 8, m2);
    vst1q_f32(lm + 12, m3);
    mf_gating_topk(lm, 16, k, sel);
    const float32x4_t t = vdupq_n_f32(lm[sel[k - 1]]);
    static const uint32_t bitv[4] = {1, 2, 4, 8};
    const uint32x4_t bit = vld1q_u32(bitv);
    float cv[MAX_CAND];
    int32_t ci[MAX_CAND], pos[16];
    int32_t n = 0;
    for (int32_t i = 0; i < E; i += 4) {
        unsigned bits = vaddvq_u32(vandq_u32(vcgeq_f32(vld1q_f32(key + i), t), bit));
        if (E - i < 4)
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

/* sum in double of exp(x[i] - m) over n (a multiple of 4); e[] gets the
 * exps when not NULL. */
static double exp_sum(const float *x, int32_t n, float m, float *e)
{
    const float32x4_t vm = vdupq_n_f32(m);
    float64x2_t a0 = vdupq_n_f64(0.0), a1 = vdupq_n_f64(0.0);
    for (int32_t i = 0; i < n; i += 4) {
        float32x4_t v = mfq_exp(vsubq_f32(vld1q_f32(x + i), vm));
        if (e)
            vst1q_f32(e + i, v);
        a0 = vaddq_f64(a0, vcvt_f64_f32(vget_low_f32(v)));
        a1 = vaddq_f64(a1, vcvt_high_f64_f32(v));
    }
    return vaddvq_f64(vaddq_f64(a0, a1));
}

static void row_softmax(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    const int32_t E = d->n_experts, k = d->k;
    const int32_t kp = (k + 3) & ~3;
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
        s = exp_sum(key, (E + 3) & ~3, m, NULL);
    const float sf = (float)s;
    const float32x4_t vs = vdupq_n_f32(sf);
    int32_t j = 0;
    for (; j + 4 <= k; j += 4)
        vst1q_f32(w + j, vdivq_f32(vld1q_f32(e + j), vs));
    for (; j < k; j++)
        w[j] = e[j] / sf;
    mf_gating_finish(w, k, !topk_first && d->renormalize, mf_gating_scale(d));
}

static void row_sigmoid(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    const int32_t E = d->n_experts;
    float *lo = scratch, *hi = scratch + E;
    const float32x4_t ninf = vdupq_n_f32(-INFINITY);
    const float32x4_t rel = vdupq_n_f32(0x1p-18f), ab = vdupq_n_f32(0x1p-100f);
    for (int32_t i = 0; i < E; i += 4) {
        float xb[4], bb[4];
        const float *xp = logits + i, *bp = d->bias ? d->bias + i : NULL;
        if (E - i < 4) { /* tail through a padded buffer */
            for (int32_t q = 0; q < 4; q++) {
                xb[q] = i + q < E ? logits[i + q] : 0.0f;
                bb[q] = bp && i + q < E ? bp[q] : 0.0f;
            }
            xp = xb;
            bp = bp ? bb : NULL;
        }
        float32x4_t x = vld1q_f32(xp);
        x = vbslq_f32(vceqq_f32(x, x), x, ninf);
        float32x4_t s = mfq_sigmoid(x);
        float32x4_t mg = vfmaq_f32(ab, s, rel);
        float32x4_t l = vsubq_f32(s, mg), h = vaddq_f32(s, mg);
        if (bp) {
            float32x4_t b = vld1q_f32(bp);
            b = vbslq_f32(vceqq_f32(b, b), b, ninf);
            l = vaddq_f32(l, b);
            h = vaddq_f32(h, b);
        }
        if (E - i < 4) {
            float lb[4], hb[4];
            vst1q_f32(lb, l);
            vst1q_f32(hb, h);
            for (int32_t q = 0; i + q < E; q++) {
                lo[i + q] = lb[q];
                hi[i + q] = hb[q];
            }
        } else {
            vst1q_f32(lo + i, l);
            vst1q_f32(hi + i, h);
        }
    }
    mf_gating_sigmoid_certified(d, logits, lo, hi, idx, w, scratch + 2 * E);
}

static void gating_row(const mf_gating_desc *d, const float *logits,
                       int32_t *idx, float *w, float *scratch)
{
    if (d->mode == MF_GATING_SIGMOID_GROUPED)
        row_sigmoid(d, logits, idx, w, scratch);
    else
        row_softmax(d, logits, idx, w, scratch);
}

void mf_neon_init_gating(mf_kernels *k)
{
    k->gating_row = gating_row;
}

#endif
