/* mf_combine: the reference against a naive double-precision oracle and
 * against a naive f32 evaluation of the exact sequence; every CPU impl and
 * the unfused baseline against the reference (exact = 1: bit for bit;
 * exact = 0: within the ops.h bound); odd sizes and tails, unaligned
 * buffers, NaN/Inf, the in-place residual, writes outside the output, and
 * every error path. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Sizes: every D in 1..70 (all tails of 4-, 8- and 16-lane vectors and the
 * unrolled 32/64-element steps), then decode shapes and odd large ones. */
static const int64_t big_Ds[] = {768, 2048, 4095, 4096 + 17};
static const int32_t ks[] = {1, 2, 8, 32};
static const int64_t Ts[] = {1, 3, 32};

#define GUARD 16 /* poisoned floats after each output */

typedef struct cdata {
    int64_t T, D;
    int32_t k;
    float *x, *w, *res, *out;
} cdata;

/* Random inputs in unaligned buffers (offsets of 1..3 floats). x ~ N(0, 1),
 * w in (0, 1] like router weights with some negative ones, res ~ N(0, 2). */
static cdata make(mft_rng *r, int64_t T, int32_t k, int64_t D, int with_res)
{
    cdata c = {.T = T, .D = D, .k = k};
    size_t nx = (size_t)(T * k * D), nw = (size_t)(T * k), no = (size_t)(T * D);
    c.x = mft_alloc(nx * 4, 4 * (size_t)mft_int(r, 1, 3));
    c.w = mft_alloc(nw * 4, 4 * (size_t)mft_int(r, 1, 3));
    c.res = with_res ? mft_alloc(no * 4, 4 * (size_t)mft_int(r, 1, 3)) : NULL;
    c.out = mft_alloc((no + GUARD) * 4, 4 * (size_t)mft_int(r, 1, 3));
    mft_fill_normal(r, c.x, nx, 1.0f);
    mft_fill_uniform(r, c.w, nw, -0.25f, 1.0f);
    if (c.res)
        mft_fill_normal(r, c.res, no, 2.0f);
    return c;
}

static void drop(cdata *c)
{
    mft_free(c->x);
    mft_free(c->w);
    mft_free(c->res);
    mft_free(c->out);
}

static mf_status run(mf_impl impl, int exact, const cdata *c, float *out)
{
    mf_combine_desc d = {.impl = impl, .exact = exact};
    return mf_combine(mft_ctx(), &d, c->T, c->k, c->D, c->x, c->w, c->res, out);
}

/* The guard floats after the output still hold the 0xA5 poison. */
static void check_guard(const float *out, size_t no, const char *what)
{
    const unsigned char *g = (const unsigned char *)(out + no);
    for (size_t i = 0; i < GUARD * 4; i++)
        cr_assert_eq(g[i], 0xA5, "%s: byte %zu after the output written", what, i);
}

/* sum_j |w_j x_j| + |res| in double: the scale of the rounding bound. */
static double mag(const cdata *c, int64_t t, int64_t i)
{
    double m = c->res ? fabs((double)c->res[t * c->D + i]) : 0.0;
    for (int32_t j = 0; j < c->k; j++)
        m += fabs((double)c->w[t * c->k + j] * c->x[(t * c->k + j) * c->D + i]);
    return m;
}

/* The exact sequence, written independently: f32 products and sums in slot
 * order, residual last (the tests build with -ffp-contract=off too). */
static float naive_exact(const cdata *c, int64_t t, int64_t i)
{
    float acc = c->w[t * c->k] * c->x[t * c->k * c->D + i];
    for (int32_t j = 1; j < c->k; j++) {
        float p = c->w[t * c->k + j] * c->x[(t * c->k + j) * c->D + i];
        acc = acc + p;
    }
    if (c->res) {
        float r = c->res[t * c->D + i];
        acc = acc + r;
    }
    return acc;
}

/* One configuration: the reference checked against both oracles, then every
 * impl against it. */
