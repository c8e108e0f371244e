/* mf_glu and the element kernels act/store: the reference against naive
 * double-precision oracles; every CPU impl and the unfused baseline against
 * the reference for all kinds x layouts x in/out types; odd sizes and
 * tails, unaligned buffers, NaN/Inf, SWIGLU_OAI clamping edges, writes
 * outside the output, and every error path. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "src/cpu/kernels.h"

/* ops.h: f32 outputs of non-reference impls within GLU_ULP ulp (GEGLU_ERF:
 * GLU_ULP_ERF) or GLU_ABS absolute of the reference. Their activation
 * factors are polynomial (sigmoid <= 3 ulp, avx512 silu <= 5, erfc <= 6,
 * see vmath.h) where the reference's are rounded once from double
 * (<= 0.5 ulp); the arguments are formed with the same f32 operations, and
 * the products with g and u add up to two more roundings to each side.
 * GLU_ABS covers results where the reference's factor is subnormal
 * (|value| < 2^-126 |g u|) and the avx512 silu's -0 below x = -88.7. */
#define GLU_ULP 8
#define GLU_ULP_ERF 10
#define GLU_ABS 1e-30f

/* Reference vs the oracle that forms the arguments with the documented f32
 * steps and evaluates the rest in double: the factor's rounding (0.5 ulp)
 * plus up to three f32 roundings (g * factor, * u, and u + 1 for OAI). */
#define ORACLE_ULP 3
#define ORACLE_ABS 1e-37

static const mf_type types[] = {MF_TYPE_F32, MF_TYPE_F16, MF_TYPE_BF16};
static const mf_glu_layout layouts[] = {MF_GLU_SEPARATE, MF_GLU_CONCAT,
                                        MF_GLU_INTERLEAVED};
static const mf_glu_kind kinds[] = {MF_GLU_SWIGLU, MF_GLU_GEGLU_TANH,
                                    MF_GLU_GEGLU_ERF, MF_GLU_SWIGLU_OAI};

/* ------------------------------------------------------------ helpers -- */

static size_t tsize(mf_type t) { return t == MF_TYPE_F32 ? 4 : 2; }

static void put(mf_type t, void *p, size_t i, float v)
{
    unsigned char *b = p;
    if (t == MF_TYPE_F32) {
        memcpy(b + 4 * i, &v, 4);
        return;
    }
    uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(v) : mf_f32_to_bf16(v);
    memcpy(b + 2 * i, &h, 2);
}

static float get(mf_type t, const void *p, size_t i)
{
    const unsigned char *b = p;
    if (t == MF_TYPE_F32) {
        float f;
        memcpy(&f, b + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, b + 2 * i, 2);
    return t == MF_TYPE_F16 ? mf_f16_to_f32(h) : mf_bf16_to_f32(h);
}

static uint16_t get16(const void *p, size_t i)
{
    uint16_t h;
    memcpy(&h, (const unsigned char *)p + 2 * i, 2);
    return h;
}

/* A glu problem: inputs in the layout's buffers (unaligned by 1..3
 * elements), and their exact f32 values gw/uw [T, n] for the oracles. */
typedef struct gdata {
    mf_glu_desc d;
    int64_t T, n;
    void *gate, *up;
    float *gw, *uw;
} gdata;

static gdata make(const mf_glu_desc *d, int64_t T, int64_t n, const float *gsrc,
                  const float *usrc, mft_rng *r)
{
    gdata g = {.d = *d, .T = T, .n = n};
    const size_t es = tsize(d->in_type), N = (size_t)(T * n);
    const int sep = d->layout == MF_GLU_SEPARATE;
    g.gate = mft_alloc(N * (sep ? 1 : 2) * es, es * (size_t)mft_int(r, 1, 3));
    g.up = sep ? mft_alloc(N * es, es * (size_t)mft_int(r, 1, 3)) : NULL;
    g.gw = malloc(N * 4);
    g.uw = malloc(N * 4);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) {
            const size_t e = (size_t)(t * n + i);
            size_t gi, ui;
            void *ub;
            switch (d->layout) {
            case MF_GLU_SEPARATE: gi = e; ui = e; ub = g.up; break;
            case MF_GLU_CONCAT: gi = (size_t)(2 * t * n + i); ui = gi + (size_t)n; ub = g.gate; break;
            default: gi = (size_t)(2 * (t * n + i)); ui = gi + 1; ub = g.gate; break;
            }
            put(d->in_type, g.gate, gi, gsrc[e]);
            put(d->in_type, ub, ui, usrc[e]);
            g.gw[e] = get(d->in_type, g.gate, gi);
            g.uw[e] = get(d->in_type, ub, ui);
        }
    return g;
}

