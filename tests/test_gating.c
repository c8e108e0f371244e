/* mf_gating: the reference against a naive double-precision oracle, every
 * CPU impl and the unfused baseline against the reference (indices
 * identical, weights within the ops.h tolerance), non-finite inputs, ties,
 * unaligned buffers, model shapes, and every error path. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ops.h: weights of non-reference impls within WULP ulp or WABS absolute of
 * the reference. The softmax weights of vector impls use a polynomial exp
 * (<= 2 ulp) and vector partial sums; see ops.h for the derivation. */
#define WULP 8
#define WABS 1e-7f

static const int32_t Es[] = {1,  2,  3,   7,   8,   16,  17,  31,
                             32, 33, 64, 128, 255, 256, 512, 4096};

/* ------------------------------------------------------------ helpers -- */

static mf_status gate(mf_impl impl, const mf_gating_desc *d0,
                      const float *logits, int64_t T, int32_t *idx, float *w)
{
    mf_gating_desc d = *d0;
    d.impl = impl;
    return mf_gating(mft_ctx(), &d, logits, T, idx, w);
}

/* Runs impl on the input and checks it against the reference's ir/wr:
 * indices equal, weights close (bit-equal when exact). Returns the worst
 * ulp distance among weights farther apart than WABS. */
static uint32_t compare(mf_impl impl, const mf_gating_desc *d,
                        const float *logits, int64_t T, const int32_t *ir,
                        const float *wr, int exact, const char *what)
{
    int32_t k = d->k;
    size_t n = (size_t)T * (size_t)k;
    int32_t *ii = mft_alloc(n * 4, 4 * (n % 3));
    float *wi = mft_alloc(n * 4, 8);
    mf_status st = gate(impl, d, logits, T, ii, wi);
    cr_assert_eq(st, MF_OK, "%s impl %s: status %d", what,
                 mf_impl_name(impl), st);
    uint32_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(ii[i], ir[i],
                     "%s impl %s E=%d k=%d T=%lld mode=%d: idx[%zu] %d vs ref %d",
                     what, mf_impl_name(impl), d->n_experts, k, (long long)T,
                     d->mode, i, ii[i], ir[i]);
        uint32_t u = mft_ulp_diff(wi[i], wr[i]);
        if (exact)
            cr_assert_eq(u, 0, "%s impl %s: w[%zu] %a vs ref %a (not bit-exact)",
                         what, mf_impl_name(impl), i, (double)wi[i],
                         (double)wr[i]);
        else
            cr_assert(mft_close(wr[i], wi[i], WULP, WABS),
                      "%s impl %s E=%d k=%d mode=%d: w[%zu] %.9g vs ref %.9g (%u ulp)",
                      what, mf_impl_name(impl), d->n_experts, k, d->mode, i,
                      (double)wi[i], (double)wr[i], u);
        if (!(fabsf(wi[i] - wr[i]) <= WABS) && u > worst)
            worst = u;
    }
    mft_free(ii);
    mft_free(wi);
    return worst;
}

/* Every CPU impl and the unfused baseline against the reference. The
 * sigmoid mode and the unfused baseline are bit-exact (they re-score the
 * experts they select with the reference's arithmetic / are the same
 * arithmetic), as is SCALAR (the reference kernels, threaded). */
static uint32_t compare_all(const mf_gating_desc *d, const float *logits,
                            int64_t T, const char *what)
{
    size_t n = (size_t)T * (size_t)d->k;
    int32_t *ir = mft_alloc(n * 4, 0);
    float *wr = mft_alloc(n * 4, 0);
    cr_assert_eq(gate(MF_IMPL_REF, d, logits, T, ir, wr), MF_OK);
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    uint32_t worst = 0;
    for (int i = 0; i < ni; i++) {
        int exact = d->mode == MF_GATING_SIGMOID_GROUPED ||
                    impls[i] == MF_IMPL_SCALAR;
        uint32_t u = compare(impls[i], d, logits, T, ir, wr, exact, what);
        worst = u > worst ? u : worst;
    }
    compare(MF_IMPL_UNFUSED, d, logits, T, ir, wr, 1, what);
    mft_free(ir);
    mft_free(wr);
    return worst;
}

static float *random_logits(mft_rng *r, size_t n, float sigma, size_t off)
{
    float *x = mft_alloc(n * 4, off);
    mft_fill_normal(r, x, n, sigma);
    return x;
}

