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
        /* E, n_group, topk_group, k */
        {256, 8, 4, 8}, {64, 4, 2, 6}, {64, 64, 8, 8}, {96, 3, 2, 5},
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