static void drop(gdata *g)
{
    mft_free(g->gate);
    mft_free(g->up);
    free(g->gw);
    free(g->uw);
}

#define GUARD 32 /* poisoned bytes after each output */

static void *alloc_out(const gdata *g, size_t off)
{
    return mft_alloc((size_t)(g->T * g->n) * tsize(g->d.out_type) + GUARD, off);
}

static mf_status run(mf_impl impl, const gdata *g, void *out)
{
    mf_glu_desc d = g->d;
    d.impl = impl;
    return mf_glu(mft_ctx(), &d, g->T, g->n, g->gate, g->up, out);
}

static void check_guard(const gdata *g, const void *out, const char *what)
{
    const unsigned char *b = (const unsigned char *)out +
                             (size_t)(g->T * g->n) * tsize(g->d.out_type);
    for (size_t i = 0; i < GUARD; i++)
        cr_assert_eq(b[i], 0xA5, "%s: byte %zu after the output written", what, i);
}

/* ------------------------------------------------------------ oracles -- */

static float lim_of(const mf_glu_desc *d) { return d->limit != 0 ? d->limit : 7.0f; }
static float alpha_of(const mf_glu_desc *d) { return d->alpha != 0 ? d->alpha : 1.702f; }

static double sig(double a) { return 1.0 / (1.0 + exp(-a)); }

/* The documented f32 argument steps (actf.h / ops.h), then double. */
static double oracle_f32args(const mf_glu_desc *d, float g, float u)
{
    switch (d->kind) {
    case MF_GLU_GEGLU_TANH: {
        float t = g * g;
        t = t * 0.0713548162726f;
        t = t + 1.5957691216057308f;
        float y = g * t;
        return (double)g * sig(y) * u;
    }
    case MF_GLU_GEGLU_ERF: {
        float z = g * -0.70710678118654752f;
        return (double)g * (0.5 * erfc((double)z)) * u;
    }
    case MF_GLU_SWIGLU_OAI: {
        const float L = lim_of(d);
        float gg = g > L ? L : g;
        float uu = u > L ? L : (u < -L ? -L : u);
        float a = alpha_of(d) * gg;
        return ((double)uu + 1.0) * ((double)gg * sig(a));
    }
    default: return (double)g * sig(g) * u;
    }
}

/* The textbook formulas in double from the exact inputs, and the condition
 * number of the activation factor with respect to its argument (how much a
 * relative change of the argument is amplified). */
static double oracle_pure(const mf_glu_desc *d, float g, float u, double *cond)
{
    const double x = g;
    switch (d->kind) {
    case MF_GLU_GEGLU_TANH: {
        /* 0.5 x (1 + tanh(y)) = x sigmoid(2y): no cancellation for x < 0 */
        double y = 2.0 * sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x);
        *cond = fabs(y) * (1.0 - sig(y));
        return x * sig(y) * u;
    }
    case MF_GLU_GEGLU_ERF: {
        double z = -x / sqrt(2.0);
        double f = 0.5 * erfc(z);
        *cond = f > 0 ? fabs(z) * exp(-z * z) / sqrt(3.14159265358979323846) / f : 0.0;
        return x * f * u;
    }
    case MF_GLU_SWIGLU_OAI: {
        const double L = lim_of(d);
        double gg = x > L ? L : x, uu = u > L ? L : (u < -L ? -L : (double)u);
        double a = (double)alpha_of(d) * gg;
        *cond = fabs(a) * (1.0 - sig(a));
        return (uu + 1.0) * gg * sig(a);
    }
    default:
        *cond = 0.0;
        return x * sig(x) * u;
    }
}

/* |got - want| in ulps of the f32 result (at least the smallest normal's). */
static double ulps(float got, double want)
{
    int e;
    frexp(fabs(want), &e);
    double ulp = ldexp(1.0, e - 24);
    if (ulp < ldexp(1.0, -149))
        ulp = ldexp(1.0, -149);
    return fabs((double)got - want) / ulp;
}

/* v against a double result: NaN to NaN, infinities equal, else within
 * `ulp` ulps or `abs_tol` absolute. */
