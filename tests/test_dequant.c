/* mf_dequant_act: every weight format decoded bit-exact (act NONE, f32 out)
 * by every impl against an oracle that decodes the formats itself
 * (qdata.c), hand-built blocks with known values and special scales,
 * conversions and activations against the reference, bad inputs. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "qdata.h"
#include "src/cpu/kernels.h"

/* REF, UNFUSED and every CPU impl of this machine. */
static int all_impls(mf_impl *out)
{
    int n = mft_cpu_impls(out);
    out[n++] = MF_IMPL_REF;
    out[n++] = MF_IMPL_UNFUSED;
    return n;
}

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static int same_f(float a, float b)
{
    return f2u(a) == f2u(b) || (isnan(a) && isnan(b));
}

/* Dequantizes t with impl to f32 (act NONE) and checks every element is
 * bit-identical to expect[] (NaN matches any NaN). */
static void check_exact(const mf_tensor *t, mf_impl impl, const float *expect,
                        const char *what)
{
    int64_t total = t->e * t->n * t->k;
    float *out = mft_alloc((size_t)total * 4, 4 * (size_t)(impl % 3 + 1));
    mf_dequant_desc d = {.impl = impl, .act = MF_ACT_NONE,
                         .out_type = MF_TYPE_F32};
    cr_assert_eq(mf_dequant_act(mft_ctx(), &d, t, out), MF_OK, "%s %s", what,
                 mf_impl_name(impl));
    int64_t bad = 0;
    for (int64_t i = 0; i < total; i++) {
        int same = f2u(out[i]) == f2u(expect[i]) ||
                   (isnan(out[i]) && isnan(expect[i]));
        if (!same && bad++ < 4)
            cr_expect(same, "%s %s element %lld: got %a want %a", what,
                      mf_impl_name(impl), (long long)i, (double)out[i],
                      (double)expect[i]);
    }
    cr_expect_eq(bad, 0, "%s %s: %lld elements differ", what,
                 mf_impl_name(impl), (long long)bad);
    mft_free(out);
}

