/* Kernel forms (src/gpu/gpu.h): the placement cache's measured forms reach
 * the GPU for the shape buckets they were measured at (the environment
 * overrides still win), they change no bits, and moefuse-profile measures
 * them at its GPU points. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gpu_common.h"
#include "qdata.h"
#include "tools/synth.h"
#include "src/dispatch/cache.h"
#include "src/dispatch/profile.h"

/* The shapes of the test: Qwen3-like gating over 16 experts, top 4; the
 * expert ops at E = 8, k = 2, H = F = 64, Q4_0. */
#define GE 16
#define GK 4
#define XE 8
#define XK 2
#define XH 64
#define XF 64

static mf_op_shape gating_shape(int64_t T)
{
    return (mf_op_shape){.op = MF_OP_GATING, .T = T, .E = GE, .k = GK,
                         .wtype = MF_TYPE_F32,
                         .mode = MF_GATING_SOFTMAX_TOPK};
}

static mf_op_shape gate_up_shape(int64_t T)
{
    return (mf_op_shape){.op = MF_OP_MOE_GATE_UP, .T = T, .E = XE, .k = XK,
                         .N = XF, .K = XH, .wtype = MF_TYPE_Q4_0,
                         .mode = MF_GLU_SWIGLU};
}

static mf_op_shape down_shape(int64_t T)
{
    return (mf_op_shape){.op = MF_OP_MOE_DOWN, .T = T, .E = XE, .k = XK,
                         .N = XH, .K = XF, .wtype = MF_TYPE_Q4_0};
}

static void add_form(mf_placement *p, mf_op_shape s, int form, double us0,
                     double us1)
{
    mf_pc_form f = {.s = s, .form = form, .us = {us0, us1}};
    cr_assert_eq(mf_placement_add_form(p, &f), MF_OK);
}

/* An empty placement for a's machine, to add forms to. */
static mf_placement *cache_for(mf_ctx *a)
{
    mf_placement *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    cr_assert_eq(mf_fingerprint_make(a, &p->fp), MF_OK);
    snprintf(p->created, sizeof p->created, "2026-12-07T00:00:00Z");
    snprintf(p->profile_mode, sizeof p->profile_mode, "test");
    p->complete = 1;
    return p;
}

static mf_ctx *ctx_at(const char *path);

/* Writes p (freed) to a's directory and opens a second context on the
 * same device that reads it. */
static mf_ctx *open_with(mf_ctx *a, mf_placement *p)
{
    char path[256];
    snprintf(path, sizeof path, "%s/forms.json", mft_gpu_dir(a));
    cr_assert_eq(mf_placement_finish(p), MF_OK);
    cr_assert_eq(mf_placement_save(p, path), MF_OK);
    mf_placement_free(p);
    mf_ctx *b = ctx_at(path);
    cr_assert_eq(mf_ctx_cache_status(b), MF_OK, "%s",
                 mf_status_str(mf_ctx_cache_status(b)));
    return b;
}

/* A context on the same device reading the cache at `path`. */
static mf_ctx *ctx_at(const char *path)
{
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.cache_path = path;
    mf_ctx *c = NULL;
    cr_assert_eq(mf_ctx_create(&o, &c), MF_OK);
    return c;
}

static void expect_forms(mf_ctx *c, const int want[MF_GPU_FORM_COUNT_],
                         const char *what)
{
    mf_gpu_forms f;
    mf_gpu_forms_current(mft_gpu_of(c), &f);
    for (int i = 0; i < MF_GPU_FORM_COUNT_; i++)
        cr_expect_eq(f.v[i], want[i], "%s: form %s is %d, want %d", what,
                     mf_gpu_form_name(i), f.v[i], want[i]);
}

#define AU MF_GPU_FORM_AUTO
_Static_assert(MF_GPU_FORM_COUNT_ == 6,
               "the expected forms below list every form: add the new one");