/* ------------------------------------------------------------- oracle -- */

/* Naive selection: k times, the largest not-yet-taken key, lowest index on
 * ties; keys with skip[i] set are never taken. */
static void naive_topk(const float *key, const unsigned char *skip, int32_t n,
                       int32_t k, int32_t *out)
{
    unsigned char *taken = calloc((size_t)n, 1);
    for (int32_t j = 0; j < k; j++) {
        int32_t best = -1;
        for (int32_t i = 0; i < n; i++) {
            if (taken[i] || (skip && skip[i]))
                continue;
            if (best < 0 || key[i] > key[best])
                best = i;
        }
        taken[best] = 1;
        out[j] = best;
    }
    free(taken);
}

static float nan_low(float x) { return isnan(x) ? -INFINITY : x; }

/* One row by the ops.h definition. Selection keys are the documented f32
 * values (logit + bias; the f32 sigmoid score); weights in double. tol[j]
 * gets the allowed error of the reference's f32 weight: its exp/sigmoid,
 * sums and divisions round a few times, and x_i - m is rounded to f32
 * before exp (relative error up to |x_i - m| * 2^-24). */
static void oracle_row(const mf_gating_desc *d, const float *lg, int32_t *idx,
                       double *w, double *tol)
{
    int32_t E = d->n_experts, k = d->k;
    float *key = malloc((size_t)E * 4);
    double *p = malloc((size_t)E * 8);
    const double u = ldexp(1.0, -24);
    double scale = d->scale == 0.0f ? 1.0 : d->scale;
    if (d->mode != MF_GATING_SIGMOID_GROUPED) {
        for (int32_t i = 0; i < E; i++)
            key[i] = nan_low(d->bias ? lg[i] + d->bias[i] : lg[i]);
        naive_topk(key, NULL, E, k, idx);
        int32_t n = d->mode == MF_GATING_SOFTMAX_TOPK ? E : k;
        double m = -INFINITY, sum = 0.0, dev = 0.0;
        for (int32_t i = 0; i < n; i++) {
            double x = key[n == E ? i : idx[i]];
            m = x > m ? x : m;
        }
        int32_t ninf = 0;
        for (int32_t i = 0; i < n; i++) {
            double x = key[n == E ? i : idx[i]];
            ninf += x == INFINITY;
            if (isfinite(m) && x > -INFINITY) {
                double e = exp(x - m);
                sum += e;
                dev += e * (m - x);
            }
        }
        dev = sum > 0 ? dev / sum : 0.0;
        for (int32_t j = 0; j < k; j++) {
            double x = key[idx[j]];
            if (m == -INFINITY)
                w[j] = 0.0;
            else if (m == INFINITY)
                w[j] = x == INFINITY ? 1.0 / ninf : 0.0;
            else
                w[j] = exp(x - m) / sum;
            tol[j] = isfinite(m) && isfinite(x)
                         ? u * (6.0 + 2.0 * ((m - x) + dev))
                         : 0.0;
        }
    } else {
        float *score = malloc((size_t)E * 4);
        unsigned char *skip = calloc((size_t)E, 1);
        for (int32_t i = 0; i < E; i++) {
            float x = nan_low(lg[i]);
            float e = expf(x >= 0.0f ? -x : x);
            float s = x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
            p[i] = 1.0 / (1.0 + exp(-(double)x));
            score[i] = d->bias ? s + nan_low(d->bias[i]) : s;
        }
        int32_t G = d->n_group > 1 ? d->n_group : 1, gs = E / G;
        if (G > 1) {
            float *gsc = malloc((size_t)G * 4);
            int32_t *gsel = malloc((size_t)G * 4);
            for (int32_t g = 0; g < G; g++) {
                int32_t t2[2];
                if (gs == 1) {
                    gsc[g] = score[g];
                    continue;
                }
                naive_topk(score + g * gs, NULL, gs, 2, t2);
                gsc[g] = nan_low(score[g * gs + t2[0]] + score[g * gs + t2[1]]);
            }
            naive_topk(gsc, NULL, G, d->topk_group, gsel);
            memset(skip, 1, (size_t)E);
            for (int32_t j = 0; j < d->topk_group; j++)
                memset(skip + gsel[j] * gs, 0, (size_t)gs);
            free(gsc);
            free(gsel);
        }
        naive_topk(score, skip, E, k, idx);
        for (int32_t j = 0; j < k; j++) {
            w[j] = p[idx[j]];
            tol[j] = 4.0 * u;
        }
        free(score);
        free(skip);
    }
    int renorm = d->renormalize && d->mode != MF_GATING_TOPK_SOFTMAX;
    if (renorm) {
        double t = 0.0;
        for (int32_t j = 0; j < k; j++)
            t += w[j];
        for (int32_t j = 0; j < k; j++) {
            w[j] = t > 0 ? w[j] / t : w[j];
            tol[j] = 2.0 * tol[j] + 2.0 * u;
        }
    }
    for (int32_t j = 0; j < k; j++) {
        w[j] *= scale;
        tol[j] = (tol[j] + u) * fabs(w[j]) + 1e-44;
    }
    free(key);
    free(p);
}

