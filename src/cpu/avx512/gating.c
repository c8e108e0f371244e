/* mf_gating, AVX-512: one token row per call.
 *
 * Selection compares exactly the floats the reference compares:
 *  - softmax modes select on keys x = canon(logit + bias) (IEEE add, no exp),
 *    the reference's selection keys bit for bit;
 *  - sigmoid mode computes a polynomial sigmoid s~ (vmath.h, <= 3 ulp) and
 *    bounds lo/hi = (s~ -/+ (s~ 2^-18 + 2^-100)) + bias around the
 *    reference's exact score (its sigmoid is within ~3 ulp of the true one,
 *    so the margin of >= 32 ulp or 2^-100 absolute covers both errors;
 *    rounding the add is monotone, so the bounds survive it); then
 *    mf_gating_sigmoid_certified re-scores exactly every expert the bounds
 *    cannot rule out. Indices and weights are the reference's, bit for bit.
 *
 * Top-k for k <= 16 (softmax modes): the 16 lane maxima of the key chunks
 * give a threshold t = their k-th largest (at least k keys are >= t, so the
 * top k are too); keys >= t are compressed in index order into one vector
 * (at most 16, else the portable selection runs) and ranked by 15 rotations
 * (a lane beats another on a larger key, or an equal key at a lower index).
 * Rows whose maximum is +-Inf take the reference path (rare, and exact).
 * Softmax weights: polynomial exp, the sum in double (as the reference). */
#include <math.h>
#include <string.h>

#include "../ref/gating_ref.h"
#include "avx512.h"
#include "vmath.h"

/* Rank of each lane: how many lanes beat it (larger value, or equal value
 * at a lower lane). Ranks are a permutation of 0..15. */
static inline __m512i rank16(__m512 v)
{
    __m512i rank = _mm512_setzero_si512();
    const __m512i one = _mm512_set1_epi32(1);
    __m512i vi = _mm512_castps_si512(v);
#define MF_RANK_STEP(r)                                                      \
    do {                                                                     \
        __m512 rot = _mm512_castsi512_ps(_mm512_alignr_epi32(vi, vi, r));    \
        __mmask16 gt = _mm512_cmp_ps_mask(rot, v, _CMP_GT_OQ);               \
        __mmask16 eq = _mm512_mask_cmp_ps_mask(                              \
            (__mmask16)(0xffffu << (16 - (r))), rot, v, _CMP_EQ_OQ);         \
        rank = _mm512_mask_add_epi32(rank, (__mmask16)(gt | eq), rank, one); \
    } while (0)
    MF_RANK_STEP(1);
    MF_RANK_STEP(2);
    MF_RANK_STEP(3);
    MF_RANK_STEP(4);
    MF_RANK_STEP(5);
    MF_RANK_STEP(6);
    MF_RANK_STEP(7);
    MF_RANK_STEP(8);
    MF_RANK_STEP(9);
    MF_RANK_STEP(10);
    MF_RANK_STEP(11);
    MF_RANK_STEP(12);
    MF_RANK_STEP(13);
    MF_RANK_STEP(14);
    MF_RANK_STEP(15);
#undef MF_RANK_STEP
    return rank;
}

/* idx[0..k) = the ids of the k best lanes of v (ranked by rank16), in
 * order; returns their keys in lanes 0..k-1 (the rest -Inf). All in
 * registers: slot j is the lane whose rank is j. */
static inline __m512 emit_ranked(__m512 v, __m512i ids, int32_t k,
                                 int32_t *idx)
{
    const __m512i rank = rank16(v), zero = _mm512_setzero_si512();
    __m512 sel = _mm512_set1_ps(-INFINITY);
    for (int32_t j = 0; j < k; j++) {
        __mmask16 at = _mm512_cmpeq_epi32_mask(rank, _mm512_set1_epi32(j));
        idx[j] = _mm_cvtsi128_si32(_mm512_castsi512_si128(
            _mm512_maskz_compress_epi32(at, ids)));
        sel = _mm512_mask_permutexvar_ps(sel, (__mmask16)(1u << j), zero,
                                         _mm512_maskz_compress_ps(at, v));
    }
    return sel;
}