static int close_to(float v, double o, double ulp, double abs_tol)
{
    if (isnan(o))
        return isnan(v);
    if (isinf(o))
        return (double)v == o;
    return ulps(v, o) <= ulp || fabs((double)v - o) <= abs_tol;
}

/* Compares impl output with the reference's per out_type: f32 within
 * GLU_ULP/GLU_ABS (exact: bit for bit, NaN equal to NaN); f16/bf16 within
 * one unit in the last place of the output type (both codes on the same
 * side of zero, at most one step apart), NaN to NaN. */
static void compare(const gdata *g, const void *out, const void *ref,
                    int exact, const char *what)
{
    const size_t N = (size_t)(g->T * g->n);
    for (size_t i = 0; i < N; i++) {
        const float a = get(g->d.out_type, out, i), b = get(g->d.out_type, ref, i);
        if (isnan(a) || isnan(b)) {
            cr_assert(isnan(a) && isnan(b), "%s: out[%zu] %g vs ref %g (g %g u %g)",
                      what, i, (double)a, (double)b, (double)g->gw[i], (double)g->uw[i]);
            continue;
        }
        if (exact || g->d.out_type == MF_TYPE_F32) {
            const uint32_t tol = g->d.kind == MF_GLU_GEGLU_ERF ? GLU_ULP_ERF : GLU_ULP;
            cr_assert(exact ? mft_ulp_diff(a, b) == 0 : mft_close(b, a, tol, GLU_ABS),
                      "%s: out[%zu] %.9g vs ref %.9g (%u ulp; g %.9g u %.9g)", what, i,
                      (double)a, (double)b, mft_ulp_diff(a, b), (double)g->gw[i],
                      (double)g->uw[i]);
        } else {
            const int32_t ha = get16(out, i), hb = get16(ref, i);
            const int32_t oa = ha & 0x8000 ? -(ha & 0x7fff) : ha;
            const int32_t ob = hb & 0x8000 ? -(hb & 0x7fff) : hb;
            cr_assert(abs(oa - ob) <= 1, "%s: out[%zu] %#06x vs ref %#06x (g %.9g u %.9g)",
                      what, i, (unsigned)ha, (unsigned)hb, (double)g->gw[i],
                      (double)g->uw[i]);
        }
    }
}

/* The reference on g, checked against both oracles (f32 outputs), then
 * every impl and the unfused baseline against the reference. */
static void check_all(const gdata *g, mft_rng *r, const char *tag)
{
    const size_t N = (size_t)(g->T * g->n);
    void *ref = alloc_out(g, tsize(g->d.out_type) * (size_t)mft_int(r, 1, 3));
    cr_assert_eq(run(MF_IMPL_REF, g, ref), MF_OK);
    check_guard(g, ref, "ref");
    char what[160];
    if (g->d.out_type == MF_TYPE_F32) {
        for (size_t i = 0; i < N; i++) {
            const float v = get(MF_TYPE_F32, ref, i);
            const double o = oracle_f32args(&g->d, g->gw[i], g->uw[i]);
            cr_assert(close_to(v, o, ORACLE_ULP, ORACLE_ABS),
                      "%s kind %d ref: out[%zu] %.9g vs oracle %.9g (%.2f ulp; g %.9g u %.9g)",
                      tag, g->d.kind, i, (double)v, o, ulps(v, o), (double)g->gw[i],
                      (double)g->uw[i]);
            /* The textbook formula: the argument's own f32 roundings (at most
             * 2.5 * 2^-24 relative for gelu_tanh's four steps, constants
             * included) amplified by the factor's condition number, on top
             * of ORACLE_ULP. */
            double cond;
            const double p = oracle_pure(&g->d, g->gw[i], g->uw[i], &cond);
            const double tol = ORACLE_ULP + 3.0 * cond + 1.0;
            cr_assert(close_to(v, p, tol, ORACLE_ABS),
                      "%s kind %d ref: out[%zu] %.9g vs textbook %.9g (%.2f ulp > %.2f; g %.9g)",
                      tag, g->d.kind, i, (double)v, p, ulps(v, p), tol, (double)g->gw[i]);
        }
    }
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_UNFUSED;
    for (int m = 0; m < ni; m++) {
        void *out = alloc_out(g, tsize(g->d.out_type) * (size_t)mft_int(r, 0, 3));
        cr_assert_eq(run(impls[m], g, out), MF_OK);
        snprintf(what, sizeof what, "%s %s kind %d layout %d in %s out %s T=%lld n=%lld",
                 tag, mf_impl_name(impls[m]), g->d.kind, g->d.layout,
                 mf_type_name(g->d.in_type), mf_type_name(g->d.out_type),
                 (long long)g->T, (long long)g->n);
        check_guard(g, out, what);
        /* the unfused passes run the reference's element functions */
        compare(g, out, ref, impls[m] == MF_IMPL_UNFUSED, what);
        mft_free(out);
    }
    mft_free(ref);
}