static void check_oracle(const mf_gating_desc *d, const float *logits,
                         int64_t T, const char *what)
{
    int32_t k = d->k;
    size_t n = (size_t)T * (size_t)k;
    int32_t *idx = malloc(n * 4), *oi = malloc((size_t)k * 4);
    float *w = malloc(n * 4);
    double *ow = malloc((size_t)k * 8), *tol = malloc((size_t)k * 8);
    cr_assert_eq(gate(MF_IMPL_REF, d, logits, T, idx, w), MF_OK);
    for (int64_t t = 0; t < T; t++) {
        oracle_row(d, logits + t * d->n_experts, oi, ow, tol);
        for (int32_t j = 0; j < k; j++) {
            cr_assert_eq(idx[t * k + j], oi[j],
                         "%s E=%d k=%d mode=%d row %lld: idx[%d] %d vs oracle %d",
                         what, d->n_experts, k, d->mode, (long long)t, j,
                         idx[t * k + j], oi[j]);
            double err = fabs((double)w[t * k + j] - ow[j]);
            cr_assert(err <= tol[j],
                      "%s E=%d k=%d mode=%d row %lld: w[%d] %.9g vs oracle %.12g (tol %.3g)",
                      what, d->n_experts, k, d->mode, (long long)t, j,
                      (double)w[t * k + j], ow[j], tol[j]);
        }
    }
    free(idx);
    free(oi);
    free(w);
    free(ow);
    free(tol);
}

/* ------------------------------------------------ reference vs oracle -- */

Test(cpu, ref_vs_oracle)
{
    mft_rng r = mft_rng_make(__LINE__);
    for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ei++) {
        int32_t E = Es[ei];
        int32_t ks[] = {1, 2, 8, E};
        float *bias = random_logits(&r, (size_t)E, 0.5f, 0);
        for (int ki = 0; ki < 4; ki++) {
            int32_t k = ks[ki];
            if (k > E || (E >= 1024 && k == E))
                continue;
            int64_t T = 3;
            float *x = random_logits(&r, (size_t)(T * E), 3.0f, 0);
            for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++)
                for (int v = 0; v < 4; v++) {
                    mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                        .n_experts = E, .k = k,
                                        .renormalize = v & 1,
                                        .bias = (v & 2) ? bias : NULL,
                                        .scale = v == 3 ? 2.5f : 0.0f};
                    check_oracle(&d, x, T, "oracle");
                }
            mft_free(x);
        }
        mft_free(bias);
    }
}

Test(cpu, ref_vs_oracle_grouped)
{
    mft_rng r = mft_rng_make(__LINE__);
    /* DeepSeek-V3 and a few other divisions of E into groups. */
    const int32_t shapes[][4] = {{256, 8, 4, 8}, {256, 8, 1, 8},
                                 {64, 64, 8, 4}, {96, 3, 2, 5},
                                 {32, 16, 3, 6}, {128, 4, 4, 128}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int32_t E = shapes[s][0];
        float *x = random_logits(&r, (size_t)(4 * E), 2.0f, 0);
        float *bias = random_logits(&r, (size_t)E, 0.3f, 0);
        mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED, .n_experts = E,
                            .n_group = shapes[s][1],
                            .topk_group = shapes[s][2], .k = shapes[s][3],
                            .renormalize = 1, .bias = bias, .scale = 2.5f};
        check_oracle(&d, x, 4, "oracle grouped");
        d.bias = NULL;
        d.renormalize = 0;
        check_oracle(&d, x, 4, "oracle grouped, no bias");
        mft_free(x);
        mft_free(bias);
    }
}