/* Keys into key[], returns the 16 lane maxima (tail lanes -Inf). */
static inline __m512 load_keys(const mf_gating_desc *d, const float *logits,
                               int32_t E, float *key)
{
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    __m512 mx = ninf;
    for (int32_t i = 0; i < E; i += 16) {
        __mmask16 m = mf512_head(E - i);
        __m512 v = _mm512_mask_loadu_ps(ninf, m, logits + i);
        if (d->bias)
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, d->bias + i));
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v,
                                 ninf);
        if (m == 0xffff) /* full stores forward to the later loads */
            _mm512_storeu_ps(key + i, v);
        else
            _mm512_mask_storeu_ps(key + i, m, v);
        mx = _mm512_max_ps(mx, v);
    }
    return mx;
}

/* Top-k of key[0..E) (no NaN), the reference's selection. lmax: the lane
 * maxima from load_keys (for E <= 16, the keys themselves). Returns 1 with
 * the selected keys in *sel (lanes 0..k-1) on the vector path, 0 when the
 * portable selection ran. */
static int select_topk(const float *key, int32_t E, int32_t k, __m512 lmax,
                       int32_t *idx, __m512 *sel)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                           11, 12, 13, 14, 15);
    if (k > 16) {
        mf_gating_topk(key, E, k, idx);
        return 0;
    }
    if (E <= 16) {
        *sel = emit_ranked(lmax, iota, k, idx);
        return 1;
    }
    /* threshold: the k-th largest lane maximum */
    __mmask16 at = _mm512_cmpeq_epi32_mask(rank16(lmax),
                                           _mm512_set1_epi32(k - 1));
    __m512 t = _mm512_set1_ps(
        _mm512_cvtss_f32(_mm512_maskz_compress_ps(at, lmax)));
    /* candidates (keys >= t) gathered in index order into cv/ci, in
     * registers: each chunk's compressed lanes shifted up to lane n */
    __m512 cv = _mm512_set1_ps(-INFINITY);
    __m512i ci = _mm512_setzero_si512();
    int32_t n = 0;
    for (int32_t i = 0; i < E; i += 16) {
        __mmask16 m = mf512_head(E - i);
        __m512 v = _mm512_maskz_loadu_ps(m, key + i);
        __mmask16 ge = _mm512_mask_cmp_ps_mask(m, v, t, _CMP_GE_OQ);
        if (!ge)
            continue;
        int32_t c = __builtin_popcount(ge);
        if (n + c > 16) {
            mf_gating_topk(key, E, k, idx);
            return 0;
        }
        __m512i sh = _mm512_sub_epi32(iota, _mm512_set1_epi32(n));
        __mmask16 dst = (__mmask16)(((1u << c) - 1u) << n);
        cv = _mm512_mask_permutexvar_ps(cv, dst, sh,
                                        _mm512_maskz_compress_ps(ge, v));
        ci = _mm512_mask_permutexvar_epi32(
            ci, dst, sh,
            _mm512_maskz_compress_epi32(
                ge, _mm512_add_epi32(iota, _mm512_set1_epi32(i))));
        n += c;
    }
    *sel = emit_ranked(cv, ci, k, idx);
    return 1;
}

static float hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

/* sum of exp(key[i] - m), i < n, in double (16 partial sums). */
static double exp_sum(const float *key, int32_t n, float m)
{
    const __m512 vm = _mm512_set1_ps(m);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    for (int32_t i = 0; i < n; i += 16) {
        __mmask16 msk = mf512_head(n - i);
        __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), msk,
                                        key + i);
        __m512 v = mf512_exp(_mm512_sub_ps(x, vm));
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_castpd_ps(
                                   _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}

/* sum in double of the lanes of v (all 16; zero the unused ones). */
static inline double sum16_pd(__m512 v)
{
    return _mm512_reduce_add_pd(_mm512_add_pd(
        _mm512_cvtps_pd(_mm512_castps512_ps256(v)),
        _mm512_cvtps_pd(_mm256_castpd_ps(
            _mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))));
}

/* mf_gating_finish on the first k <= 16 lanes of v, then stored to w: the
 * same sum in double (lane order; the rounded f32 sum agrees with the
 * sequential one), division and scale. */
static inline void finish16(__m512 v, int32_t k, int renorm, float scale,
                            float *w)
{
    __mmask16 m = mf512_head(k);
    v = _mm512_maskz_mov_ps(m, v);
    if (renorm) {
        float tf = (float)sum16_pd(v);
        if (tf > 0.0f)
            v = _mm512_div_ps(v, _mm512_set1_ps(tf));
    }
    if (scale != 1.0f)
        v = _mm512_mul_ps(v, _mm512_set1_ps(scale));
    _mm512_mask_storeu_ps(w, m, v);
}