static void check_all_impls(const mf_tensor *t, const float *expect,
                            const char *what)
{
    mf_impl impls[10];
    int n = all_impls(impls);
    for (int i = 0; i < n; i++)
        check_exact(t, impls[i], expect, what);
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Q4_0 blocks with known contents: d = 0.5, 2^-24 (f16 subnormal), +Inf
 * and NaN; qs[j] = j | (15 - j) << 4 so element j = d * (j - 8) and element
 * j + 16 = d * (7 - j). 0 * Inf (code 8) is NaN. */
Test(dequant, hand_q4_0)
{
    static const uint16_t ds[4] = {0x3800, 0x0001, 0x7c00, 0x7e00};
    static const double dv[4] = {0.5, 5.9604644775390625e-8, INFINITY, NAN};
    unsigned char blk[2 * 4 * 18];
    float want[2 * 4 * 32];
    for (int r = 0; r < 2; r++)
        for (int b = 0; b < 4; b++) {
            unsigned char *p = blk + (r * 4 + b) * 18;
            int bi = (b + r) % 4;
            put16(p, ds[bi]);
            for (int j = 0; j < 16; j++) {
                p[2 + j] = (unsigned char)(j | (15 - j) << 4);
                want[(r * 4 + b) * 32 + j] = (float)(dv[bi] * (j - 8));
                want[(r * 4 + b) * 32 + 16 + j] = (float)(dv[bi] * (7 - j));
            }
        }
    mf_tensor t = mf_tensor_dense(MF_TYPE_Q4_0, 1, 2, 128, blk);
    /* the oracle agrees with the hand-made values */
    for (int i = 0; i < 256; i++) {
        double o = qd_weight(&t, i / 128, i % 128);
        cr_assert((isnan(o) && isnan(want[i])) || o == want[i], "oracle %d", i);
    }
    check_all_impls(&t, want, "hand q4_0");
}

/* Q8_0: d = -0.25, qs[j] = 8 j - 128 (so -128 .. 120 occur). */
Test(dequant, hand_q8_0)
{
    unsigned char blk[34 * 2];
    float want[64];
    for (int b = 0; b < 2; b++) {
        put16(blk + 34 * b, b ? 0x3c00 : 0xb400); /* -0.25, 1.0 */
        for (int j = 0; j < 32; j++) {
            int q = 8 * j - 128 + b;
            blk[34 * b + 2 + j] = (unsigned char)(q & 255);
            want[32 * b + j] = (float)((b ? 1.0 : -0.25) * q);
        }
    }
    mf_tensor t = mf_tensor_dense(MF_TYPE_Q8_0, 1, 1, 64, blk);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(qd_weight(&t, 0, i), want[i], "oracle %d", i);
    check_all_impls(&t, want, "hand q8_0");
}

/* MLX 4-bit and 8-bit words with known codes, each scale type. The scale
 * 0.1 is not exact in any type, so scale * q rounds: the expected value is
 * the f32 product rounded, then the f32 sum rounded. */
Test(dequant, hand_mlx)
{
    static const uint32_t w4[4] = {0x76543210u, 0xfedcba98u, 0x01234567u,
                                   0x89abcdefu};
    static const int q4[32] = {0, 1, 2,  3,  4,  5,  6,  7,  8,  9, 10,
                               11, 12, 13, 14, 15, 7, 6,  5,  4,  3, 2,
                               1,  0,  15, 14, 13, 12, 11, 10, 9, 8};
    static const mf_type sts[3] = {MF_TYPE_F16, MF_TYPE_BF16, MF_TYPE_F32};
    for (int si = 0; si < 3; si++) {
        mf_type st = sts[si];
        unsigned char sc[8], bi[8];
        float s = 0.1f, b = -0.75f;
        if (st == MF_TYPE_F32) {
            memcpy(sc, &s, 4);
            memcpy(bi, &b, 4);
        } else {
            put16(sc, st == MF_TYPE_F16 ? 0x2e66 : 0x3dcd); /* ~0.1 */
            put16(bi, st == MF_TYPE_F16 ? 0xba00 : 0xbf40); /* -0.75 */
        }
        double sv = st == MF_TYPE_F32 ? (double)s
                    : st == MF_TYPE_F16 ? qd_f16(0x2e66) : 0.10009765625;
        /* 4-bit, group 32: one group */
        unsigned char codes[32];
        for (int i = 0; i < 4; i++)
            put32(codes + 4 * i, w4[i]);
        float want[32];
        for (int j = 0; j < 32; j++)
            want[j] = (float)((double)(float)(sv * q4[j]) - 0.75);
        mf_tensor t = mf_tensor_mlx(MF_TYPE_MLX_Q4, 1, 1, 32, 32, st, codes,
                                    sc, bi);
        for (int j = 0; j < 32; j++)
            cr_assert_eq(qd_weight(&t, 0, j), want[j], "oracle q4 %d", j);
        check_all_impls(&t, want, "hand mlx_q4");
        /* 8-bit, group 32: codes 0, 1, 127, 128, 255 ... */
        for (int j = 0; j < 32; j++)
            codes[j] = (unsigned char)(j * 37 + (j == 3 ? 0 : 1) * (j * j));
        codes[0] = 0;
        codes[1] = 255;
        codes[2] = 128;
        codes[3] = 127;
        for (int j = 0; j < 32; j++)
            want[j] = (float)((double)(float)(sv * codes[j]) - 0.75);
        t = mf_tensor_mlx(MF_TYPE_MLX_Q8, 1, 1, 32, 32, st, codes, sc, bi);
        for (int j = 0; j < 32; j++)
            cr_assert_eq(qd_weight(&t, 0, j), want[j], "oracle q8 %d", j);
        check_all_impls(&t, want, "hand mlx_q8");
    }
}

/* f16 / bf16 weights: every class of value (subnormal, Inf, NaN, -0). */
Test(dequant, hand_half_types)
{
    static const uint16_t h[8] = {0x0001, 0x03ff, 0x7bff, 0xfc00,
                                  0x7e00, 0x8000, 0x3c01, 0xc000};
    float want[8];
    for (int i = 0; i < 8; i++)
        want[i] = (float)qd_f16(h[i]);
    unsigned char buf[16];
    for (int i = 0; i < 8; i++)
        put16(buf + 2 * i, h[i]);
    mf_tensor t = mf_tensor_dense(MF_TYPE_F16, 1, 1, 8, buf);
    check_all_impls(&t, want, "hand f16");
    static const uint16_t b[8] = {0x0001, 0x7f7f, 0xff80, 0x7fc1,
                                  0x8000, 0x3f81, 0xc2f7, 0x0080};
    for (int i = 0; i < 8; i++) {
        uint32_t u = (uint32_t)b[i] << 16;
        memcpy(&want[i], &u, 4);
        put16(buf + 2 * i, b[i]);
    }
    t = mf_tensor_dense(MF_TYPE_BF16, 1, 1, 8, buf);
    check_all_impls(&t, want, "hand bf16");
}

/* Random tensors in every format: stacks of E experts, odd N, legal K
 * (including 2048 and widths that leave SIMD tails), row padding and odd
 * byte offsets; every impl bit-exact to the oracle. */
Test(dequant, random_all_formats)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    static const int64_t Ks[] = {1, 7, 32, 64, 96, 128, 160, 2048};
    for (int vi = 0; vi < nv; vi++) {
        for (int ki = 0; ki < 8; ki++) {
            int64_t K = Ks[ki];
            if (!qd_k_legal(&vs[vi], K))
                continue;
            int64_t E = 1 + (vi + ki) % 3, N = K >= 2048 ? 3 : 1 + 2 * ki;
            size_t pad = (ki % 2) ? (size_t)mft_int(&r, 1, 40) : 0;
            qd_tensor q = qd_make(&r, &vs[vi], E, N, K, pad,
                                  (size_t)mft_int(&r, 0, 3));
            int64_t total = E * N * K;
            float *want = malloc((size_t)total * 4);
            for (int64_t i = 0; i < total; i++)
                want[i] = (float)qd_weight(&q.t, i / K, i % K);
            char what[96];
            snprintf(what, sizeof what, "%s E=%lld N=%lld K=%lld pad=%zu",
                     qd_name(&vs[vi]), (long long)E, (long long)N,
                     (long long)K, pad);
            check_all_impls(&q.t, want, what);
            free(want);
            qd_free(&q);
        }
    }
}