static void check_config(mft_rng *r, int64_t T, int32_t k, int64_t D,
                         int with_res)
{
    cdata c = make(r, T, k, D, with_res);
    const size_t no = (size_t)(T * D);
    float *ref = mft_alloc((no + GUARD) * 4, 4);
    cr_assert_eq(run(MF_IMPL_REF, 1, &c, ref), MF_OK);
    check_guard(ref, no, "ref");
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < D; i++) {
            const float v = ref[t * D + i];
            /* bit-identical to the naive f32 sequence */
            cr_assert_eq(mft_ulp_diff(v, naive_exact(&c, t, i)), 0,
                         "ref T=%lld k=%d D=%lld: out[%lld,%lld] %a vs naive %a",
                         (long long)T, k, (long long)D, (long long)t,
                         (long long)i, (double)v, (double)naive_exact(&c, t, i));
            /* double oracle: k products, k - 1 sums and the residual sum each
             * round once: |err| <= (k + 1) 2^-24 sum |terms| (first order) */
            double o = c.res ? (double)c.res[t * D + i] : 0.0;
            for (int32_t j = 0; j < k; j++)
                o += (double)c.w[t * k + j] * c.x[(t * k + j) * D + i];
            const double bound = (k + 1) * ldexp(1.0, -24) * mag(&c, t, i) * 1.0001;
            cr_assert(fabs(v - o) <= bound,
                      "ref T=%lld k=%d D=%lld: out[%lld,%lld] %.9g vs oracle %.9g",
                      (long long)T, k, (long long)D, (long long)t, (long long)i,
                      (double)v, o);
        }
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_UNFUSED;
    float *out = c.out;
    for (int m = 0; m < ni; m++)
        for (int exact = 0; exact <= 1; exact++) {
            memset(out, 0xA5, (no + GUARD) * 4);
            cr_assert_eq(run(impls[m], exact, &c, out), MF_OK);
            check_guard(out, no, mf_impl_name(impls[m]));
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < D; i++) {
                    const float a = out[t * D + i], b = ref[t * D + i];
                    /* exact = 1 and the unfused passes: bit for bit. exact = 0
                     * (FMA accumulation): ops.h's 2 (k + 1) 2^-24 sum |terms|,
                     * the reference's and the impl's own error bounds added. */
                    if (exact || impls[m] == MF_IMPL_UNFUSED)
                        cr_assert_eq(mft_ulp_diff(a, b), 0,
                                     "%s exact=%d T=%lld k=%d D=%lld: out[%lld,%lld] %a vs ref %a",
                                     mf_impl_name(impls[m]), exact, (long long)T, k,
                                     (long long)D, (long long)t, (long long)i,
                                     (double)a, (double)b);
                    else
                        cr_assert(fabs((double)a - b) <=
                                      2 * (k + 1) * ldexp(1.0, -24) * mag(&c, t, i),
                                  "%s T=%lld k=%d D=%lld: out[%lld,%lld] %.9g vs ref %.9g",
                                  mf_impl_name(impls[m]), (long long)T, k,
                                  (long long)D, (long long)t, (long long)i,
                                  (double)a, (double)b);
                }
        }
    mft_free(ref);
    drop(&c);
}

Test(combine, small_sizes)
{
    mft_rng r = mft_rng_make(__LINE__);
    for (int64_t D = 1; D <= 70; D++)
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (int64_t T = 1; T <= 3; T += 2)
                check_config(&r, T, ks[ki], D, (int)((D + ki) & 1));
}

Test(combine, large_sizes)
{
    mft_rng r = mft_rng_make(__LINE__);
    for (size_t di = 0; di < sizeof big_Ds / sizeof *big_Ds; di++)
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
            for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
                /* the largest products only once (T = 32, k = 32 is 17 MB) */
                if (Ts[ti] == 32 && ks[ki] == 32 && big_Ds[di] > 2048)
                    continue;
                check_config(&r, Ts[ti], ks[ki], big_Ds[di], 1);
            }
    check_config(&r, 32, 8, 2048, 0);
    check_config(&r, 32, 1, 70, 1);
    check_config(&r, 32, 32, 33, 0);
}

