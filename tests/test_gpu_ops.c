/* The Vulkan ops against the reference (MF_IMPL_REF) on fresh random
 * inputs: gating in every mode (indices identical), combine (exact: bit
 * for bit) and glu in every kind, layout and type. Every case runs with
 * both reductions the shaders have (subgroup arithmetic and shared-memory
 * trees) where the device offers both. Skipped, with the reason printed,
 * only when no Vulkan device comes up. With MOEFUSE_VK_VALIDATION=1 the
 * Khronos validation layer runs and any message fails the test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "gpu_common.h"
#include "mf_config.h"
#if MF_HAVE_VULKAN
#include "src/gpu/gpu_internal.h"
#endif

/* ---------------------------------------------------------------- gating */

/* ops.h: indices identical; weights within 4 ulp + 1e-7 absolute. The
 * device's exp/sigmoid are the CPU kernels' polynomials (<= 2-3 ulp) and
 * its sums are compensated, so the bound of ops.h holds as stated. */
#define G_WULP 4
#define G_WABS 1e-7f

static void gating_check(mf_ctx *c, const mf_gating_desc *d0,
                         const float *logits, int64_t T, const char *what)
{
    mf_gating_desc d = *d0;
    size_t n = (size_t)T * (size_t)d.k;
    int32_t *ir = mft_alloc(n * 4, 0), *ig = mft_alloc(n * 4, 4 * (n % 3));
    float *wr = mft_alloc(n * 4, 0), *wg = mft_alloc(n * 4, 8);
    d.impl = MF_IMPL_REF;
    cr_assert_eq(mf_gating(c, &d, logits, T, ir, wr), MF_OK);
    d.impl = MF_IMPL_GPU;
    mf_status st = mf_gating(c, &d, logits, T, ig, wg);
    cr_assert_eq(st, MF_OK, "%s: gpu status %s", what, mf_status_str(st));
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(ig[i], ir[i],
                     "%s E=%d k=%d T=%lld mode=%d G=%d bias=%d: idx[%zu] %d vs "
                     "ref %d",
                     what, d.n_experts, d.k, (long long)T, d.mode, d.n_group,
                     d.bias != NULL, i, ig[i], ir[i]);
        cr_assert(mft_close(wr[i], wg[i], G_WULP, G_WABS),
                  "%s E=%d k=%d mode=%d: w[%zu] %.9g vs ref %.9g (%u ulp)",
                  what, d.n_experts, d.k, d.mode, i, (double)wg[i],
                  (double)wr[i], mft_ulp_diff(wg[i], wr[i]));
    }
    /* Forced forms (read when a plan is recorded) give the automatic
     * choice's experts and weights, bit for bit: both selections
     * (MOEFUSE_GPU_GATING_RANK: =0 the k arg-max rounds, what a device runs
     * where the keys do not fit in shared memory, k > 32 too; =1 the rank
     * pass) and, with sigmoid groups, the slices merged in sequence
     * (MOEFUSE_GPU_GATING_MERGE=seq) rather than by the butterfly. */
    int32_t *i2 = mft_alloc(n * 4, 0);
    float *w2 = mft_alloc(n * 4, 0);
    static const char *const forced[][2] = {{"MOEFUSE_GPU_GATING_RANK", "0"},
                                            {"MOEFUSE_GPU_GATING_RANK", "1"},
                                            {"MOEFUSE_GPU_GATING_MERGE", "seq"}};
    for (int f = 0; f < 3; f++) {
        if (f == 2 && d.n_group <= 1)
            continue;
        setenv(forced[f][0], forced[f][1], 1);
        st = mf_gating(c, &d, logits, T, i2, w2);
        unsetenv(forced[f][0]);
        cr_assert_eq(st, MF_OK, "%s %s=%s: gpu status %s", what, forced[f][0],
                     forced[f][1], mf_status_str(st));
        cr_assert_eq(memcmp(i2, ig, n * 4), 0,
                     "%s E=%d k=%d mode=%d G=%d %s=%s: indices differ", what,
                     d.n_experts, d.k, d.mode, d.n_group, forced[f][0],
                     forced[f][1]);
        cr_assert_eq(memcmp(w2, wg, n * 4), 0,
                     "%s E=%d k=%d mode=%d G=%d %s=%s: weights differ", what,
                     d.n_experts, d.k, d.mode, d.n_group, forced[f][0],
                     forced[f][1]);
    }
    mft_free(i2);
    mft_free(w2);
    mft_free(ir);
    mft_free(ig);
    mft_free(wr);
    mft_free(wg);
}