/* Hand-checked rows: selection order, ties, the +Inf and all -Inf rules. */
Test(cpu, ref_known_rows)
{
    float x[6] = {1.0f, 3.0f, 3.0f, -2.0f, NAN, 3.0f};
    int32_t idx[4];
    float w[4];
    mf_gating_desc d = {.impl = MF_IMPL_REF, .n_experts = 6, .k = 4};
    cr_assert_eq(mf_gating(mft_ctx(), &d, x, 1, idx, w), MF_OK);
    cr_expect(idx[0] == 1 && idx[1] == 2 && idx[2] == 5 && idx[3] == 0);
    cr_expect_eq(w[0], w[1]);
    cr_expect_eq(w[1], w[2]);
    float inf_row[4] = {INFINITY, 0.0f, INFINITY, -INFINITY};
    d.n_experts = 4;
    d.k = 3;
    cr_assert_eq(mf_gating(mft_ctx(), &d, inf_row, 1, idx, w), MF_OK);
    cr_expect(idx[0] == 0 && idx[1] == 2 && idx[2] == 1);
    cr_expect(w[0] == 0.5f && w[1] == 0.5f && w[2] == 0.0f);
    float dead[4] = {-INFINITY, NAN, -INFINITY, NAN};
    for (int mode = 0; mode < 2; mode++) {
        d.mode = (mf_gating_mode)mode;
        d.renormalize = 1;
        cr_assert_eq(mf_gating(mft_ctx(), &d, dead, 1, idx, w), MF_OK);
        for (int j = 0; j < 3; j++) {
            cr_expect_eq(idx[j], j);
            cr_expect(w[j] == 0.0f && !signbit(w[j]));
        }
    }
    /* Sigmoid: large logits all score 1.0f: the lower index wins. */
    float sat[4] = {30.0f, 20.0f, 40.0f, -1.0f};
    d.mode = MF_GATING_SIGMOID_GROUPED;
    d.k = 2;
    cr_assert_eq(mf_gating(mft_ctx(), &d, sat, 1, idx, w), MF_OK);
    cr_expect(idx[0] == 0 && idx[1] == 1 && w[0] == 0.5f && w[1] == 0.5f);
}

/* --------------------------------------------- impls vs the reference -- */

Test(cpu, impls_random)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t Ts[] = {1, 3, 32};
    uint32_t worst = 0;
    for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ei++) {
        int32_t E = Es[ei];
        int32_t ks[] = {1, 2, 8, E};
        float *bias = random_logits(&r, (size_t)E, 0.5f, 4);
        for (int ki = 0; ki < 4; ki++) {
            int32_t k = ks[ki];
            if (k > E || (ki == 3 && (k == 1 || k == 2 || k == 8)))
                continue;
            for (int ti = 0; ti < 3; ti++) {
                int64_t T = Ts[ti];
                float sigma = (float)mft_int(&r, 1, 4);
                float *x = random_logits(&r, (size_t)(T * E), sigma,
                                         (size_t)(4 * (ti + 1)));
                for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++)
                    for (int v = 0; v < 4; v++) {
                        mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                            .n_experts = E, .k = k,
                                            .renormalize = v & 1,
                                            .bias = (v & 2) ? bias : NULL,
                                            .scale = v == 1 ? 2.5f : 0.0f};
                        uint32_t u = compare_all(&d, x, T, "random");
                        worst = u > worst ? u : worst;
                    }
                mft_free(x);
            }
        }
        mft_free(bias);
    }
    cr_log_info("gating: worst weight distance to the reference %u ulp", worst);
}

/* Model shapes: DeepSeek-V3 (grouped), GLM-4.5 (sigmoid, no groups,
 * scale 2.5), GLM-4.7-Flash, Qwen3, Mixtral, GPT-OSS, OLMoE. */