/* Enough rows to run threaded (the CPU impls split rows across threads). */
Test(dequant, large_threaded)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_Q4_0, 0, MF_TYPE_F32};
    qd_tensor q = qd_make(&r, &v, 4, 200, 512, 0, 1);
    int64_t total = 4 * 200 * 512;
    float *want = malloc((size_t)total * 4);
    for (int64_t i = 0; i < total; i++)
        want[i] = (float)qd_weight(&q.t, i / 512, i % 512);
    check_all_impls(&q.t, want, "q4_0 threaded");
    free(want);
    qd_free(&q);
}

/* f16 and bf16 outputs with act NONE: the exact f32 value rounded to
 * nearest even, bit for bit in every impl. */
Test(dequant, half_outputs)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_MLX_Q4, 64, MF_TYPE_BF16};
    qd_tensor q = qd_make(&r, &v, 2, 5, 192, 3, 2);
    int64_t total = 2 * 5 * 192;
    mf_impl impls[10];
    int n = all_impls(impls);
    for (int o = 0; o < 2; o++) {
        mf_type ot = o ? MF_TYPE_BF16 : MF_TYPE_F16;
        for (int i = 0; i < n; i++) {
            uint16_t *out = mft_alloc((size_t)total * 2, 2);
            mf_dequant_desc d = {.impl = impls[i], .out_type = ot};
            cr_assert_eq(mf_dequant_act(mft_ctx(), &d, &q.t, out), MF_OK,
                         "%s %s", mf_type_name(ot), mf_impl_name(impls[i]));
            int64_t bad = 0;
            for (int64_t j = 0; j < total; j++) {
                float w = (float)qd_weight(&q.t, j / 192, j % 192);
                uint16_t want = o ? mf_f32_to_bf16(w) : mf_f32_to_f16(w);
                bad += out[j] != want;
            }
            cr_expect_eq(bad, 0, "%s %s: %lld differ", mf_type_name(ot),
                         mf_impl_name(impls[i]), (long long)bad);
            mft_free(out);
        }
    }
    qd_free(&q);
}