static void gating_random_on(mf_ctx *c, uint64_t stream)
{
    mft_rng r = mft_rng_make(stream);
    static const int32_t Es[] = {1, 2, 3, 7, 8, 17, 33, 64, 128, 255, 256,
                                 512, 4096};
    for (size_t ei = 0; ei < sizeof Es / sizeof *Es; ei++) {
        int32_t E = Es[ei];
        int64_t T = E >= 512 ? 2 : 5;
        float *x = mft_alloc((size_t)(T * E) * 4, 4 * (ei % 4));
        float *bias = mft_alloc((size_t)E * 4, 4);
        mft_fill_normal(&r, x, (size_t)(T * E), 2.0f);
        mft_fill_normal(&r, bias, (size_t)E, 0.3f);
        int32_t ks[] = {1, E < 8 ? E : 8, E < 40 ? E : 40};
        for (int ki = 0; ki < 3; ki++)
            for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++) {
                mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                    .n_experts = E, .k = ks[ki],
                                    .renormalize = (ki + mode) & 1,
                                    .bias = (ki & 1) ? bias : NULL,
                                    .scale = ki == 2 ? 2.5f : 0.0f};
                gating_check(c, &d, x, T, "random");
            }
        mft_free(x);
        mft_free(bias);
    }
}

Test(gpu, gating_random)
{
    for (int v = 0; v < 2; v++) {
        mf_ctx *c = mft_gpu_ctx(v);
        if (c) {
            gating_random_on(c, __LINE__);
            mft_gpu_ctx_done(c);
        }
    }
}

/* DeepSeek-V3 / GLM shapes: sigmoid with groups; the device must prove
 * (almost) every row itself. */
Test(gpu, gating_grouped)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    static const int32_t shapes[][4] = {
        /* E, n_group, topk_group, k (256 / 16: as many invocations a
         * group as lavapipe's subgroup has lanes, the group merge all
         * butterfly; 256 / 8 and 96 / 3: butterfly, then shared memory) */
        {256, 8, 4, 8}, {256, 16, 4, 8}, {64, 4, 2, 6}, {64, 64, 8, 8},
        {96, 3, 2, 5},
        {32, 2, 1, 16}, {2048, 1024, 16, 16}, {4096, 2048, 8, 8}};
    int64_t dev0, host0, dev1, host1;
    mf_gpu_gating_rows(mft_gpu_of(c), &dev0, &host0);
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int32_t E = shapes[s][0];
        int64_t T = E > 256 ? 2 : 9;
        float *x = mft_alloc((size_t)(T * E) * 4, 0);
        float *bias = mft_alloc((size_t)E * 4, 0);
        mft_fill_normal(&r, x, (size_t)(T * E), 2.0f);
        mft_fill_uniform(&r, bias, (size_t)E, -0.05f, 0.05f);
        for (int v = 0; v < 2; v++) {
            mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED,
                                .n_experts = E, .k = shapes[s][3],
                                .n_group = shapes[s][1],
                                .topk_group = shapes[s][2],
                                .renormalize = 1, .bias = v ? bias : NULL,
                                .scale = 2.5f};
            gating_check(c, &d, x, T, "grouped");
        }
        mft_free(x);
        mft_free(bias);
    }
    /* Random scores rarely fall within 2^-18 of each other at the
     * selection boundary: nearly every row the device ran must be proven
     * there (the >1024-group shape always runs on the host). */
    mf_gpu_gating_rows(mft_gpu_of(c), &dev1, &host1);
    int64_t dev = dev1 - dev0, host = host1 - host0 - 2 * 2;
    cr_expect(dev > 0 && host * 10 <= dev,
              "device rows %lld, recomputed on the host %lld", (long long)dev,
              (long long)host);
    mft_gpu_ctx_done(c);
}