Test(cpu, impls_model_shapes)
{
    mft_rng r = mft_rng_make(__LINE__);
    struct {
        mf_gating_mode mode;
        int32_t E, k, ng, tg, renorm;
        float scale;
        int bias;
    } m[] = {
        {MF_GATING_SIGMOID_GROUPED, 256, 8, 8, 4, 1, 2.5f, 1},
        {MF_GATING_SIGMOID_GROUPED, 160, 8, 1, 1, 1, 2.5f, 1},
        {MF_GATING_SIGMOID_GROUPED, 64, 4, 0, 0, 1, 1.8f, 1},
        {MF_GATING_SOFTMAX_TOPK, 128, 8, 0, 0, 1, 0.0f, 0},
        {MF_GATING_TOPK_SOFTMAX, 8, 2, 0, 0, 0, 0.0f, 0},
        {MF_GATING_TOPK_SOFTMAX, 32, 4, 0, 0, 0, 0.0f, 1},
        {MF_GATING_SOFTMAX_TOPK, 64, 8, 0, 0, 0, 0.0f, 0},
    };
    for (size_t s = 0; s < sizeof m / sizeof *m; s++) {
        int32_t E = m[s].E;
        int64_t T = 17;
        float *x = random_logits(&r, (size_t)(T * E), 1.5f, 4);
        float *bias = random_logits(&r, (size_t)E, 0.1f, 8);
        mf_gating_desc d = {.mode = m[s].mode, .n_experts = E, .k = m[s].k,
                            .n_group = m[s].ng, .topk_group = m[s].tg,
                            .renormalize = m[s].renorm, .scale = m[s].scale,
                            .bias = m[s].bias ? bias : NULL};
        compare_all(&d, x, T, "model shape");
        check_oracle(&d, x, T, "model shape");
        mft_free(x);
        mft_free(bias);
    }
}

/* Grouped selection on every divisor of E, including single-expert groups
 * and topk_group * group size == k. */
Test(cpu, impls_grouped)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int32_t Eg[] = {8, 12, 64, 96, 256, 512};
    for (size_t ei = 0; ei < sizeof Eg / sizeof *Eg; ei++) {
        int32_t E = Eg[ei];
        float *x = random_logits(&r, (size_t)(5 * E), 2.0f, 12);
        float *bias = random_logits(&r, (size_t)E, 0.2f, 0);
        for (int32_t G = 2; G <= E; G++) {
            if (E % G || (G > 16 && G != E))
                continue;
            int32_t gs = E / G;
            for (int32_t tg = 1; tg <= G; tg = tg * 2 + 1) {
                int32_t kmax = tg * gs;
                int32_t ks[] = {1, kmax < 8 ? kmax : 8, kmax};
                for (int ki = 0; ki < 3; ki++) {
                    mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED,
                                        .n_experts = E, .k = ks[ki],
                                        .n_group = G, .topk_group = tg,
                                        .renormalize = ki != 1,
                                        .bias = (ki & 1) ? NULL : bias,
                                        .scale = 2.5f};
                    compare_all(&d, x, 5, "grouped");
                }
            }
        }
        mft_free(x);
        mft_free(bias);
    }
}

/* Many equal keys (logits quantized to a few values), equal biases. */
Test(cpu, impls_ties)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int32_t Et[] = {3, 8, 16, 17, 64, 128, 256, 4096};
    for (size_t ei = 0; ei < sizeof Et / sizeof *Et; ei++) {
        int32_t E = Et[ei];
        int64_t T = 8;
        float *x = mft_alloc((size_t)(T * E) * 4, 4);
        float *bias = mft_alloc((size_t)E * 4, 0);
        for (int64_t i = 0; i < T * E; i++)
            x[i] = (float)mft_int(&r, -2, 2) * (i % 5 == 0 ? 0.5f : 1.0f);
        for (int32_t i = 0; i < E; i++)
            bias[i] = (float)mft_int(&r, 0, 1) * 0.25f;
        int32_t ks[] = {1, 2, 8, E};
        for (int ki = 0; ki < 4; ki++) {
            if (ks[ki] > E)
                continue;
            for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++)
                for (int v = 0; v < 2; v++) {
                    mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                        .n_experts = E, .k = ks[ki],
                                        .renormalize = 1,
                                        .bias = v ? bias : NULL};
                    compare_all(&d, x, T, "ties");
                    if (E <= 256)
                        check_oracle(&d, x, T, "ties");
                }
        }
        /* Sigmoid saturation: logits past 17 all score exactly 1. */
        for (int64_t i = 0; i < T * E; i++)
            x[i] = mft_uniform(&r, 10.0f, 40.0f);
        mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED, .n_experts = E,
                            .k = E < 8 ? E : 8, .renormalize = 1};
        compare_all(&d, x, T, "saturated sigmoid");
        check_oracle(&d, x, T, "saturated sigmoid");
        mft_free(x);
        mft_free(bias);
    }
}