static void row_softmax(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    const int32_t E = d->n_experts, k = d->k;
    float *key = scratch, *xs = scratch + E + 16;
    __m512 lmax = load_keys(d, logits, E, key);
    float m = hmax(lmax);
    if (!isfinite(m)) {
        mf_ref_gating_row(d, logits, idx, w, scratch);
        return;
    }
    __m512 sel;
    const int vec = select_topk(key, E, k, lmax, idx, &sel);
    const float scale = mf_gating_scale(d);
    const __m512 vm = _mm512_set1_ps(m);
    const int topk_first = d->mode == MF_GATING_TOPK_SOFTMAX;
    if (vec) {
        /* k <= 16: everything in one register */
        __m512 e = mf512_exp(_mm512_sub_ps(sel, vm)); /* 0 past lane k */
        double s = topk_first ? sum16_pd(e) : exp_sum(key, E, m);
        finish16(_mm512_div_ps(e, _mm512_set1_ps((float)s)), k,
                 !topk_first && d->renormalize, scale, w);
        return;
    }
    for (int32_t j = 0; j < k; j++)
        xs[j] = key[idx[j]];
    const __m512 vs = _mm512_set1_ps(
        (float)(topk_first ? exp_sum(xs, k, m) : exp_sum(key, E, m)));
    for (int32_t j = 0; j < k; j += 16) {
        __mmask16 msk = mf512_head(k - j);
        __m512 x = _mm512_maskz_loadu_ps(msk, xs + j);
        _mm512_mask_storeu_ps(w + j, msk,
                              _mm512_div_ps(mf512_exp(_mm512_sub_ps(x, vm)), vs));
    }
    mf_gating_finish(w, k, !topk_first && d->renormalize, scale);
}

static void row_sigmoid(const mf_gating_desc *d, const float *logits,
                        int32_t *idx, float *w, float *scratch)
{
    const int32_t E = d->n_experts;
    float *lo = scratch, *hi = scratch + E;
    const __m512 ninf = _mm512_set1_ps(-INFINITY);
    const __m512 rel = _mm512_set1_ps(0x1p-18f), ab = _mm512_set1_ps(0x1p-100f);
    for (int32_t i = 0; i < E; i += 16) {
        __mmask16 m = mf512_head(E - i);
        __m512 x = _mm512_maskz_loadu_ps(m, logits + i);
        x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x,
                                 ninf);
        __m512 s = mf512_sigmoid(x);
        __m512 mg = _mm512_fmadd_ps(s, rel, ab);
        __m512 l = _mm512_sub_ps(s, mg), h = _mm512_add_ps(s, mg);
        if (d->bias) {
            __m512 b = _mm512_maskz_loadu_ps(m, d->bias + i);
            b = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q), b,
                                     ninf);
            l = _mm512_add_ps(l, b);
            h = _mm512_add_ps(h, b);
        }
        _mm512_mask_storeu_ps(lo + i, m, l);
        _mm512_mask_storeu_ps(hi + i, m, h);
    }
    mf_gating_sigmoid_certified(d, logits, lo, hi, idx, w, scratch + 2 * E);
}

static void gating_row(const mf_gating_desc *d, const float *logits,
                       int32_t *idx, float *w, float *scratch)
{
    /* Small routers where the reference is as fast or faster (measured, one
     * thread, T=1: sigmoid E=16 ref 154 ns vs 164 ns; top-k-softmax E=8 ref
     * 66 ns vs 69 ns). */
    if ((d->mode == MF_GATING_SIGMOID_GROUPED && d->n_experts <= 16) ||
        (d->mode == MF_GATING_TOPK_SOFTMAX && d->n_experts <= 8)) {
        mf_ref_gating_row(d, logits, idx, w, scratch);
        return;
    }
    if (d->mode == MF_GATING_SIGMOID_GROUPED)
        row_sigmoid(d, logits, idx, w, scratch);
    else
        row_softmax(d, logits, idx, w, scratch);
}

void mf_avx512_init_gating(mf_kernels *k)
{
    k->gating_row = gating_row;
}