/* Many equal keys: logits and biases from a few values. */
Test(gpu, gating_ties)
{
    for (int v = 0; v < 2; v++) {
        mf_ctx *c = mft_gpu_ctx(v);
        if (!c)
            continue;
        mft_rng r = mft_rng_make(__LINE__);
        static const int32_t Et[] = {3, 8, 17, 64, 256, 4096};
        for (size_t ei = 0; ei < sizeof Et / sizeof *Et; ei++) {
            int32_t E = Et[ei];
            int64_t T = E > 256 ? 2 : 6;
            float *x = mft_alloc((size_t)(T * E) * 4, 0);
            float *bias = mft_alloc((size_t)E * 4, 0);
            for (int64_t i = 0; i < T * E; i++)
                x[i] = (float)mft_int(&r, -2, 2) * (i % 5 == 0 ? 0.5f : 1.0f);
            for (int32_t i = 0; i < E; i++)
                bias[i] = (float)mft_int(&r, 0, 1) * 0.25f;
            int32_t ks[] = {1, E < 8 ? E : 8, E < 64 ? E : 64};
            for (int ki = 0; ki < 3; ki++)
                for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++)
                    for (int b = 0; b < 2; b++) {
                        mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                            .n_experts = E, .k = ks[ki],
                                            .renormalize = 1,
                                            .bias = b ? bias : NULL};
                        gating_check(c, &d, x, T, "ties");
                    }
            /* groups (DeepSeek-V3 style) over tied scores */
            if (E % 8 == 0)
                for (int b = 0; b < 2; b++) {
                    mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED,
                                        .n_experts = E, .k = E < 16 ? 2 : 8,
                                        .n_group = 8, .topk_group = 4,
                                        .renormalize = 1, .scale = 2.5f,
                                        .bias = b ? bias : NULL};
                    gating_check(c, &d, x, T, "grouped ties");
                }
            /* sigmoid saturation: every score exactly 1 */
            for (int64_t i = 0; i < T * E; i++)
                x[i] = mft_uniform(&r, 20.0f, 40.0f);
            mf_gating_desc d = {.mode = MF_GATING_SIGMOID_GROUPED,
                                .n_experts = E, .k = E < 8 ? E : 8,
                                .renormalize = 1};
            gating_check(c, &d, x, T, "saturated sigmoid");
            mft_free(x);
            mft_free(bias);
        }
        mft_gpu_ctx_done(c);
    }
}

/* NaN, +-Inf, huge, tiny and subnormal logits and biases; whole rows of
 * -Inf/NaN. */
Test(gpu, gating_nonfinite)
{
    for (int v = 0; v < 2; v++) {
        mf_ctx *c = mft_gpu_ctx(v);
        if (!c)
            continue;
        mft_rng r = mft_rng_make(__LINE__);
        static const int32_t En[] = {1, 2, 7, 16, 33, 256};
        const float specials[] = {NAN,    INFINITY, -INFINITY, 1e30f, -1e30f,
                                  -90.0f, 88.0f,    -1e-40f,   3e-39f, 0.0f};
        for (size_t ei = 0; ei < sizeof En / sizeof *En; ei++) {
            int32_t E = En[ei];
            int64_t T = 12;
            float *x = mft_alloc((size_t)(T * E) * 4, 8);
            float *bias = mft_alloc((size_t)E * 4, 0);
            mft_fill_normal(&r, x, (size_t)(T * E), 2.0f);
            mft_fill_normal(&r, bias, (size_t)E, 0.5f);
            for (int64_t t = 0; t < T; t++) {
                float *row = x + t * E;
                int kind = (int)(t % 6);
                if (kind == 0) {
                    for (int32_t i = 0; i < E; i++)
                        row[i] = (i & 1) ? NAN : -INFINITY;
                } else if (kind == 1) {
                    for (int32_t i = 0; i < E; i++)
                        row[i] = NAN;
                } else {
                    int n = (int)mft_int(&r, 1, kind);
                    for (int q = 0; q < n; q++)
                        row[mft_int(&r, 0, E - 1)] =
                            specials[mft_int(&r, 0, kind == 5 ? 9 : 2)];
                }
            }
            if (E > 4) {
                bias[mft_int(&r, 0, E - 1)] = NAN;
                bias[mft_int(&r, 0, E - 1)] = -INFINITY;
                bias[mft_int(&r, 0, E - 1)] = 2e-39f; /* subnormal */
            }
            int32_t ks[] = {1, E < 4 ? E : 4, E};
            for (int ki = 0; ki < 3; ki++)
                for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++)
                    for (int b = 0; b < 4; b++) {
                        mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                            .n_experts = E, .k = ks[ki],
                                            .renormalize = b & 1,
                                            .bias = (b & 2) ? bias : NULL};
                        gating_check(c, &d, x, T, "non-finite");
                    }
            mft_free(x);
            mft_free(bias);
        }
        mft_gpu_ctx_done(c);
    }
}

/* Subnormal logits and biases whose sums are subnormal: the selection keys
 * must be the CPU's sums even on devices that flush subnormals. */