/* Random inputs: gates mostly N(0, 3) with a wide uniform part (the tails
 * of every activation), ups N(0, 1); OAI gets both spread over the clamp. */
static void fill(mft_rng *r, mf_glu_kind kind, float *gs, float *us, size_t N)
{
    for (size_t i = 0; i < N; i++) {
        const int wide = mft_int(r, 0, 7) == 0;
        gs[i] = wide ? mft_uniform(r, -40.0f, 40.0f) : 3.0f * mft_normal(r);
        us[i] = kind == MF_GLU_SWIGLU_OAI ? mft_uniform(r, -12.0f, 12.0f)
                                          : mft_normal(r);
    }
}

static void check_shape(mft_rng *r, const mf_glu_desc *d, int64_t T, int64_t n)
{
    const size_t N = (size_t)(T * n);
    float *gs = malloc(N * 4), *us = malloc(N * 4);
    fill(r, d->kind, gs, us, N);
    gdata g = make(d, T, n, gs, us, r);
    check_all(&g, r, "random");
    drop(&g);
    free(gs);
    free(us);
}

/* -------------------------------------------------------------- tests -- */

/* f32 in and out, every kind and layout, n = 1..70 (every vector tail and
 * unrolled step) and large odd sizes, T = 1 and 3. */
Test(glu, f32_sizes)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t big[] = {768, 2048, 4095, 4096 + 17};
    for (size_t k = 0; k < 4; k++)
        for (size_t l = 0; l < 3; l++) {
            mf_glu_desc d = {.kind = kinds[k], .layout = layouts[l]};
            for (int64_t n = 1; n <= 70; n++)
                check_shape(&r, &d, 1 + 2 * (n & 1), n);
            for (size_t b = 0; b < 4; b++)
                check_shape(&r, &d, b & 1 ? 3 : 1, big[b]);
        }
}

/* Every in/out type pair with every kind and layout, on sizes around the
 * vector and block edges; T = 32 on a decode-like width. */
Test(glu, types)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t ns[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 255, 257, 4095};
    for (size_t k = 0; k < 4; k++)
        for (size_t l = 0; l < 3; l++)
            for (size_t a = 0; a < 3; a++)
                for (size_t b = 0; b < 3; b++) {
                    mf_glu_desc d = {.kind = kinds[k], .layout = layouts[l],
                                     .in_type = types[a], .out_type = types[b]};
                    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
                        check_shape(&r, &d, i % 3 == 2 ? 3 : 1, ns[i]);
                    check_shape(&r, &d, 32, 96);
                }
}

/* Decode shapes across threads: many rows, splits inside rows. */
Test(glu, many_rows)
{
    mft_rng r = mft_rng_make(__LINE__);
    mf_glu_desc d = {.kind = MF_GLU_SWIGLU};
    check_shape(&r, &d, 32, 768);
    check_shape(&r, &d, 8, 2880);
    d.kind = MF_GLU_SWIGLU_OAI;
    d.layout = MF_GLU_INTERLEAVED;
    check_shape(&r, &d, 4, 2880);
    d.in_type = MF_TYPE_BF16;
    d.out_type = MF_TYPE_BF16;
    check_shape(&r, &d, 17, 1536);
}

/* SWIGLU_OAI's clamps at and around the limit, with default and custom
 * limit/alpha; limit = 0 and alpha = 0 mean 7.0 and 1.702. */