/* NaN and Inf in x, w and the residual propagate identically in every impl
 * (they are injected, not produced by overflow, so FMA changes nothing). */
Test(combine, nonfinite)
{
    mft_rng r = mft_rng_make(__LINE__);
    const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f};
    size_t nonfinite = 0;
    for (int rep = 0; rep < 20; rep++) {
        const int64_t T = mft_int(&r, 1, 3), D = mft_int(&r, 1, 100);
        const int32_t k = (int32_t)mft_int(&r, 1, 9);
        cdata c = make(&r, T, k, D, rep & 1);
        for (int s = 0; s < 6; s++) {
            c.x[mft_int(&r, 0, T * k * D - 1)] = specials[mft_int(&r, 0, 4)];
            if (c.res)
                c.res[mft_int(&r, 0, T * D - 1)] = specials[mft_int(&r, 0, 4)];
        }
        c.w[mft_int(&r, 0, T * k - 1)] = specials[mft_int(&r, 0, 4)];
        const size_t no = (size_t)(T * D);
        float *ref = mft_alloc(no * 4, 0);
        cr_assert_eq(run(MF_IMPL_REF, 1, &c, ref), MF_OK);
        for (size_t i = 0; i < no; i++)
            nonfinite += !isfinite(ref[i]);
        mf_impl impls[8];
        int ni = mft_cpu_impls(impls);
        impls[ni++] = MF_IMPL_UNFUSED;
        for (int m = 0; m < ni; m++)
            for (int exact = 0; exact <= 1; exact++) {
                cr_assert_eq(run(impls[m], exact, &c, c.out), MF_OK);
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = 0; i < D; i++) {
                        const float a = c.out[t * D + i], b = ref[t * D + i];
                        if (!isfinite(b) || exact)
                            cr_assert_eq(mft_ulp_diff(a, b), 0,
                                         "%s exact=%d: out[%lld] %g vs ref %g",
                                         mf_impl_name(impls[m]), exact,
                                         (long long)(t * D + i), (double)a, (double)b);
                        else
                            cr_assert(fabs((double)a - b) <=
                                          2 * (k + 1) * ldexp(1.0, -24) * mag(&c, t, i),
                                      "%s: out[%lld] %g vs ref %g", mf_impl_name(impls[m]),
                                      (long long)(t * D + i), (double)a, (double)b);
                    }
            }
        mft_free(ref);
        drop(&c);
    }
    cr_expect_gt(nonfinite, 0, "no NaN/Inf reached the outputs");
}

/* out == residual: the same result as out of place, in every impl. */
Test(combine, in_place_residual)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t shapes[][3] = {{1, 8, 2048}, {3, 2, 37}, {2, 32, 4113}, {1, 1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int64_t T = shapes[s][0], D = shapes[s][2];
        const int32_t k = (int32_t)shapes[s][1];
        cdata c = make(&r, T, k, D, 1);
        const size_t no = (size_t)(T * D);
        float *ref = mft_alloc(no * 4, 0), *io = mft_alloc(no * 4, 8);
        mf_impl impls[8];
        int ni = mft_cpu_impls(impls);
        impls[ni++] = MF_IMPL_UNFUSED;
        impls[ni++] = MF_IMPL_REF;
        for (int m = 0; m < ni; m++)
            for (int exact = 0; exact <= 1; exact++) {
                cr_assert_eq(run(impls[m], exact, &c, ref), MF_OK);
                memcpy(io, c.res, no * 4);
                mf_combine_desc d = {.impl = impls[m], .exact = exact};
                cr_assert_eq(mf_combine(mft_ctx(), &d, T, k, D, c.x, c.w, io, io), MF_OK);
                cr_assert_eq(memcmp(io, ref, no * 4), 0,
                             "%s exact=%d T=%lld k=%d D=%lld: in-place differs",
                             mf_impl_name(impls[m]), exact, (long long)T, k, (long long)D);
            }
        mft_free(ref);
        mft_free(io);
        drop(&c);
    }
}