Test(gpu, gating_subnormal_keys)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    const int32_t E = 64;
    const int64_t T = 16;
    float *x = mft_alloc((size_t)(T * E) * 4, 0);
    float *bias = mft_alloc((size_t)E * 4, 0);
    for (int64_t i = 0; i < T * E; i++)
        x[i] = (float)mft_int(&r, -(1 << 22), 1 << 22) * 1e-45f;
    for (int32_t i = 0; i < E; i++)
        bias[i] = (float)mft_int(&r, -(1 << 20), 1 << 20) * 1e-45f;
    for (int mode = 0; mode < 2; mode++)
        for (int b = 0; b < 2; b++) {
            mf_gating_desc d = {.mode = (mf_gating_mode)mode, .n_experts = E,
                                .k = 6, .renormalize = 1,
                                .bias = b ? bias : NULL};
            gating_check(c, &d, x, T, "subnormal");
        }
    mft_free(x);
    mft_free(bias);
    mft_gpu_ctx_done(c);
}

/* More rows than one dispatch has workgroups (rows are strided), and
 * repeated calls of one shape (the recorded plan is replayed). */
Test(gpu, gating_many_rows)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    const int32_t E = 8;
    const int64_t T = 65536;
    float *x = mft_alloc((size_t)(T * E) * 4, 0);
    for (int rep = 0; rep < 2; rep++) {
        mft_fill_normal(&r, x, (size_t)(T * E), 1.0f);
        mf_gating_desc d = {.mode = MF_GATING_TOPK_SOFTMAX, .n_experts = E,
                            .k = 2};
        gating_check(c, &d, x, T, "many rows");
    }
    for (int rep = 0; rep < 3; rep++) {
        mft_fill_normal(&r, x, 128, 1.0f);
        mf_gating_desc d = {.mode = MF_GATING_SOFTMAX_TOPK, .n_experts = 128,
                            .k = 8, .renormalize = 1};
        gating_check(c, &d, x, 1, "replay");
    }
    mft_free(x);
    mft_gpu_ctx_done(c);
}

/* --------------------------------------------------------------- combine */

/* exact = 1: bit for bit (NaN equal to NaN). exact = 0: within
 * (2k + 1) 2^-24 (sum_j |w_j x_j| + |res|) of the reference (magnitudes in
 * double): the reference's k + 1 roundings and the device's k (FMA) each
 * err by up to 2^-24 of that sum, in either direction, so two such results
 * can differ by the sum of both bounds. (ops.h states (k + 1) 2^-24, the
 * bound of either against the exact value; a device run of this test found
 * two results 2 ulp apart where that allowed 1.9.) */
static void combine_check(mf_ctx *c, int exact, int64_t T, int32_t k,
                          int64_t D, const float *x, const float *w,
                          const float *res, const char *what)
{
    size_t no = (size_t)(T * D);
    float *oref = mft_alloc(no * 4, 0), *ogpu = mft_alloc(no * 4, 12);
    mf_combine_desc d = {.impl = MF_IMPL_REF, .exact = exact};
    cr_assert_eq(mf_combine(c, &d, T, k, D, x, w, res, oref), MF_OK);
    d.impl = MF_IMPL_GPU;
    mf_status st = mf_combine(c, &d, T, k, D, x, w, res, ogpu);
    cr_assert_eq(st, MF_OK, "%s: gpu status %s", what, mf_status_str(st));
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < D; i++) {
            size_t e = (size_t)(t * D + i);
            if (exact) {
                cr_assert_eq(mft_ulp_diff(ogpu[e], oref[e]), 0,
                             "%s T=%lld k=%d D=%lld: out[%zu] %a vs ref %a",
                             what, (long long)T, k, (long long)D, e,
                             (double)ogpu[e], (double)oref[e]);
                continue;
            }
            double mag = res ? fabs((double)res[e]) : 0.0;
            for (int32_t j = 0; j < k; j++)
                mag += fabs((double)w[t * k + j] *
                            (double)x[(t * k + j) * D + i]);
            double tol = (2 * k + 1) * 0x1p-24 * mag;
            if (isnan(oref[e]) || isinf(oref[e]) || isinf(mag))
                cr_assert_eq(mft_ulp_diff(ogpu[e], oref[e]), 0,
                             "%s: out[%zu] %a vs ref %a", what, e,
                             (double)ogpu[e], (double)oref[e]);
            else
                cr_assert(fabs((double)ogpu[e] - (double)oref[e]) <= tol,
                          "%s T=%lld k=%d D=%lld: out[%zu] %.9g vs ref %.9g",
                          what, (long long)T, k, (long long)D, e,
                          (double)ogpu[e], (double)oref[e]);
        }
    mft_free(oref);
    mft_free(ogpu);
}