/* NaN, +Inf, -Inf sprinkled in logits and bias; whole rows of -Inf/NaN;
 * huge and tiny logits (exp underflow, subnormal sigmoid). */
Test(cpu, impls_nonfinite)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int32_t En[] = {1, 2, 7, 16, 33, 128, 256, 512};
    const float specials[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f,
                              -90.0f, 88.0f, -1e-40f};
    for (size_t ei = 0; ei < sizeof En / sizeof *En; ei++) {
        int32_t E = En[ei];
        int64_t T = 12;
        float *x = random_logits(&r, (size_t)(T * E), 2.0f, 8);
        float *bias = random_logits(&r, (size_t)E, 0.5f, 0);
        for (int64_t t = 0; t < T; t++) {
            float *row = x + t * E;
            int kind = (int)(t % 6);
            if (kind == 0) { /* all -Inf/NaN */
                for (int32_t i = 0; i < E; i++)
                    row[i] = (i & 1) ? NAN : -INFINITY;
            } else if (kind == 1) { /* all NaN */
                for (int32_t i = 0; i < E; i++)
                    row[i] = NAN;
            } else { /* a few specials */
                int n = (int)mft_int(&r, 1, kind);
                for (int q = 0; q < n; q++)
                    row[mft_int(&r, 0, E - 1)] =
                        specials[mft_int(&r, 0, kind == 5 ? 7 : 2)];
            }
        }
        if (E > 4) {
            bias[mft_int(&r, 0, E - 1)] = NAN;
            bias[mft_int(&r, 0, E - 1)] = -INFINITY;
        }
        int32_t ks[] = {1, E < 4 ? E : 4, E};
        for (int ki = 0; ki < 3; ki++)
            for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++)
                for (int v = 0; v < 4; v++) {
                    mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                        .n_experts = E, .k = ks[ki],
                                        .renormalize = v & 1,
                                        .bias = (v & 2) ? bias : NULL};
                    compare_all(&d, x, T, "non-finite");
                    check_oracle(&d, x, T, "non-finite");
                    /* weights never NaN */
                    int32_t *ii = malloc((size_t)(T * ks[ki]) * 4);
                    float *ww = malloc((size_t)(T * ks[ki]) * 4);
                    cr_assert_eq(gate(MF_IMPL_CPU, &d, x, T, ii, ww), MF_OK);
                    for (int64_t i = 0; i < T * ks[ki]; i++)
                        cr_assert(!isnan(ww[i]), "NaN weight");
                    free(ii);
                    free(ww);
                }
        mft_free(x);
        mft_free(bias);
    }
}

/* A +Inf bias with a -Inf one in the same group: the group score is NaN,
 * which counts as -Inf. */
Test(cpu, grouped_nan_group_score)
{
    float x[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    float b[8] = {INFINITY, -INFINITY, 0, 0, 0, 0, 0, 0};
    mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED, .n_experts = 8,
                        .k = 2, .n_group = 4, .topk_group = 1, .bias = b};
    int32_t idx[2];
    float w[2];
    cr_assert_eq(gate(MF_IMPL_REF, &d, x, 1, idx, w), MF_OK);
    cr_expect(idx[0] == 7 && idx[1] == 6, "got %d %d", idx[0], idx[1]);
    compare_all(&d, x, 1, "nan group score");
}

/* Many rows: the threaded split must give the same rows as one thread. */
Test(cpu, impls_many_rows)
{
    mft_rng r = mft_rng_make(__LINE__);
    int64_t T = 1531;
    float *x = random_logits(&r, (size_t)(T * 64), 2.0f, 4);
    for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++) {
        mf_gating_desc d = {.mode = (mf_gating_mode)mode, .n_experts = 64,
                            .k = 6, .renormalize = 1};
        compare_all(&d, x, T, "many rows");
    }
    mft_free(x);
}

/* ------------------------------------------------------------- errors -- */

static void expect_untouched(const int32_t *idx, const float *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(idx[i], 0x5a5a5a5a, "idx written on error");
        uint32_t u;
        memcpy(&u, &w[i], 4);
        cr_expect_eq(u, 0x5a5a5a5au, "weights written on error");
    }
}