Test(gpu, forms_from_cache)
{
    mf_ctx *a = mft_gpu_ctx(0);
    /* a cache for this machine whose only content is forms (their values
     * follow from the times: the faster by more than 3%, else automatic) */
    mf_placement *p = cache_for(a);
    add_form(p, gating_shape(1), MF_GPU_FORM_GATING_RANK, 5, 9); /* 0 */
    add_form(p, gating_shape(2), MF_GPU_FORM_GATING_RANK, 9, 5); /* 1 */
    add_form(p, gating_shape(3), MF_GPU_FORM_GATING_RANK, 5, 5.1); /* auto */
    add_form(p, gate_up_shape(1), MF_GPU_FORM_GU_XSTAGE, 5, 9);
    add_form(p, gate_up_shape(1), MF_GPU_FORM_GU_GROUP, 9, 5);
    add_form(p, down_shape(1), MF_GPU_FORM_DN_SLOTS, 5, 9);
    add_form(p, down_shape(1), MF_GPU_FORM_DN_XSTAGE, 5, 9);
    mf_ctx *b = open_with(a, p);

    mft_rng r = mft_rng_make(__LINE__);
    /* gating: the forms per T bucket, the same bits as the built-in
     * choice of context a */
    float logits[4 * GE], wa[4 * GK], wb[4 * GK];
    int32_t ia[4 * GK], ib[4 * GK];
    mft_fill_normal(&r, logits, 4 * GE, 2.0f);
    mf_gating_desc gd = {.impl = MF_IMPL_GPU, .mode = MF_GATING_SOFTMAX_TOPK,
                         .n_experts = GE, .k = GK, .renormalize = 1};
    static const int rank_want[4] = {0, 1, AU, AU};
    for (int64_t T = 1; T <= 4; T++) {
        cr_assert_eq(mf_gating(a, &gd, logits, T, ia, wa), MF_OK);
        cr_assert_eq(mf_gating(b, &gd, logits, T, ib, wb), MF_OK);
        int want[MF_GPU_FORM_COUNT_] = {rank_want[T - 1], AU, AU, AU, AU, AU};
        char what[32];
        snprintf(what, sizeof what, "gating T=%lld", (long long)T);
        expect_forms(b, want, what);
        cr_expect_eq(memcmp(ia, ib, (size_t)(T * GK) * 4), 0, "%s idx", what);
        cr_expect_eq(memcmp(wa, wb, (size_t)(T * GK) * 4), 0, "%s w", what);
    }
    /* the environment wins over the cache */
    setenv("MOEFUSE_GPU_GATING_RANK", "1", 1);
    cr_assert_eq(mf_gating(b, &gd, logits, 1, ib, wb), MF_OK);
    expect_forms(b, (int[]){1, AU, AU, AU, AU, AU}, "gating T=1, env 1");
    unsetenv("MOEFUSE_GPU_GATING_RANK");
    /* MF_IMPL_AUTO calls that the router sends to the CPU (this cache has
     * no measurements) do not touch the GPU's forms */
    gd.impl = MF_IMPL_AUTO;
    cr_assert_eq(mf_gating(b, &gd, logits, 2, ib, wb), MF_OK);
    expect_forms(b, (int[]){0, AU, AU, AU, AU, AU}, "gating AUTO on the CPU");

    /* the expert ops */
    const qd_variant q4 = {MF_TYPE_Q4_0, 0, MF_TYPE_F32};
    qd_tensor wg = qd_make(&r, &q4, XE, 2 * XF, XH, 0, 0);
    qd_tensor wd = qd_make(&r, &q4, XE, XH, XF, 0, 0);
    float x[2 * XH], ha[2 * XK * XF], hb[2 * XK * XF];
    float ya[2 * XH], yb[2 * XH], w[2 * XK];
    int32_t idx[2 * XK] = {1, 5, 7, 1};
    mft_fill_normal(&r, x, 2 * XH, 1.0f);
    mft_fill_uniform(&r, w, 2 * XK, 0.0f, 1.0f);
    mf_moe_gate_up_desc gu = {.impl = MF_IMPL_GPU, .glu = MF_GLU_SWIGLU,
                              .layout = MF_GLU_CONCAT, .w_gate = &wg.t};
    mf_moe_down_desc dd = {.impl = MF_IMPL_GPU, .w_down = &wd.t};
    for (int64_t T = 1; T <= 2; T++) {
        const size_t hn = (size_t)(T * XK * XF), yn = (size_t)(T * XH);
        cr_assert_eq(mf_moe_gate_up(a, &gu, T, XK, x, idx, ha), MF_OK);
        cr_assert_eq(mf_moe_gate_up(b, &gu, T, XK, x, idx, hb), MF_OK);
        expect_forms(b, T == 1 ? (int[]){AU, 0, 1, AU, AU, AU}
                               : (int[]){AU, AU, AU, AU, AU, AU},
                     T == 1 ? "gate_up T=1" : "gate_up T=2");
        cr_expect_eq(memcmp(ha, hb, hn * 4), 0, "gate_up T=%lld bits",
                     (long long)T);
        cr_assert_eq(mf_moe_down_combine(a, &dd, T, XK, ha, idx, w, NULL, ya),
                     MF_OK);
        cr_assert_eq(mf_moe_down_combine(b, &dd, T, XK, ha, idx, w, NULL, yb),
                     MF_OK);
        expect_forms(b, T == 1 ? (int[]){AU, AU, AU, 0, 0, AU}
                               : (int[]){AU, AU, AU, AU, AU, AU},
                     T == 1 ? "down T=1" : "down T=2");
        cr_expect_eq(memcmp(ya, yb, yn * 4), 0, "down T=%lld bits",
                     (long long)T);
    }
    /* INT8 calls take the built-in forms (the profiler measures EXACT) */
    gu.prec = MF_PREC_INT8;
    cr_assert_eq(mf_moe_gate_up(b, &gu, 1, XK, x, idx, hb), MF_OK);
    expect_forms(b, (int[]){AU, AU, AU, AU, AU, AU}, "gate_up T=1 INT8");
    gu.prec = MF_PREC_EXACT;
    cr_assert_eq(mf_moe_gate_up(b, &gu, 1, XK, x, idx, hb), MF_OK);
    expect_forms(b, (int[]){AU, 0, 1, AU, AU, AU}, "gate_up T=1 EXACT again");
    dd.prec = MF_PREC_INT8;
    cr_assert_eq(mf_moe_down_combine(b, &dd, 1, XK, ha, idx, w, NULL, yb),
                 MF_OK);
    expect_forms(b, (int[]){AU, AU, AU, AU, AU, AU}, "down T=1 INT8");
    qd_free(&wg);
    qd_free(&wd);
    mf_ctx_destroy(b);
    mft_gpu_ctx_done(a);
}