Test(gpu, combine_random)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    static const int64_t Ds[] = {1, 3, 17, 255, 768, 2048, 4096 + 17};
    static const int32_t ks[] = {1, 2, 8, 32};
    static const int64_t Ts[] = {1, 3};
    for (size_t di = 0; di < sizeof Ds / sizeof *Ds; di++)
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                int64_t T = Ts[ti], D = Ds[di];
                int32_t k = ks[ki];
                float *x = mft_alloc((size_t)(T * k * D) * 4, 4 * (di % 4));
                float *w = mft_alloc((size_t)(T * k) * 4, 4);
                float *res = mft_alloc((size_t)(T * D) * 4, 8);
                mft_fill_normal(&r, x, (size_t)(T * k * D), 1.0f);
                mft_fill_uniform(&r, w, (size_t)(T * k), 0.0f, 1.0f);
                mft_fill_normal(&r, res, (size_t)(T * D), 1.0f);
                for (int exact = 0; exact < 2; exact++) {
                    combine_check(c, exact, T, k, D, x, w, NULL, "random");
                    combine_check(c, exact, T, k, D, x, w, res, "random+res");
                }
                mft_free(x);
                mft_free(w);
                mft_free(res);
            }
    mft_gpu_ctx_done(c);
}

/* NaN, Inf, huge values, subnormal operands and products, and sums that
 * cancel into the subnormal range: exact stays bit-exact. */
Test(gpu, combine_special_values)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    const float specials[] = {NAN,     INFINITY, -INFINITY, 3e38f,  -3e38f,
                              1e-38f,  -2e-39f,  1e-45f,    0.0f,   -0.0f,
                              1.5e-20f, -7e-21f, 0x1p-63f,  0x1p-64f};
    const int64_t T = 4, D = 257;
    const int32_t k = 5;
    float *x = mft_alloc((size_t)(T * k * D) * 4, 0);
    float *w = mft_alloc((size_t)(T * k) * 4, 0);
    float *res = mft_alloc((size_t)(T * D) * 4, 0);
    for (int rep = 0; rep < 4; rep++) {
        mft_fill_normal(&r, x, (size_t)(T * k * D), 1.0f);
        mft_fill_uniform(&r, w, (size_t)(T * k), -1.0f, 1.0f);
        mft_fill_normal(&r, res, (size_t)(T * D), 1.0f);
        const size_t ns = sizeof specials / sizeof *specials;
        for (int64_t i = 0; i < T * k * D; i += 3)
            x[i] = specials[mft_int(&r, rep < 2 ? 4 : 0, (int64_t)ns - 1)] *
                   (i % 2 ? 1.0f : mft_uniform(&r, 0.5f, 2.0f));
        for (int64_t i = 0; i < T * D; i += 5)
            res[i] = specials[mft_int(&r, 5, (int64_t)ns - 1)];
        if (rep == 3) /* tiny weights: every product subnormal or zero */
            for (int64_t i = 0; i < T * k; i++)
                w[i] = mft_uniform(&r, -1.0f, 1.0f) * 0x1p-100f;
        for (int exact = 0; exact < 2; exact++) {
            combine_check(c, exact, T, k, D, x, w, NULL, "specials");
            combine_check(c, exact, T, k, D, x, w, res, "specials+res");
        }
    }
    /* cancellation into subnormals: w0 x0 + w1 x1 with nearly opposite
     * normal products */
    for (int64_t i = 0; i < T * k * D; i++)
        x[i] = (float)mft_int(&r, 1 << 20, (1 << 21) - 1) * 0x1p-146f;
    for (int64_t t = 0; t < T; t++) {
        w[t * k] = 1.0f;
        w[t * k + 1] = -1.0f;
        for (int32_t j = 2; j < k; j++)
            w[t * k + j] = 0.0f;
    }
    for (int exact = 0; exact < 2; exact++)
        combine_check(c, exact, T, k, D, x, w, NULL, "cancel");
    mft_free(x);
    mft_free(w);
    mft_free(res);
    mft_gpu_ctx_done(c);
}

/* out == residual (in place), many rows, repeated shapes. */
Test(gpu, combine_in_place)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t T = 33, D = 2048;
    const int32_t k = 8;
    float *x = mft_alloc((size_t)(T * k * D) * 4, 0);
    float *w = mft_alloc((size_t)(T * k) * 4, 0);
    float *res = mft_alloc((size_t)(T * D) * 4, 0);
    float *io = mft_alloc((size_t)(T * D) * 4, 4);
    float *ref = mft_alloc((size_t)(T * D) * 4, 0);
    for (int rep = 0; rep < 3; rep++) {
        mft_fill_normal(&r, x, (size_t)(T * k * D), 1.0f);
        mft_fill_uniform(&r, w, (size_t)(T * k), 0.0f, 1.0f);
        mft_fill_normal(&r, res, (size_t)(T * D), 1.0f);
        memcpy(io, res, (size_t)(T * D) * 4);
        mf_combine_desc d = {.impl = MF_IMPL_REF, .exact = 1};
        cr_assert_eq(mf_combine(c, &d, T, k, D, x, w, res, ref), MF_OK);
        d.impl = MF_IMPL_GPU;
        cr_assert_eq(mf_combine(c, &d, T, k, D, x, w, io, io), MF_OK);
        cr_assert_eq(memcmp(io, ref, (size_t)(T * D) * 4), 0,
                     "in-place result differs");
    }
    mft_free(x);
    mft_free(w);
    mft_free(res);
    mft_free(io);
    mft_free(ref);
    mft_gpu_ctx_done(c);
}