Test(glu, oai_clamp_edges)
{
    mft_rng r = mft_rng_make(__LINE__);
    const float L = 7.0f;
    const float gv[] = {nextafterf(L, 0), L, nextafterf(L, 100), 1e30f, -1e30f,
                        -L, nextafterf(-L, -100), 0.0f, -0.0f, 3.5f, 100.0f};
    const float uv[] = {nextafterf(-L, -100), -L, nextafterf(-L, 0), L,
                        nextafterf(L, 100), 1e30f, -1e30f, -1.0f, 0.0f, 6.5f, -100.0f};
    const size_t ng = sizeof gv / sizeof *gv, nu = sizeof uv / sizeof *uv;
    float gs[sizeof gv / sizeof *gv * sizeof uv / sizeof *uv];
    float us[sizeof gs / sizeof *gs];
    for (size_t i = 0; i < ng; i++)
        for (size_t j = 0; j < nu; j++) {
            gs[i * nu + j] = gv[i];
            us[i * nu + j] = uv[j];
        }
    const int64_t n = (int64_t)(ng * nu);
    const float params[][2] = {{0.0f, 0.0f}, {7.0f, 1.702f}, {3.5f, 2.0f}, {100.0f, 0.5f}};
    for (size_t p = 0; p < 4; p++)
        for (size_t l = 0; l < 3; l++) {
            mf_glu_desc d = {.kind = MF_GLU_SWIGLU_OAI, .layout = layouts[l],
                             .limit = params[p][0], .alpha = params[p][1]};
            gdata g = make(&d, 1, n, gs, us, &r);
            check_all(&g, &r, "oai edges");
            /* clamped values give exactly the limit's result */
            float *o = alloc_out(&g, 0);
            cr_assert_eq(run(MF_IMPL_REF, &g, o), MF_OK);
            const float lim = d.limit != 0 ? d.limit : 7.0f;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++)
                    if (g.gw[i] >= lim && g.gw[j] >= lim && g.uw[i] == g.uw[j])
                        cr_assert_eq(mft_ulp_diff(o[i], o[j]), 0,
                                     "g %g and %g above the limit differ", (double)g.gw[i],
                                     (double)g.gw[j]);
            mft_free(o);
            drop(&g);
        }
    /* the defaults are 7.0 and 1.702, bit for bit */
    const int64_t N = 512;
    float *a = malloc(N * 4), *b = malloc(N * 4), *gg = malloc(N * 4), *uu = malloc(N * 4);
    fill(&r, MF_GLU_SWIGLU_OAI, gg, uu, N);
    mf_glu_desc d0 = {.kind = MF_GLU_SWIGLU_OAI}, d1 = d0;
    d1.limit = 7.0f;
    d1.alpha = 1.702f;
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_REF;
    impls[ni++] = MF_IMPL_UNFUSED;
    for (int m = 0; m < ni; m++) {
        d0.impl = d1.impl = impls[m];
        cr_assert_eq(mf_glu(mft_ctx(), &d0, 1, N, gg, uu, a), MF_OK);
        cr_assert_eq(mf_glu(mft_ctx(), &d1, 1, N, gg, uu, b), MF_OK);
        cr_assert_eq(memcmp(a, b, N * 4), 0, "%s: defaults differ from 7.0/1.702",
                     mf_impl_name(impls[m]));
    }
    free(a);
    free(b);
    free(gg);
    free(uu);
}

/* NaN and Inf in g and u: every impl agrees with the reference (NaN where
 * it has NaN, the same infinities), and the reference gives the IEEE
 * results of its formulas. */