/* A context with one thread runs the same kernels unsplit: same bits. */
Test(combine, threads_agree)
{
    mft_rng r = mft_rng_make(__LINE__);
    mf_ctx_options o = mf_ctx_options_default();
    o.threads = 1;
    o.gpu = MF_GPU_DISABLED;
    mf_ctx *one;
    cr_assert_eq(mf_ctx_create(&o, &one), MF_OK);
    cdata c = make(&r, 5, 8, 7168, 1);
    const size_t no = 5 * 7168;
    float *a = mft_alloc(no * 4, 0);
    for (int exact = 0; exact <= 1; exact++) {
        mf_combine_desc d = {.impl = MF_IMPL_CPU, .exact = exact};
        cr_assert_eq(mf_combine(one, &d, 5, 8, 7168, c.x, c.w, c.res, a), MF_OK);
        cr_assert_eq(mf_combine(mft_ctx(), &d, 5, 8, 7168, c.x, c.w, c.res, c.out), MF_OK);
        cr_assert_eq(memcmp(a, c.out, no * 4), 0, "exact=%d: 1 vs 2 threads", exact);
    }
    mft_free(a);
    drop(&c);
    mf_ctx_destroy(one);
}

/* Every error path: the status, and the output untouched. */
Test(combine, bad_inputs)
{
    mft_rng r = mft_rng_make(__LINE__);
    cdata c = make(&r, 2, 4, 64, 1);
    const size_t no = 2 * 64;
    float *keep = malloc(no * 4);
    memcpy(keep, c.out, no * 4);
    mf_ctx *ctx = mft_ctx();
    mf_combine_desc d = {0};
#define BAD(expect, call)                                                      \
    do {                                                                       \
        cr_expect_eq((call), (expect), "%s", #call);                           \
        cr_expect_eq(memcmp(c.out, keep, no * 4), 0, "output written: %s", #call); \
    } while (0)
    BAD(MF_ERR_INVALID_ARG, mf_combine(NULL, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, NULL, 2, 4, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, NULL, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, c.x, NULL, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, NULL));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 0, 4, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, -1, 4, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 65537, 4, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 0, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, -3, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4097, 64, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 0, c.x, c.w, c.res, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, (1 << 24) + 1, c.x, c.w, c.res, c.out));
    /* enums and flags out of range */
    d.exact = 2;
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
    d.exact = -1;
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
    d.exact = 0;
    d.impl = MF_IMPL_COUNT_;
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
    d.impl = (mf_impl)-1;
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
    /* overlaps: out over x, over w, partly over the residual */
    d.impl = MF_IMPL_AUTO;
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 1, 1, 64, c.x, c.w, c.res, c.x + 32));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 1, 1, 4, c.x + 64, c.w, NULL, c.w));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 1, 4, 64, c.x, c.w, c.out + 1, c.out));
    BAD(MF_ERR_INVALID_ARG, mf_combine(ctx, &d, 1, 4, 64, c.x, c.w, c.out, c.out + 3));
    /* impls this build or machine lacks */
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    const mf_impl isa_impl[] = {MF_IMPL_AVX2, MF_IMPL_AVX512, MF_IMPL_NEON};
    const mf_isa isa_of[] = {MF_ISA_AVX2, MF_ISA_AVX512, MF_ISA_NEON};
    for (int i = 0; i < 3; i++)
        if (!ci.isa_available[isa_of[i]]) {
            d.impl = isa_impl[i];
            BAD(MF_ERR_UNSUPPORTED, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
        }
    /* the shared test context has no GPU */
    d.impl = MF_IMPL_GPU;
    BAD(MF_ERR_UNSUPPORTED, mf_combine(ctx, &d, 2, 4, 64, c.x, c.w, c.res, c.out));
#undef BAD
    free(keep);
    drop(&c);
}