/* ------------------------------------------------------------------- glu */

/* ops.h: f32 within 8 ulp (GEGLU_ERF 10) + 1e-30 absolute; f16/bf16
 * within one unit in the last place of the type (codes on the same side of
 * zero at most one step apart), or 1e-30 absolute (bf16 keeps f32's
 * subnormal range, which devices may flush); NaN where the reference has
 * NaN, the same infinity where it has one. */
static void glu_compare(const mf_glu_desc *d, int64_t ne, const void *og,
                        const void *orf, const char *what)
{
    for (int64_t i = 0; i < ne; i++) {
        float a, b;
        uint32_t steps;
        if (d->out_type == MF_TYPE_F32) {
            memcpy(&a, (const char *)og + 4 * i, 4);
            memcpy(&b, (const char *)orf + 4 * i, 4);
            steps = mft_ulp_diff(a, b) <= (d->kind == MF_GLU_GEGLU_ERF ? 10u
                                                                       : 8u)
                        ? 0
                        : 2;
        } else {
            uint16_t ha, hb;
            memcpy(&ha, (const char *)og + 2 * i, 2);
            memcpy(&hb, (const char *)orf + 2 * i, 2);
            int f16 = d->out_type == MF_TYPE_F16;
            a = f16 ? mf_f16_to_f32(ha) : mf_bf16_to_f32(ha);
            b = f16 ? mf_f16_to_f32(hb) : mf_bf16_to_f32(hb);
            int sa = (ha >> 15) != 0, sb = (hb >> 15) != 0;
            int da = ha & 0x7fff, db = hb & 0x7fff;
            steps = sa == sb ? (uint32_t)abs(da - db) : (uint32_t)(da + db);
            steps = steps <= 1 ? 0 : 2;
        }
        if (isnan(b)) {
            cr_assert(isnan(a), "%s: out[%lld] %g where the reference has NaN",
                      what, (long long)i, (double)a);
            continue;
        }
        if (isinf(b)) {
            cr_assert_eq(a, b, "%s: out[%lld] %g vs ref %g", what,
                         (long long)i, (double)a, (double)b);
            continue;
        }
        cr_assert(steps == 0 || fabs((double)a - (double)b) <= 1e-30,
                  "%s kind=%d layout=%d in=%s out=%s: out[%lld] %.9g vs ref "
                  "%.9g",
                  what, d->kind, d->layout, mf_type_name(d->in_type),
                  mf_type_name(d->out_type), (long long)i, (double)a,
                  (double)b);
    }
}

static void glu_fill(mft_rng *r, mf_type t, void *p, int64_t n, float sigma,
                     int specials)
{
    const float sp[] = {NAN,    INFINITY, -INFINITY, 7.0f,  -7.0f, 6.99f,
                        7.01f,  -7.01f,   1e-40f,    -90.f, 90.f,  0.0f,
                        -0.0f,  1e-8f,    -12.0f,    12.0f};
    for (int64_t i = 0; i < n; i++) {
        float v = mft_normal(r) * sigma;
        if (specials && mft_int(r, 0, 7) == 0)
            v = sp[mft_int(r, 0, (int64_t)(sizeof sp / sizeof *sp) - 1)];
        if (t == MF_TYPE_F32) {
            memcpy((char *)p + 4 * i, &v, 4);
        } else {
            uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(v) : mf_f32_to_bf16(v);
            memcpy((char *)p + 2 * i, &h, 2);
        }
    }
}