/* The layer's GPU chain takes each op's forms from its own shape. */
Test(gpu, forms_in_layer_chain)
{
    mf_ctx *a = mft_gpu_ctx(0);
    mf_moe_config cfg;
    cr_assert_eq(mf_moe_preset("qwen3-30b-a3b", &cfg), MF_OK);
    cfg.hidden = XH;
    cfg.expert_ffn = XF;
    cfg.n_experts = GE;
    cfg.top_k = GK;
    cfg.n_shared = cfg.shared_ffn = 0;
    mf_placement *p = cache_for(a);
    mf_op_shape gs = gating_shape(1);
    gs.mode = (int)cfg.router;
    mf_op_shape us = {.op = MF_OP_MOE_GATE_UP, .T = 1, .E = GE, .k = GK,
                      .N = XF, .K = XH, .wtype = MF_TYPE_Q4_0,
                      .mode = (int)cfg.glu};
    mf_op_shape ds = {.op = MF_OP_MOE_DOWN, .T = 1, .E = GE, .k = GK,
                      .N = XH, .K = XF, .wtype = MF_TYPE_Q4_0};
    add_form(p, gs, MF_GPU_FORM_GATING_RANK, 9, 5);  /* 1 */
    add_form(p, us, MF_GPU_FORM_GU_XSTAGE, 5, 9);    /* 0 */
    add_form(p, ds, MF_GPU_FORM_DN_SLOTS, 9, 5);     /* 1 */
    add_form(p, ds, MF_GPU_FORM_DN_XSTAGE, 5, 9);    /* 0 */
    mf_ctx *b = open_with(a, p);

    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &cfg, MF_TYPE_Q4_0, 7), 0);
    mf_moe_layer *la, *lb;
    cr_assert_eq(mf_moe_layer_create(a, &cfg, &L.w, &la), MF_OK);
    cr_assert_eq(mf_moe_layer_create(b, &cfg, &L.w, &lb), MF_OK);
    mft_rng r = mft_rng_make(__LINE__);
    float x[2 * XH], ya[2 * XH], yb[2 * XH];
    mft_fill_normal(&r, x, 2 * XH, 1.0f);
    const mf_moe_run run = {MF_IMPL_GPU, MF_PREC_EXACT};
    for (int64_t T = 1; T <= 2; T++) {
        cr_assert_eq(mf_moe_layer_forward(la, &run, x, T, NULL, ya), MF_OK);
        cr_assert_eq(mf_moe_layer_forward(lb, &run, x, T, NULL, yb), MF_OK);
        expect_forms(b, T == 1 ? (int[]){1, 0, AU, 1, 0, AU}
                               : (int[]){AU, AU, AU, AU, AU, AU},
                     T == 1 ? "chain T=1" : "chain T=2");
        cr_expect_eq(memcmp(ya, yb, (size_t)(T * XH) * 4), 0,
                     "chain T=%lld bits", (long long)T);
    }
    mf_moe_layer_destroy(la);
    mf_moe_layer_destroy(lb);
    synth_layer_free(&L);
    mf_ctx_destroy(b);
    mft_gpu_ctx_done(a);
}