Test(glu, nonfinite)
{
    mft_rng r = mft_rng_make(__LINE__);
    const float sp[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1.0f, -1.0f, 50.0f, -50.0f};
    const size_t ns = sizeof sp / sizeof *sp;
    float gs[sizeof sp / sizeof *sp * sizeof sp / sizeof *sp], us[sizeof gs / sizeof *gs];
    for (size_t i = 0; i < ns; i++)
        for (size_t j = 0; j < ns; j++) {
            gs[i * ns + j] = sp[i];
            us[i * ns + j] = sp[j];
        }
    for (size_t k = 0; k < 4; k++)
        for (size_t l = 0; l < 3; l++)
            for (size_t t = 0; t < 3; t++) {
                mf_glu_desc d = {.kind = kinds[k], .layout = layouts[l],
                                 .in_type = types[t], .out_type = types[(t + k) % 3]};
                gdata g = make(&d, 1, (int64_t)(ns * ns), gs, us, &r);
                check_all(&g, &r, "nonfinite");
                drop(&g);
            }
    /* spot values of the reference (f32): (g, u) -> out */
    struct { mf_glu_kind k; float g, u; int nan; float inf; } ex[] = {
        {MF_GLU_SWIGLU, NAN, 1.0f, 1, 0},
        {MF_GLU_SWIGLU, 1.0f, NAN, 1, 0},
        {MF_GLU_SWIGLU, INFINITY, 1.0f, 0, INFINITY},
        {MF_GLU_SWIGLU, -INFINITY, 1.0f, 1, 0},   /* -Inf * sigmoid(-Inf) = -Inf * 0 */
        {MF_GLU_GEGLU_ERF, INFINITY, -1.0f, 0, -INFINITY},
        {MF_GLU_GEGLU_TANH, INFINITY, 1.0f, 0, INFINITY},
        {MF_GLU_SWIGLU_OAI, NAN, 1.0f, 1, 0},     /* min(NaN, L) is NaN */
        {MF_GLU_SWIGLU_OAI, 1.0f, NAN, 1, 0},
    };
    for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
        mf_glu_desc d = {.impl = MF_IMPL_REF, .kind = ex[i].k};
        float o;
        cr_assert_eq(mf_glu(mft_ctx(), &d, 1, 1, &ex[i].g, &ex[i].u, &o), MF_OK);
        if (ex[i].nan)
            cr_expect(isnan(o), "case %zu: %g, want NaN", i, (double)o);
        else
            cr_expect_eq(o, ex[i].inf, "case %zu: %g", i, (double)o);
    }
    /* OAI clamps +-Inf to finite values */
    {
        mf_glu_desc d = {.impl = MF_IMPL_REF, .kind = MF_GLU_SWIGLU_OAI};
        float g = INFINITY, u = -INFINITY, o;
        cr_assert_eq(mf_glu(mft_ctx(), &d, 1, 1, &g, &u, &o), MF_OK);
        const double want = (-7.0 + 1.0) * 7.0 * sig(1.702f * 7.0f);
        cr_expect(ulps(o, want) <= ORACLE_ULP, "OAI(+Inf, -Inf) = %g, want %g",
                  (double)o, want);
    }
}

/* ----------------------------------------------- act and store kernels -- */

/* The kernel tables this machine can run (the reference first). */
static int tables(const mf_kernels **out)
{
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    int n = 0;
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++) {
        const mf_kernels *k = mf_kernels_get((mf_isa)i);
        if (k && ci.isa_available[i])
            out[n++] = k;
    }
    return n;
}

/* act: every table against the reference (GLU_ULP / GLU_ABS: the factor's
 * polynomial error, <= 6 ulp, plus one product), and the reference against the double oracle; n = 1..70 and
 * large, unaligned, nothing written past n; act NONE leaves x alone. */
Test(glu, act_kernels)
{
    mft_rng r = mft_rng_make(__LINE__);
    const mf_kernels *tb[MF_ISA_COUNT_];
    const int nt = tables(tb);
    const mf_act acts[] = {MF_ACT_SILU, MF_ACT_GELU, MF_ACT_GELU_TANH};
    const mf_glu_kind as_glu[] = {MF_GLU_SWIGLU, MF_GLU_GEGLU_ERF, MF_GLU_GEGLU_TANH};
    int64_t sizes[75];
    for (int i = 0; i < 70; i++)
        sizes[i] = i + 1;
    sizes[70] = 768;
    sizes[71] = 4113;
    sizes[72] = 100000;
    sizes[73] = 3;
    sizes[74] = 17;
    for (size_t a = 0; a < 3; a++)
        for (size_t s = 0; s < 75; s++) {
            const int64_t n = sizes[s];
            float *x0 = malloc((size_t)n * 4), *ref = malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++)
                x0[i] = mft_int(&r, 0, 3) == 0 ? mft_uniform(&r, -120.0f, 120.0f)
                                               : 4.0f * mft_normal(&r);
            if (s >= 73)
                for (int64_t i = 0; i < n; i++)
                    x0[i] = (float[]){NAN, INFINITY, -INFINITY, -0.0f, 1e-40f}[i % 5];
            memcpy(ref, x0, (size_t)n * 4);
            tb[0]->act(acts[a], ref, n);
            mf_glu_desc gd = {.kind = as_glu[a]};
            for (int64_t i = 0; i < n; i++) {
                const double o = oracle_f32args(&gd, x0[i], 1.0f);
                /* the factor's rounding and one product: <= 1.5 ulp */
                cr_assert(close_to(ref[i], o, 2, ORACLE_ABS),
                          "ref act %d: x %.9g -> %.9g, oracle %.9g", acts[a],
                          (double)x0[i], (double)ref[i], o);
            }
            for (int t = 1; t < nt; t++) {
                float *x = mft_alloc((size_t)n * 4 + GUARD, 4 * (size_t)mft_int(&r, 0, 3));
                memcpy(x, x0, (size_t)n * 4);
                tb[t]->act(acts[a], x, n);
                for (size_t i = 0; i < GUARD; i++)
                    cr_assert_eq(((unsigned char *)(x + n))[i], 0xA5,
                                 "%s act wrote past n = %lld", mf_isa_name(tb[t]->isa),
                                 (long long)n);
                for (int64_t i = 0; i < n; i++)
                    cr_assert(isnan(ref[i]) ? isnan(x[i]) : mft_close(ref[i], x[i], GLU_ULP, GLU_ABS),
                              "%s act %d: x %.9g -> %.9g vs ref %.9g (%u ulp)",
                              mf_isa_name(tb[t]->isa), acts[a], (double)x0[i],
                              (double)x[i], (double)ref[i], mft_ulp_diff(x[i], ref[i]));
                mft_free(x);
            }
            free(x0);
            free(ref);
        }
    for (int t = 0; t < nt; t++) {
        float x[5] = {1.0f, NAN, -3.0f, INFINITY, 0.5f}, y[5];
        memcpy(y, x, sizeof x);
        tb[t]->act(MF_ACT_NONE, y, 5);
        cr_expect_eq(memcmp(x, y, sizeof x), 0, "%s act NONE changed x",
                     mf_isa_name(tb[t]->isa));
    }
}