static void glu_case(mf_ctx *c, mft_rng *r, const mf_glu_desc *d0, int64_t T,
                     int64_t n, int specials, const char *what)
{
    mf_glu_desc d = *d0;
    size_t ib = d.in_type == MF_TYPE_F32 ? 4 : 2;
    size_t ob = d.out_type == MF_TYPE_F32 ? 4 : 2;
    int sep = d.layout == MF_GLU_SEPARATE;
    int64_t ne = T * n, nin = sep ? ne : 2 * ne;
    void *g = mft_alloc((size_t)nin * ib, (size_t)(n % 3) * 2);
    void *u = sep ? mft_alloc((size_t)ne * ib, 6) : NULL;
    glu_fill(r, d.in_type, g, nin, 2.5f, specials);
    if (u)
        glu_fill(r, d.in_type, u, ne, 2.5f, specials);
    void *oref = mft_alloc((size_t)ne * ob, 0);
    void *ogpu = mft_alloc((size_t)ne * ob, 2);
    d.impl = MF_IMPL_REF;
    cr_assert_eq(mf_glu(c, &d, T, n, g, u, oref), MF_OK);
    d.impl = MF_IMPL_GPU;
    mf_status st = mf_glu(c, &d, T, n, g, u, ogpu);
    cr_assert_eq(st, MF_OK, "%s: gpu status %s", what, mf_status_str(st));
    glu_compare(&d, ne, ogpu, oref, what);
    mft_free(g);
    mft_free(u);
    mft_free(oref);
    mft_free(ogpu);
}

/* Every kind x layout x input type x output type, odd sizes. */
Test(gpu, glu_all)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    static const mf_type types[] = {MF_TYPE_F32, MF_TYPE_F16, MF_TYPE_BF16};
    static const int64_t ns[] = {1, 7, 33, 768};
    for (int kind = 0; kind < MF_GLU_KIND_COUNT_; kind++)
        for (int lay = 0; lay < MF_GLU_LAYOUT_COUNT_; lay++)
            for (int it = 0; it < 3; it++)
                for (int ot = 0; ot < 3; ot++) {
                    mf_glu_desc d = {.kind = (mf_glu_kind)kind,
                                     .layout = (mf_glu_layout)lay,
                                     .in_type = types[it],
                                     .out_type = types[ot]};
                    if (kind == MF_GLU_SWIGLU_OAI && it == 1)
                        d.limit = 5.5f, d.alpha = 1.5f;
                    int64_t n = ns[(kind + lay + it + ot) % 4];
                    int64_t T = n > 100 ? 2 : 3;
                    glu_case(c, &r, &d, T, n, 0, "all");
                }
    mft_gpu_ctx_done(c);
}

/* NaN, Inf, clamp edges of SWIGLU_OAI, subnormal and huge inputs. */
Test(gpu, glu_special_values)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    static const mf_type types[] = {MF_TYPE_F32, MF_TYPE_F16, MF_TYPE_BF16};
    for (int kind = 0; kind < MF_GLU_KIND_COUNT_; kind++)
        for (int it = 0; it < 3; it++)
            for (int ot = 0; ot < 3; ot++) {
                mf_glu_desc d = {.kind = (mf_glu_kind)kind,
                                 .layout = (mf_glu_layout)((kind + it) % 3),
                                 .in_type = types[it], .out_type = types[ot]};
                glu_case(c, &r, &d, 5, 257, 1, "specials");
            }
    mft_gpu_ctx_done(c);
}

/* Decode and prefill sizes of the model table, repeated (plan replay). */
Test(gpu, glu_model_sizes)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    static const int64_t Fs[] = {768, 1536, 2880, 14336};
    for (size_t fi = 0; fi < sizeof Fs / sizeof *Fs; fi++)
        for (int rep = 0; rep < 2; rep++) {
            mf_glu_desc d = {.kind = fi == 2 ? MF_GLU_SWIGLU_OAI
                                             : MF_GLU_SWIGLU,
                             .layout = fi == 2 ? MF_GLU_INTERLEAVED
                                               : MF_GLU_SEPARATE,
                             .in_type = MF_TYPE_F32, .out_type = MF_TYPE_F32};
            glu_case(c, &r, &d, rep ? 8 : 1, Fs[fi], 0, "model");
        }
    mft_gpu_ctx_done(c);
}

/* ------------------------------------------------------------- io paths */

/* The memory paths a device may take for op inputs and outputs, forced on
 * this device: staging buffers with recorded copies, and outputs written
 * straight into host memory (a discrete GPU's path). */