/* Orders 16-bit float encodings so adjacent values differ by 1. */
static int32_t ord16(uint16_t h)
{
    return (h & 0x8000) ? -(int32_t)(h & 0x7fff) : (int32_t)h;
}

/* With an activation. The reference (f32 out) is exactly the reference
 * activation kernel applied to the exact dequantized values (the
 * activation's own accuracy is tested with it); every impl is within
 * 8 ulp + 1e-30 of the reference for f32 output (mf_glu's bound for the
 * activation kernels) and within one unit in the last place for f16/bf16
 * (the f32 values may sit on opposite sides of a rounding boundary). */
Test(dequant, activations)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_Q8_0, 0, MF_TYPE_F32};
    qd_tensor q = qd_make(&r, &v, 1, 37, 256, 0, 0);
    /* make weights span [-4, 4]: act curvature matters there */
    for (int64_t b = 0; b < 37 * 8; b++) {
        uint16_t h = mf_f32_to_f16(mft_uniform(&r, -0.035f, 0.035f));
        put16((unsigned char *)q.data + b * 34, h);
    }
    const int64_t total = 37 * 256;
    mf_impl impls[10];
    int n = all_impls(impls);
    for (int a = MF_ACT_SILU; a < MF_ACT_COUNT_; a++) {
        float *ref = mft_alloc((size_t)total * 4, 0);
        mf_dequant_desc d = {.impl = MF_IMPL_REF, .act = (mf_act)a};
        cr_assert_eq(mf_dequant_act(mft_ctx(), &d, &q.t, ref), MF_OK,
                     "ref act %d", a);
        const mf_kernels *rk = mf_kernels_get(MF_ISA_SCALAR);
        for (int64_t j = 0; j < total; j++) {
            float o = (float)qd_weight(&q.t, j / 256, j % 256);
            rk->act((mf_act)a, &o, 1);
            cr_assert(same_f(ref[j], o), "ref act %d element %lld: %a vs %a",
                      a, (long long)j, (double)ref[j], (double)o);
        }
        for (int ot = 0; ot < 3; ot++) {
            mf_type otype = ot == 0 ? MF_TYPE_F32
                            : ot == 1 ? MF_TYPE_F16 : MF_TYPE_BF16;
            for (int i = 0; i < n; i++) {
                void *out = mft_alloc((size_t)total * 4, 4);
                d = (mf_dequant_desc){.impl = impls[i], .act = (mf_act)a,
                                      .out_type = otype};
                cr_assert_eq(mf_dequant_act(mft_ctx(), &d, &q.t, out), MF_OK,
                             "act %d %s %s", a, mf_type_name(otype),
                             mf_impl_name(impls[i]));
                for (int64_t j = 0; j < total; j++) {
                    int ok;
                    if (ot == 0) {
                        ok = mft_close(((float *)out)[j], ref[j], 8, 1e-30f);
                    } else {
                        uint16_t want = ot == 1 ? mf_f32_to_f16(ref[j])
                                                : mf_f32_to_bf16(ref[j]);
                        int32_t dd = ord16(((uint16_t *)out)[j]) - ord16(want);
                        ok = dd >= -1 && dd <= 1;
                    }
                    cr_assert(ok, "act %d %s %s element %lld", a,
                              mf_type_name(otype), mf_impl_name(impls[i]),
                              (long long)j);
                }
                mft_free(out);
            }
        }
        mft_free(ref);
    }
    qd_free(&q);
}