/* store: every table bit for bit equal to mf_f32_to_f16 / mf_f32_to_bf16
 * (ties, subnormals, overflow, NaN, Inf), F32 a copy; unaligned
 * destinations, nothing written past n, and dst == src (in place). */
Test(glu, store_kernels)
{
    mft_rng r = mft_rng_make(__LINE__);
    const mf_kernels *tb[MF_ISA_COUNT_];
    const int nt = tables(tb);
    const int64_t n = 1000;
    float *src = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)mft_next(&r);
        switch (i % 8) {
        case 0: u = (u & 0xffff0000u) | 0x8000u; break;      /* bf16 tie */
        case 1: u = (u & 0xffffe000u) | 0x1000u; break;      /* f16 tie */
        case 2: u = (u & 0x807fffffu) | (uint32_t)mft_int(&r, 100, 115) << 23; break; /* f16 subnormal range */
        case 3: u = (u & 0x807fffffu) | (uint32_t)mft_int(&r, 140, 145) << 23; break; /* f16 overflow edge */
        default: break; /* any bits: NaN payloads, Inf, huge, tiny */
        }
        memcpy(&src[i], &u, 4);
    }
    src[5] = INFINITY;
    src[6] = -INFINITY;
    src[7] = 65520.0f;
    src[9] = 65519.996f;
    const mf_type ts[] = {MF_TYPE_F16, MF_TYPE_BF16, MF_TYPE_F32};
    for (int t = 0; t < nt; t++)
        for (size_t ti = 0; ti < 3; ti++)
            for (int64_t m = 1; m <= n; m += m < 80 ? 1 : 229) {
                const size_t es = tsize(ts[ti]);
                unsigned char *dst = mft_alloc((size_t)m * es + GUARD, es * (size_t)mft_int(&r, 1, 3));
                tb[t]->store(ts[ti], src, dst, m);
                for (int64_t i = 0; i < m; i++) {
                    if (ts[ti] == MF_TYPE_F32) {
                        cr_assert_eq(memcmp(dst + 4 * i, &src[i], 4), 0);
                        continue;
                    }
                    const uint16_t want = ts[ti] == MF_TYPE_F16 ? mf_f32_to_f16(src[i])
                                                                : mf_f32_to_bf16(src[i]);
                    cr_assert_eq(get16(dst, (size_t)i), want,
                                 "%s store %s: %a -> %#06x, want %#06x",
                                 mf_isa_name(tb[t]->isa), mf_type_name(ts[ti]),
                                 (double)src[i], get16(dst, (size_t)i), want);
                }
                for (size_t i = 0; i < GUARD; i++)
                    cr_assert_eq(dst[(size_t)m * es + i], 0xA5, "%s store wrote past n",
                                 mf_isa_name(tb[t]->isa));
                mft_free(dst);
                /* in place: the 16-bit codes land in the front of src */
                if (ts[ti] != MF_TYPE_F32) {
                    float *io = malloc((size_t)m * 4);
                    memcpy(io, src, (size_t)m * 4);
                    tb[t]->store(ts[ti], io, io, m);
                    for (int64_t i = 0; i < m; i++) {
                        const uint16_t want = ts[ti] == MF_TYPE_F16 ? mf_f32_to_f16(src[i])
                                                                    : mf_f32_to_bf16(src[i]);
                        cr_assert_eq(get16(io, (size_t)i), want, "%s in-place store",
                                     mf_isa_name(tb[t]->isa));
                    }
                    free(io);
                }
            }
    free(src);
}