static void expect_err(const mf_gating_desc *d, const float *x, int64_t T,
                       int32_t *idx, float *w, mf_status want,
                       const char *what)
{
    memset(idx, 0x5a, 64 * 4);
    memset(w, 0x5a, 64 * 4);
    mf_status st = mf_gating(mft_ctx(), d, x, T, idx, w);
    cr_expect_eq(st, want, "%s: got %d want %d", what, st, want);
    expect_untouched(idx, w, 64);
}

Test(cpu, bad_inputs)
{
    float x[256] = {0};
    int32_t idx[64];
    float w[64];
    const mf_gating_desc ok = {.n_experts = 16, .k = 4};
    mf_gating_desc d = ok;
    memset(idx, 0x5a, sizeof idx);
    cr_expect_eq(mf_gating(NULL, &d, x, 1, idx, w), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gating(mft_ctx(), NULL, x, 1, idx, w), MF_ERR_INVALID_ARG);
    expect_err(&d, NULL, 1, idx, w, MF_ERR_INVALID_ARG, "logits NULL");
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, NULL, w), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, idx, NULL), MF_ERR_INVALID_ARG);
    expect_err(&d, x, 0, idx, w, MF_ERR_INVALID_ARG, "T = 0");
    expect_err(&d, x, -1, idx, w, MF_ERR_INVALID_ARG, "T < 0");
    expect_err(&d, x, 65537, idx, w, MF_ERR_INVALID_ARG, "T too big");
    d.n_experts = 0;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "E = 0");
    d.n_experts = 4097;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "E too big");
    d = ok;
    d.k = 0;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "k = 0");
    d.k = 17;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "k > E");
    d = ok;
    d.impl = (mf_impl)99;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "impl");
    d.impl = (mf_impl)-1;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "impl < 0");
    d = ok;
    d.mode = MF_GATING_MODE_COUNT_;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "mode");
    d = ok;
    d.renormalize = 2;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "renormalize");
    d = ok;
    d.scale = NAN;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "scale NaN");
    d.scale = INFINITY;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "scale Inf");
    /* groups */
    d = ok;
    d.n_group = 4;
    d.topk_group = 2;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "groups in softmax mode");
    d.mode = MF_GATING_SIGMOID_GROUPED;
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, idx, w), MF_OK);
    d.n_group = 5;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "n_group not dividing");
    d.n_group = -2;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "n_group < 0");
    d.n_group = 4;
    d.topk_group = 0;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "topk_group 0");
    d.topk_group = 5;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "topk_group > n_group");
    d.topk_group = 1;
    d.k = 5;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "kept experts < k");
    d.k = 4;
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, idx, w), MF_OK);
    d.n_group = 1;
    d.topk_group = 3;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "topk_group without groups");
    d.n_group = 0;
    d.topk_group = -1;
    expect_err(&d, x, 1, idx, w, MF_ERR_INVALID_ARG, "topk_group < 0");
    /* overlaps */
    d = ok;
    memset(x, 0, sizeof x);
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, (int32_t *)(void *)x + 16, w),
                 MF_OK, "adjacent is fine");
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 2, (int32_t *)(void *)x + 16, w),
                 MF_ERR_INVALID_ARG, "idx overlaps logits");
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, idx, (float *)(void *)idx + 2),
                 MF_ERR_INVALID_ARG, "w overlaps idx");
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, idx, x + 3),
                 MF_ERR_INVALID_ARG, "w overlaps logits");
    float bias_w[32];
    d.bias = bias_w;
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, idx, bias_w + 12),
                 MF_ERR_INVALID_ARG, "w overlaps bias");
    cr_expect_eq(mf_gating(mft_ctx(), &d, x, 1, (int32_t *)(void *)bias_w, w),
                 MF_ERR_INVALID_ARG, "idx overlaps bias");
    /* impls this machine or context lacks */
    d = ok;
    d.impl = MF_IMPL_GPU;
    expect_err(&d, x, 1, idx, w, MF_ERR_UNSUPPORTED, "GPU without device");
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    const mf_impl isa_impl[] = {MF_IMPL_AVX2, MF_IMPL_AVX512, MF_IMPL_NEON};
    const mf_isa isa_of[] = {MF_ISA_AVX2, MF_ISA_AVX512, MF_ISA_NEON};
    for (int i = 0; i < 3; i++) {
        if (ci.isa_available[isa_of[i]])
            continue;
        d.impl = isa_impl[i];
        expect_err(&d, x, 1, idx, w, MF_ERR_UNSUPPORTED, "missing ISA");
    }
}