/* Every error path; the output keeps its poison bytes. */
Test(dequant, bad_inputs)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_MLX_Q4, 32, MF_TYPE_F16};
    qd_tensor q = qd_make(&r, &v, 1, 4, 64, 0, 0);
    mf_ctx *ctx = mft_ctx();
    size_t ob = 4 * 64 * 4;
    float *out = mft_alloc(ob, 0);
    unsigned char *poison = malloc(ob);
    memcpy(poison, out, ob);
    mf_dequant_desc d = {0};
    mf_tensor t;
#define EXPECT_ST(call, want)                                              \
    do {                                                                   \
        cr_expect_eq((call), (want), "%s", #call);                         \
        cr_expect(memcmp(out, poison, ob) == 0, "output written: %s", #call); \
    } while (0)
    EXPECT_ST(mf_dequant_act(NULL, &d, &q.t, out), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_dequant_act(ctx, NULL, &q.t, out), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_dequant_act(ctx, &d, NULL, out), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, NULL), MF_ERR_INVALID_ARG);
    d.impl = (mf_impl)MF_IMPL_COUNT_;
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_INVALID_ARG);
    d.impl = (mf_impl)-1;
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_INVALID_ARG);
    d = (mf_dequant_desc){.act = (mf_act)MF_ACT_COUNT_};
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_INVALID_ARG);
    d = (mf_dequant_desc){.out_type = (mf_type)MF_TYPE_COUNT_};
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_INVALID_ARG);
    d = (mf_dequant_desc){.out_type = MF_TYPE_Q8_0};
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_UNSUPPORTED);
    d = (mf_dequant_desc){0};
    /* tensor errors come from mf_tensor_check */
    t = q.t;
    t.k = 48; /* not a multiple of the group */
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.group_size = 48;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_UNSUPPORTED);
    t = q.t;
    t.scales = NULL;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.data = NULL;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.e = 0;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.row_stride = 3;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.type = (mf_type)MF_TYPE_COUNT_;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_UNSUPPORTED);
    /* output overlapping what the tensor reads */
    t = q.t;
    t.data = (unsigned char *)out + 8;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.scales = out;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    t = q.t;
    t.biases = (unsigned char *)out + ob - 2;
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    /* output size overflow: 2^62 f32 elements (the rows themselves, 2^61
     * bytes, pass mf_tensor_check) */
    t = mf_tensor_dense(MF_TYPE_Q4_0, 1 << 24, 1 << 24, 1 << 14, q.data);
    EXPECT_ST(mf_dequant_act(ctx, &d, &t, out), MF_ERR_INVALID_ARG);
    /* impls this context or machine lacks */
    d.impl = MF_IMPL_GPU;
    EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_UNSUPPORTED);
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    static const mf_impl isa_impl[] = {MF_IMPL_AVX2, MF_IMPL_AVX512,
                                       MF_IMPL_NEON};
    static const mf_isa isa_of[] = {MF_ISA_AVX2, MF_ISA_AVX512, MF_ISA_NEON};
    for (int i = 0; i < 3; i++) {
        if (ci.isa_available[isa_of[i]])
            continue;
        d.impl = isa_impl[i];
        EXPECT_ST(mf_dequant_act(ctx, &d, &q.t, out), MF_ERR_UNSUPPORTED);
    }
#undef EXPECT_ST
    free(poison);
    mft_free(out);
    qd_free(&q);
}