/* ------------------------------------------------------------- errors -- */

Test(glu, bad_inputs)
{
    mf_ctx *ctx = mft_ctx();
    float g[64], u[64], out[64], keep[64];
    for (int i = 0; i < 64; i++) {
        g[i] = (float)i * 0.1f;
        u[i] = 1.0f;
        out[i] = keep[i] = -42.0f;
    }
    mf_glu_desc d = {0};
#define BAD(expect, call)                                                      \
    do {                                                                       \
        cr_expect_eq((call), (expect), "%s", #call);                           \
        cr_expect_eq(memcmp(out, keep, sizeof out), 0, "output written: %s", #call); \
    } while (0)
    BAD(MF_ERR_INVALID_ARG, mf_glu(NULL, &d, 1, 16, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, NULL, 1, 16, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, NULL, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, NULL));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, NULL, out)); /* SEPARATE needs up */
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 0, 16, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, -2, 16, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 65537, 16, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 0, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, -1, g, u, out));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, (1 << 24) + 1, g, u, out));
    d.layout = MF_GLU_CONCAT; /* one input: up must be NULL */
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.layout = MF_GLU_INTERLEAVED;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.layout = MF_GLU_LAYOUT_COUNT_;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.layout = MF_GLU_SEPARATE;
    d.kind = MF_GLU_KIND_COUNT_;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.kind = (mf_glu_kind)-1;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.kind = MF_GLU_SWIGLU;
    d.impl = MF_IMPL_COUNT_;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.impl = MF_IMPL_AUTO;
    d.in_type = MF_TYPE_COUNT_;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.in_type = MF_TYPE_F32;
    d.out_type = (mf_type)-1;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    /* quantized types are valid types the op does not take */
    d.out_type = MF_TYPE_Q4_0;
    BAD(MF_ERR_UNSUPPORTED, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.out_type = MF_TYPE_F32;
    d.in_type = MF_TYPE_MLX_Q8;
    BAD(MF_ERR_UNSUPPORTED, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.in_type = MF_TYPE_F32;
    /* OAI parameters */
    d.kind = MF_GLU_SWIGLU_OAI;
    const float badp[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        d.limit = badp[i];
        d.alpha = 0;
        BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
        d.limit = 0;
        d.alpha = badp[i];
        BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    }
    d.alpha = 0;
    d.limit = -1.0f;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, out));
    d.limit = 0;
    d.kind = MF_GLU_SWIGLU;
    /* overlaps: out over the gate, over up, partly over a CONCAT row */
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, g + 8));
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, u, u));
    d.layout = MF_GLU_CONCAT;
    BAD(MF_ERR_INVALID_ARG, mf_glu(ctx, &d, 1, 16, g, NULL, g + 31));
    d.layout = MF_GLU_SEPARATE;
    /* impls this build or machine lacks, and no GPU in the test context */
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    const mf_impl isa_impl[] = {MF_IMPL_AVX2, MF_IMPL_AVX512, MF_IMPL_NEON};
    const mf_isa isa_of[] = {MF_ISA_AVX2, MF_ISA_AVX512, MF_ISA_NEON};
    for (int i = 0; i < 3; i++)
        if (!ci.isa_available[isa_of[i]]) {
            d.impl = isa_impl[i];
            BAD(MF_ERR_UNSUPPORTED, mf_glu(ctx, &d, 1, 16, g, u, out));
        }
    d.impl = MF_IMPL_GPU;
    BAD(MF_ERR_UNSUPPORTED, mf_glu(ctx, &d, 1, 16, g, u, out));
#undef BAD
}
