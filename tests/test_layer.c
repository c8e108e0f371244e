/* mf_moe_layer: presets, validation of config against weights, and the
 * forward chain on scaled-down presets: every CPU impl and the unfused path
 * against the reference path (identical expert choices, outputs within the
 * composed op tolerances), shared experts, biases, residual. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "../tools/synth.h"

Test(layer, presets)
{
    int n = 0;
    for (const char *const *p = mf_moe_preset_names(); *p; p++, n++) {
        mf_moe_config c;
        cr_assert_eq(mf_moe_preset(*p, &c), MF_OK, "%s", *p);
        cr_expect_gt(c.hidden, 0);
        cr_expect_leq(c.top_k, c.n_experts);
    }
    cr_expect_eq(n, 8);
    mf_moe_config c;
    cr_expect_eq(mf_moe_preset("llama-9000", &c), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_preset(NULL, &c), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_preset("deepseek-v3", NULL), MF_ERR_INVALID_ARG);
    cr_assert_eq(mf_moe_preset("deepseek-v3", &c), MF_OK);
    cr_expect_eq(c.n_group, 8);
    cr_expect_eq(c.topk_group, 4);
    cr_expect_float_eq(c.routed_scale, 2.5f, 0);
}

/* A preset shrunk to test size, keeping its router math and layout. */
static mf_moe_config small(const char *preset, int64_t H, int64_t F, int32_t E,
                           int32_t k)
{
    mf_moe_config c;
    cr_assert_eq(mf_moe_preset(preset, &c), MF_OK);
    c.hidden = H;
    c.expert_ffn = F;
    c.n_experts = E;
    c.top_k = k;
    if (c.n_group > 1) {
        c.n_group = 4;
        c.topk_group = 2;
    }
    if (c.n_shared)
        c.shared_ffn = F;
    return c;
}

Test(layer, create_errors)
{
    mf_moe_config c = small("qwen3-30b-a3b", 64, 32, 8, 2);
    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &c, MF_TYPE_Q4_0, 1), 0);
    mf_moe_layer *l = (mf_moe_layer *)0x1;
    cr_expect_eq(mf_moe_layer_create(NULL, &c, &L.w, &l), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), NULL, &L.w, &l), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &c, NULL, &l), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &c, &L.w, NULL), MF_ERR_INVALID_ARG);
    mf_moe_config b = c;
    b.top_k = 9;
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &b, &L.w, &l), MF_ERR_INVALID_ARG);
    b = c;
    b.expert_ffn = 64;
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &b, &L.w, &l), MF_ERR_INVALID_ARG);
    b = c;
    b.router_bias = 1;
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &b, &L.w, &l), MF_ERR_INVALID_ARG);
    b = c;
    b.gate_up_layout = MF_GLU_CONCAT;
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &b, &L.w, &l), MF_ERR_INVALID_ARG);
    b = c;
    b.n_shared = 1;
    b.shared_ffn = 32;
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &b, &L.w, &l), MF_ERR_INVALID_ARG);
    mf_moe_weights w = L.w;
    w.down.k = 48;
    cr_expect_eq(mf_moe_layer_create(mft_ctx(), &c, &w, &l), MF_ERR_INVALID_ARG);
    cr_expect_eq(l, (mf_moe_layer *)0x1, "output written on error");
    cr_assert_eq(mf_moe_layer_create(mft_ctx(), &c, &L.w, &l), MF_OK);
    float x[64] = {0}, y[64];
    cr_expect_eq(mf_moe_layer_forward(l, NULL, x, 0, NULL, y), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_forward(l, NULL, NULL, 1, NULL, y), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_forward(l, NULL, x, 1, NULL, x), MF_ERR_INVALID_ARG, "y overlaps x");
    mf_moe_run bad = {(mf_impl)99, MF_PREC_EXACT};
    cr_expect_eq(mf_moe_layer_forward(l, &bad, x, 1, NULL, y), MF_ERR_INVALID_ARG);
    cr_expect_null(mf_moe_layer_last_routing(l, NULL, NULL), "no forward yet");
    /* explain: errors leave the outputs alone; otherwise its verdict is
     * the comparison of the two predictions it reports */
    int one = 7;
    double sub = 7, ops = 7;
    cr_expect_eq(mf_moe_layer_explain(NULL, 1, &one, &sub, &ops), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_explain(l, 0, &one, &sub, &ops), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_layer_explain(l, 65537, &one, &sub, &ops), MF_ERR_INVALID_ARG);
    cr_expect(one == 7 && sub == 7 && ops == 7, "outputs written on error");
    cr_expect_eq(mf_moe_layer_explain(l, 1, NULL, NULL, NULL), MF_OK);
    for (int64_t T = 1; T <= 64; T *= 4) {
        cr_assert_eq(mf_moe_layer_explain(l, T, &one, &sub, &ops), MF_OK);
        if (sub < 0 || ops < 0)
            cr_expect_eq(one, 0, "T=%lld: one submit without predictions", (long long)T);
        else
            cr_expect_eq(one, sub <= ops, "T=%lld: %g vs %g", (long long)T, sub, ops);
        if (mf_ctx_cache_status(mft_ctx()) != MF_OK)
            cr_expect(sub < 0 && ops < 0 && one == 0, "no cache, yet predictions");
    }
    mf_moe_layer_destroy(l);
    mf_moe_layer_destroy(NULL);
    synth_layer_free(&L);
}

/* Runs impl and the reference on the same tokens; checks the choices and
 * the outputs. Output tolerance: the sum of the op tolerances (qmv EXACT
 * ~2^-22 K per dot, glu 8 ulp, combine (k+1) 2^-24) stays far under 1e-4
 * relative to max|y| at these sizes. */