Test(gpu, io_paths)
{
    for (int v = 2; v <= 3; v++) {
        mf_ctx *c = mft_gpu_ctx(v);
        mft_rng r = mft_rng_make(__LINE__ + (uint64_t)v);
        for (int rep = 0; rep < 2; rep++) {
            const int32_t E = 128;
            const int64_t T = 7;
            float *x = mft_alloc((size_t)(T * E) * 4, 4);
            float *bias = mft_alloc((size_t)E * 4, 0);
            mft_fill_normal(&r, x, (size_t)(T * E), 2.0f);
            mft_fill_normal(&r, bias, (size_t)E, 0.1f);
            for (int mode = 0; mode < MF_GATING_MODE_COUNT_; mode++) {
                mf_gating_desc d = {.mode = (mf_gating_mode)mode,
                                    .n_experts = E, .k = 8, .renormalize = 1,
                                    .bias = bias};
                gating_check(c, &d, x, T, "io paths");
            }
            mft_free(x);
            mft_free(bias);
            const int64_t D = 1001;
            const int32_t k = 4;
            float *xs = mft_alloc((size_t)(T * k * D) * 4, 0);
            float *w = mft_alloc((size_t)(T * k) * 4, 0);
            float *res = mft_alloc((size_t)(T * D) * 4, 0);
            mft_fill_normal(&r, xs, (size_t)(T * k * D), 1.0f);
            mft_fill_uniform(&r, w, (size_t)(T * k), 0.0f, 1.0f);
            mft_fill_normal(&r, res, (size_t)(T * D), 1.0f);
            combine_check(c, 1, T, k, D, xs, w, res, "io paths");
            combine_check(c, 0, T, k, D, xs, w, NULL, "io paths");
            mft_free(xs);
            mft_free(w);
            mft_free(res);
            mf_glu_desc gd = {.kind = MF_GLU_SWIGLU, .layout = MF_GLU_SEPARATE,
                              .in_type = MF_TYPE_BF16,
                              .out_type = MF_TYPE_F16};
            glu_case(c, &r, &gd, 3, 333, 0, "io paths");
            gd.layout = MF_GLU_INTERLEAVED;
            gd.in_type = MF_TYPE_F32;
            gd.out_type = MF_TYPE_F32;
            glu_case(c, &r, &gd, 2, 77, 1, "io paths");
        }
        mft_gpu_ctx_done(c);
    }
}

/* ---------------------------------------------------- pipeline statistics */

typedef struct pstat_seen {
    int pipes, glu, bad;
} pstat_seen;

static void pstat_count(void *user, const mf_gpu_pipe_info *p)
{
    pstat_seen *s = user;
    s->pipes++;
    s->glu += p->shader && strcmp(p->shader, "glu") == 0;
    /* every statistic named; the count within the array */
    if (!p->shader || p->n_stats > MF_GPU_PIPE_STATS)
        s->bad++;
    for (uint32_t i = 0; i < p->n_stats && i < MF_GPU_PIPE_STATS; i++)
        if (!p->stats[i].name || !p->stats[i].name[0])
            s->bad++;
}

/* MOEFUSE_GPU_PIPELINE_STATS=1: every pipeline built keeps the driver's
 * statistics where the driver offers VK_KHR_pipeline_executable_properties
 * (and the feature); -1 where it does not, or without the variable. Either
 * way the ops give the same results. */
Test(gpu, pipeline_stats)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    mf_glu_desc gd = {.kind = MF_GLU_SWIGLU, .layout = MF_GLU_SEPARATE,
                      .in_type = MF_TYPE_F32, .out_type = MF_TYPE_F32};
    glu_case(c, &r, &gd, 2, 129, 0, "no stats");
    cr_assert_eq(mf_gpu_pipeline_stats(mft_gpu_of(c), pstat_count, NULL), -1,
                 "statistics without MOEFUSE_GPU_PIPELINE_STATS");
    mft_gpu_ctx_done(c);
    cr_assert_eq(mf_gpu_pipeline_stats(NULL, pstat_count, NULL), -1);

    setenv("MOEFUSE_GPU_PIPELINE_STATS", "1", 1);
    c = mft_gpu_ctx(0);
    unsetenv("MOEFUSE_GPU_PIPELINE_STATS");
#if MF_HAVE_VULKAN
    int offered = mf_vk_pstats_offered(&mft_gpu_of(c)->vk);
#else
    int offered = 0; /* not reached: no device, the test was skipped */
#endif
    glu_case(c, &r, &gd, 2, 129, 0, "stats");
    pstat_seen s = {0};
    int n = mf_gpu_pipeline_stats(mft_gpu_of(c), pstat_count, &s);
    if (!offered) {
        cr_assert_eq(n, -1, "statistics from a driver that offers none");
        cr_log_info("pipeline statistics: the driver does not offer "
                    "VK_KHR_pipeline_executable_properties; checked that "
                    "none are claimed");
    } else {
        cr_assert_geq(n, 1, "no pipeline listed");
        cr_assert_eq(n, s.pipes);
        cr_assert_geq(s.glu, 1, "the glu pipeline is not listed");
        cr_assert_eq(s.bad, 0, "unnamed statistics");
    }
    mft_gpu_ctx_done(c);
}