/* The profiler measures each gating point's form both ways, keeps the
 * value its times give, and leaves the context's forms unforced. */
Test(gpu, forms_profiled, .timeout = 300)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mf_prof_opts o = {.budget_s = 4, .only_op = "gating"};
    mf_placement *p = NULL;
    cr_assert_eq(mf_profile_run(c, &o, &p), MF_OK);
    cr_expect_eq(c->forms_forced, 0);
    size_t gpu_pts = 0;
    for (size_t i = 0; i < p->n_pts; i++)
        gpu_pts += p->pts[i].dev == MF_DEVICE_GPU;
    cr_assert_gt(gpu_pts, 0);
    /* one gating_rank form per GPU point */
    cr_expect_eq(p->n_forms, gpu_pts, "%zu forms, %zu GPU points",
                 p->n_forms, gpu_pts);
    for (size_t i = 0; i < p->n_forms; i++) {
        const mf_pc_form *f = &p->forms[i];
        cr_expect_eq(f->form, MF_GPU_FORM_GATING_RANK);
        cr_expect(f->us[0] > 0 && f->us[1] > 0);
        cr_expect_eq(f->value, mf_pc_form_pick(f->us));
        cr_expect_not_null(mf_placement_find(p, &f->s, MF_DEVICE_GPU),
                           "form at T=%lld without its GPU point",
                           (long long)f->s.T);
    }
    /* and round-trips through the file */
    size_t len;
    char *text = mf_placement_to_json(p, &len);
    cr_assert_not_null(text);
    mf_placement *q = NULL;
    cr_assert_eq(mf_placement_parse(text, len, &p->fp, &q), MF_OK);
    cr_expect_eq(q->n_forms, p->n_forms);
    free(text);
    mf_placement_free(q);
    mf_placement_free(p);
    /* a form the environment fixes is not measured */
    setenv("MOEFUSE_GPU_GATING_RANK", "0", 1);
    o.budget_s = 1;
    cr_assert_eq(mf_profile_run(c, &o, &p), MF_OK);
    unsetenv("MOEFUSE_GPU_GATING_RANK");
    cr_expect_eq(p->n_forms, 0);
    mf_placement_free(p);
    mft_gpu_ctx_done(c);
}