static void check_impl(mf_moe_layer *l, const mf_moe_config *c, mf_impl impl,
                       mf_precision prec, const float *x, int64_t T,
                       const float *res, double tol)
{
    size_t TH = (size_t)T * (size_t)c->hidden, Tk = (size_t)T * (size_t)c->top_k;
    float *y0 = malloc(TH * 4), *y1 = malloc(TH * 4);
    int32_t *i0 = malloc(Tk * 4);
    mf_moe_run r0 = {MF_IMPL_REF, MF_PREC_EXACT}, r1 = {impl, prec};
    cr_assert_eq(mf_moe_layer_forward(l, &r0, x, T, res, y0), MF_OK);
    int64_t nt = 0;
    const int32_t *idx = mf_moe_layer_last_routing(l, NULL, &nt);
    cr_assert_not_null(idx);
    cr_assert_eq(nt, T);
    memcpy(i0, idx, Tk * 4);
    mf_status st = mf_moe_layer_forward(l, &r1, x, T, res, y1);
    cr_assert_eq(st, MF_OK, "impl %s: %s", mf_impl_name(impl), mf_status_str(st));
    idx = mf_moe_layer_last_routing(l, NULL, NULL);
    for (size_t i = 0; i < Tk; i++)
        cr_assert_eq(idx[i], i0[i], "impl %s slot %zu", mf_impl_name(impl), i);
    double mx = 0, err = 0;
    for (size_t i = 0; i < TH; i++) {
        mx = fmax(mx, fabs(y0[i]));
        err = fmax(err, fabs((double)y1[i] - y0[i]));
    }
    cr_expect_leq(err, tol * mx, "impl %s prec %d: err %g max %g", mf_impl_name(impl),
                  prec, err, mx);
    free(y0);
    free(y1);
    free(i0);
}

static void run_preset(const char *preset, mf_type fmt, int64_t T, int residual)
{
    mf_moe_config c = small(preset, 128, 64, 16, 4);
    mft_rng r = mft_rng_make((uint64_t)T * 31 + (uint64_t)fmt);
    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &c, fmt, mft_next(&r)), 0);
    mf_moe_layer *l;
    cr_assert_eq(mf_moe_layer_create(mft_ctx(), &c, &L.w, &l), MF_OK, "%s", preset);
    size_t TH = (size_t)T * (size_t)c.hidden;
    float *x = malloc(TH * 4), *res = residual ? malloc(TH * 4) : NULL;
    mft_fill_normal(&r, x, TH, 1.0f);
    if (res)
        mft_fill_normal(&r, res, TH, 1.0f);
    mf_impl impls[8];
    int n = mft_cpu_impls(impls);
    for (int i = 0; i < n; i++)
        check_impl(l, &c, impls[i], MF_PREC_EXACT, x, T, res, 1e-4);
    check_impl(l, &c, MF_IMPL_UNFUSED, MF_PREC_EXACT, x, T, res, 1e-4);
    /* INT8 activations: a few percent of max|y| (ops.h bound, summed) */
    if (fmt != MF_TYPE_F16)
        check_impl(l, &c, MF_IMPL_CPU, MF_PREC_INT8, x, T, res, 5e-2);
    free(x);
    free(res);
    mf_moe_layer_destroy(l);
    synth_layer_free(&L);
}

Test(layer, qwen3_q4_0) { run_preset("qwen3-30b-a3b", MF_TYPE_Q4_0, 1, 0); run_preset("qwen3-30b-a3b", MF_TYPE_Q4_0, 7, 1); }
Test(layer, mixtral_q8_0) { run_preset("mixtral-8x7b", MF_TYPE_Q8_0, 3, 1); }
Test(layer, deepseek_shared_mlx) { run_preset("deepseek-v3", MF_TYPE_MLX_Q4, 5, 1); }
Test(layer, gptoss_biases_mlx8) { run_preset("gpt-oss-20b", MF_TYPE_MLX_Q8, 4, 0); }
Test(layer, olmoe_f16) { run_preset("olmoe-1b-7b", MF_TYPE_F16, 2, 0); }
Test(layer, glm_shared) { run_preset("glm-4.7-flash", MF_TYPE_Q4_0, 3, 1); }
Test(layer, lfm2) { run_preset("lfm2-8b-a1b", MF_TYPE_Q8_0, 2, 0); }

Test(layer, residual_in_place)
{
    mf_moe_config c = small("qwen3-30b-a3b", 64, 32, 8, 2);
    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &c, MF_TYPE_Q8_0, 5), 0);
    mf_moe_layer *l;
    cr_assert_eq(mf_moe_layer_create(mft_ctx(), &c, &L.w, &l), MF_OK);
    mft_rng r = mft_rng_make(__LINE__);
    float x[3 * 64], res[3 * 64], y[3 * 64], inplace[3 * 64];
    mft_fill_normal(&r, x, 192, 1.0f);
    mft_fill_normal(&r, res, 192, 1.0f);
    memcpy(inplace, res, sizeof res);
    mf_moe_run run = {MF_IMPL_CPU, MF_PREC_EXACT};
    cr_assert_eq(mf_moe_layer_forward(l, &run, x, 3, res, y), MF_OK);
    cr_assert_eq(mf_moe_layer_forward(l, &run, x, 3, inplace, inplace), MF_OK);
    cr_expect_eq(memcmp(y, inplace, sizeof y), 0, "in-place residual equals out-of-place");
    mf_moe_layer_destroy(l);
    synth_layer_free(&L);
}
