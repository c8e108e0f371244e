/* mf_qmv and the quantized dot kernels behind it: the reference against a
 * double-precision oracle that decodes the formats itself (qdata.c); every
 * impl (each ISA, threaded, UNFUSED, the M > 32 sgemm path) against the
 * reference within the documented tolerance; the INT8 path against its
 * per-output error bound computed here; quantize_q8 bit-exact in every
 * kernel set; the dot kernels on expert stacks with absolute row numbers;
 * NaN propagation; bad inputs.
 *
 * Tolerances (u = 2^-24, S = sum_k |w_k x_k| + |bias| per output):
 *  - reference vs oracle: (K + 2) u S — a sequential f32 sum of K rounded
 *    products and the bias (Higham's gamma_{K+1}).
 *  - every impl vs reference, EXACT: 2^-22 K S (ops.h: both sit within
 *    about K u S of the true value, in different summation orders).
 *  - with an activation: 1.13 times that (the largest slope of SiLU and
 *    GELU is below 1.13) plus 8 ulp + 1e-30 (the activation kernels); the
 *    reference's activated output is exactly the reference activation
 *    kernel applied to its plain output (the kernel's accuracy is tested
 *    with it).
 *  - INT8 vs oracle: B + (K + 8) u sum_k m_k (|x_k| + d_b / 2) + (K+8) u
 *    |bias|, B = (1 + 2^-15) sum_b |w|_1(b) d_b / 2 (ops.h: half a
 *    quantization step per activation; 2^-15 covers the rounding of x/d
 *    before rounding to an integer), m_k the magnitude of what the format
 *    adds (|scale q| + |bias| for MLX: the integer path does not round the
 *    dequantized weight), the rest the per-block f32 roundings. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "qdata.h"
#include "src/cpu/kernels.h"

#define U24 (1.0 / 16777216.0)

static int is_quant(mf_type t)
{
    return t == MF_TYPE_Q4_0 || t == MF_TYPE_Q8_0 || t == MF_TYPE_MLX_Q4 ||
           t == MF_TYPE_MLX_Q8;
}

/* The activation block scale the INT8 path uses: absmax / 127 in f32. */
static float block_d(const float *x)
{
    float a = 0.0f;
    for (int j = 0; j < 32; j++)
        a = fabsf(x[j]) > a ? fabsf(x[j]) : a;
    return a / 127.0f;
}

/* Exact results and error scales of one problem, from the oracle. */
typedef struct expect {
    double *y;  /* [M, N] exact x w^T + bias (before the activation) */
    double *s;  /* [M, N] sum |w x| + |bias| */
    double *b8; /* [M, N] INT8 bound (quantized types) */
} expect;

static expect oracle(const mf_tensor *t, const float *x, int64_t M,
                     const float *bias)
{
    const int64_t N = t->n, K = t->k;
    expect e = {calloc((size_t)(M * N), 8), calloc((size_t)(M * N), 8),
                calloc((size_t)(M * N), 8)};
    double *w = malloc((size_t)K * 8), *mag = malloc((size_t)K * 8);
    const int q = is_quant(t->type);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++) {
            w[k] = qd_weight(t, n, k);
            mag[k] = qd_weight_mag(t, n, k);
        }
        for (int64_t m = 0; m < M; m++) {
            const float *xm = x + m * K;
            double acc = 0, s = 0, quant = 0, round = 0;
            for (int64_t k = 0; k < K; k++) {
                acc += w[k] * xm[k];
                s += fabs(w[k] * xm[k]);
            }
            if (q) {
                for (int64_t b = 0; b < K / 32; b++) {
                    double d = block_d(xm + 32 * b), l1 = 0;
                    for (int j = 0; j < 32; j++) {
                        l1 += fabs(w[32 * b + j]);
                        round += mag[32 * b + j] *
                                 (fabs(xm[32 * b + j]) + d / 2);
                    }
                    quant += l1 * d / 2;
                }
            }
            double bb = bias ? fabs(bias[n]) : 0.0;
            e.y[m * N + n] = acc + (bias ? bias[n] : 0.0);
            e.s[m * N + n] = s + bb;
            e.b8[m * N + n] = (1.0 + 1.0 / 32768) * quant +
                              (double)(K + 8) * U24 * (round + bb);
        }
    }
    free(w);
    free(mag);
    return e;
}

static void expect_free(expect *e)
{
    free(e->y);
    free(e->s);
    free(e->b8);
}

/* The reference activation kernel on one value. */
static float ref_act(mf_act a, float v)
{
    mf_kernels_get(MF_ISA_SCALAR)->act(a, &v, 1);
    return v;
}

static double ulp_of(float v)
{
    float a = fabsf(v);
    return (double)nextafterf(a, INFINITY) - a;
}

/* Runs mf_qmv into a poisoned, offset output; asserts MF_OK. */
static float *run(mf_impl impl, mf_precision prec, mf_act act,
                  const float *bias, const mf_tensor *t, const float *x,
                  int64_t M, size_t yoff)
{
    float *y = mft_alloc((size_t)(M * t->n) * 4, yoff);
    mf_qmv_desc d = {.impl = impl, .prec = prec, .act = act, .bias = bias};
    mf_status st = mf_qmv(mft_ctx(), &d, t, x, M, y);
    cr_assert_eq(st, MF_OK, "qmv %s prec %d status %d", mf_impl_name(impl),
                 prec, st);
    return y;
}

typedef struct qcase {
    const qd_variant *v;
    int64_t M, N, K;
    size_t pad;
    int with_bias;
    mf_act act;
} qcase;

static void check_case(mft_rng *r, const qcase *c)
{
    const int64_t M = c->M, N = c->N, K = c->K;
    char what[160];
    snprintf(what, sizeof what, "%s M=%lld N=%lld K=%lld pad=%zu bias=%d act=%d",
             qd_name(c->v), (long long)M, (long long)N, (long long)K, c->pad,
             c->with_bias, c->act);
    qd_tensor q = qd_make(r, c->v, 1, N, K, c->pad, (size_t)mft_int(r, 0, 3));
    float *x = mft_alloc((size_t)(M * K) * 4, 4 * (size_t)mft_int(r, 1, 3));
    mft_fill_normal(r, x, (size_t)(M * K), 1.0f);
    float *bias = NULL;
    if (c->with_bias) {
        bias = mft_alloc((size_t)N * 4, 4);
        mft_fill_normal(r, bias, (size_t)N, 0.1f);
    }
    expect e = oracle(&q.t, x, M, bias);
    const int64_t total = M * N;

    /* the reference against the oracle (before any activation) */
    float *yr = run(MF_IMPL_REF, MF_PREC_EXACT, MF_ACT_NONE, bias, &q.t, x, M, 0);
    for (int64_t i = 0; i < total; i++) {
        double tol = (double)(K + 2) * U24 * e.s[i] + 1e-30;
        cr_assert(fabs(yr[i] - e.y[i]) <= tol, "%s: ref[%lld] %.9g oracle %.9g tol %.3g",
                  what, (long long)i, (double)yr[i], e.y[i], tol);
    }
    if (c->act != MF_ACT_NONE) {
        float *ya = run(MF_IMPL_REF, MF_PREC_EXACT, c->act, bias, &q.t, x, M, 4);
        for (int64_t i = 0; i < total; i++) {
            float want = ref_act(c->act, yr[i]);
            cr_assert(memcmp(&ya[i], &want, 4) == 0,
                      "%s: ref act[%lld] %.9g want %.9g", what, (long long)i,
                      (double)ya[i], (double)want);
            yr[i] = ya[i];
        }
        mft_free(ya);
    }

    mf_impl impls[10];
    int n = mft_cpu_impls(impls);
    impls[n++] = MF_IMPL_UNFUSED;
    impls[n++] = MF_IMPL_REF;
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < MF_PREC_COUNT_; p++) {
            if (impls[i] == MF_IMPL_UNFUSED && p == MF_PREC_INT8)
                continue; /* the baseline ignores prec */
            float *y = run(impls[i], (mf_precision)p, c->act, bias, &q.t, x,
                           M, 4 * (size_t)(i % 3 + 1));
            /* INT8 applies to quantized weights at M <= 32; otherwise the
             * result is the EXACT one (ops.h). */
            int int8 = p == MF_PREC_INT8 && is_quant(c->v->type) && M <= 32;
            for (int64_t j = 0; j < total; j++) {
                double tol, err;
                if (int8) {
                    /* vs the oracle, before any activation */
                    tol = e.b8[j];
                    double want = e.y[j];
                    if (c->act != MF_ACT_NONE) {
                        want = ref_act(c->act, (float)want);
                        tol = 1.13 * tol + 8 * ulp_of((float)want);
                    }
                    err = fabs(y[j] - want);
                } else {
                    tol = 0x1p-22 * (double)K * e.s[j];
                    if (c->act != MF_ACT_NONE)
                        tol = 1.13 * tol + 8 * ulp_of(yr[j]);
                    err = fabs((double)y[j] - yr[j]);
                }
                cr_assert(err <= tol + 1e-30,
                          "%s: %s prec %d y[%lld] = %.9g, ref %.9g, oracle %.9g, "
                          "err %.3g tol %.3g",
                          what, mf_impl_name(impls[i]), p, (long long)j,
                          (double)y[j], (double)yr[j], e.y[j], err, tol);
            }
            mft_free(y);
        }
    }
    mft_free(yr);
    expect_free(&e);
    mft_free(bias);
    mft_free(x);
    qd_free(&q);
}

static const int64_t Ms[] = {1, 2, 3, 7, 8, 31, 32, 33, 64};
static const int64_t Ns[] = {1, 3, 17, 100};
static const int64_t Ks[] = {32, 64, 96, 128, 2048};

/* Every M of the list with each legal K; N cycles through its list (every
 * (M, N) pair occurs across the K values), heavy combinations trimmed. */
static void sweep(mf_type type, int first_variant_only)
{
    mft_rng r = mft_rng_make(__LINE__ + (uint64_t)type * 7919);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32), done = 0;
    for (int vi = 0; vi < nv; vi++) {
        if (vs[vi].type != type || (first_variant_only && done))
            continue;
        done++;
        for (int ki = 0; ki < 5; ki++) {
            if (!qd_k_legal(&vs[vi], Ks[ki]))
                continue;
            for (int mi = 0; mi < 9; mi++) {
                qcase c = {.v = &vs[vi], .M = Ms[mi],
                           .N = Ns[(mi + ki + vi) % 4], .K = Ks[ki]};
                if (c.K == 2048 && c.M > 8 && c.N > 17)
                    c.N = 17;
                c.pad = ((mi + ki) % 3 == 0) ? (size_t)mft_int(&r, 1, 33) : 0;
                c.with_bias = (mi + vi) % 2;
                check_case(&r, &c);
            }
        }
    }
}

Test(qmv, exact_and_int8_q4_0) { sweep(MF_TYPE_Q4_0, 0); }
Test(qmv, exact_and_int8_q8_0) { sweep(MF_TYPE_Q8_0, 0); }
Test(qmv, exact_and_int8_mlx_q4) { sweep(MF_TYPE_MLX_Q4, 0); }
Test(qmv, exact_and_int8_mlx_q8) { sweep(MF_TYPE_MLX_Q8, 0); }
Test(qmv, float_weights)
{
    sweep(MF_TYPE_F32, 0);
    sweep(MF_TYPE_F16, 0);
    sweep(MF_TYPE_BF16, 0);
}

/* Float weights take any K, including widths that are no multiple of any
 * vector length. */
Test(qmv, float_weights_odd_k)
{
    mft_rng r = mft_rng_make(__LINE__);
    static const qd_variant fv[3] = {{MF_TYPE_F32, 0, MF_TYPE_F32},
                                     {MF_TYPE_F16, 0, MF_TYPE_F32},
                                     {MF_TYPE_BF16, 0, MF_TYPE_F32}};
    static const int64_t ks[] = {1, 5, 15, 17, 33, 100, 257};
    for (int v = 0; v < 3; v++)
        for (int ki = 0; ki < 7; ki++) {
            qcase c = {.v = &fv[v], .M = Ms[(ki + v) % 9],
                       .N = Ns[(ki + 2 * v) % 4], .K = ks[ki],
                       .pad = ki % 2 ? 3 : 0, .with_bias = ki % 2};
            check_case(&r, &c);
        }
}

/* Bias with each activation, on a threaded size and the sgemm path. */
Test(qmv, bias_and_activations)
{
    mft_rng r = mft_rng_make(__LINE__);
    static const qd_variant v[2] = {{MF_TYPE_Q4_0, 0, MF_TYPE_F32},
                                    {MF_TYPE_MLX_Q4, 64, MF_TYPE_BF16}};
    for (int a = MF_ACT_SILU; a < MF_ACT_COUNT_; a++)
        for (int i = 0; i < 2; i++) {
            qcase c = {.v = &v[i], .M = a == MF_ACT_GELU ? 40 : 1 + 3 * i,
                       .N = 130, .K = 512, .with_bias = 1, .act = (mf_act)a};
            check_case(&r, &c);
        }
}

/* A NaN in one activation row makes that row's outputs NaN in every impl
 * and precision and leaves the other rows finite. */
Test(qmv, nan_propagates)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    mf_impl impls[10];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_REF;
    impls[ni++] = MF_IMPL_UNFUSED;
    for (int vi = 0; vi < nv; vi += 2) {
        for (int mi = 0; mi < 2; mi++) {
            const int64_t M = mi ? 40 : 3, N = 19, K = 256;
            qd_tensor q = qd_make(&r, &vs[vi], 1, N, K, 0, 0);
            float *x = mft_alloc((size_t)(M * K) * 4, 4);
            mft_fill_normal(&r, x, (size_t)(M * K), 1.0f);
            int64_t bad_m = M / 2;
            x[bad_m * K + mft_int(&r, 0, K - 1)] = NAN;
            for (int i = 0; i < ni; i++)
                for (int p = 0; p < MF_PREC_COUNT_; p++) {
                    float *y = run(impls[i], (mf_precision)p, MF_ACT_NONE,
                                   NULL, &q.t, x, M, 8);
                    for (int64_t j = 0; j < M * N; j++) {
                        int want_nan = j / N == bad_m;
                        cr_assert(want_nan ? isnan(y[j]) : isfinite(y[j]),
                                  "%s %s prec %d M=%lld y[%lld] = %g",
                                  qd_name(&vs[vi]), mf_impl_name(impls[i]), p,
                                  (long long)M, (long long)j, (double)y[j]);
                    }
                    mft_free(y);
                }
            mft_free(x);
            qd_free(&q);
        }
    }
}

/* ---------------------------------------------------------- the kernels -- */

/* The kernel tables this build and machine can run. */
static int tables(const mf_kernels **out)
{
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    int n = 0;
    for (int isa = MF_ISA_SCALAR; isa < MF_ISA_COUNT_; isa++) {
        const mf_kernels *k = mf_kernels_get((mf_isa)isa);
        if (k && ci.isa_available[isa])
            out[n++] = k;
    }
    return n;
}

/* The quantizer as ops.h defines it, written here: d = absmax / 127 (f32),
 * q = nearest-even(x / d) in +-127, s = d * sum(q); zero block d = 0;
 * a block holding Inf or NaN: d = s = NaN, q = 0. */
static void quant_oracle(const float *x, mf_q8blk *o)
{
    float a = 0.0f;
    int nonfinite = 0;
    for (int j = 0; j < 32; j++) {
        nonfinite |= !isfinite(x[j]);
        a = fabsf(x[j]) > a ? fabsf(x[j]) : a;
    }
    memset(o->q, 0, 32);
    if (nonfinite) {
        o->d = o->s = NAN;
        return;
    }
    o->d = a / 127.0f;
    o->s = 0.0f;
    if (o->d == 0.0f)
        return;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        float v = rintf(x[j] / o->d);
        o->q[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        sum += o->q[j];
    }
    o->s = o->d * (float)sum;
}

static int same_f(float a, float b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0;
}

/* quantize_q8 of every kernel set is bit-identical to the definition:
 * random blocks, exact ties (x / d = n + 1/2 must round to even), an
 * all-zero block, a subnormal block, blocks with +-Inf and NaN. */
Test(kernels, quantize_q8_exact)
{
    mft_rng r = mft_rng_make(__LINE__);
    const mf_kernels *ks[MF_ISA_COUNT_];
    int nk = tables(ks);
    enum { NB = 72 };
    float *x = mft_alloc(NB * 32 * 4, 4);
    mft_fill_normal(&r, x, NB * 32, 2.0f);
    /* block 1: d = 2^-4 exactly (absmax 127/16), halves of d */
    x[32] = 127.0f / 16;
    for (int j = 1; j < 32; j++)
        x[32 + j] = (float)((j - 16) + 0.5) / 16.0f;
    memset(x + 64, 0, 32 * 4);              /* block 2: zeros */
    for (int j = 0; j < 32; j++)            /* block 3: subnormals */
        x[96 + j] = (float)(j - 16) * 1e-41f;
    x[128 + 5] = INFINITY;                  /* block 4 */
    x[160 + 31] = -INFINITY;                /* block 5 */
    x[192] = NAN;                           /* block 6 */
    for (int j = 0; j < 32; j++)            /* block 7: large, ties */
        x[224 + j] = (float)(2 * j - 31) * 0.5f * 3.0f;
    for (int kk = 0; kk < nk; kk++) {
        for (int64_t K = 32; K <= NB * 32; K += 32 * 7) {
            mf_q8blk got[NB], want[NB];
            memset(got, 0x5a, sizeof got);
            ks[kk]->quantize_q8(x, K, got);
            for (int64_t b = 0; b < K / 32; b++) {
                quant_oracle(x + 32 * b, &want[b]);
                cr_assert(same_f(got[b].d, want[b].d) &&
                              same_f(got[b].s, want[b].s) &&
                              memcmp(got[b].q, want[b].q, 32) == 0,
                          "%s block %lld: d %a/%a s %a/%a",
                          mf_isa_name(ks[kk]->isa), (long long)b,
                          (double)got[b].d, (double)want[b].d,
                          (double)got[b].s, (double)want[b].s);
            }
            cr_assert_eq(got[K / 32].d, got[NB - 1].d, "wrote past K / 32");
        }
    }
    mft_free(x);
}

/* qdot and qdot_q8 of every kernel set on a stack of 3 experts, rows given
 * by absolute number inside experts 1 and 2 (as the expert ops call them),
 * every M up to 32 with x and y rows at unrelated, unaligned addresses, any
 * nr; EXACT against the reference kernel, INT8 against the oracle bound. */
Test(kernels, qdot_on_expert_stacks)
{
    mft_rng r = mft_rng_make(__LINE__);
    const mf_kernels *ks[MF_ISA_COUNT_];
    int nk = tables(ks);
    const mf_kernels *ref = mf_kernels_get(MF_ISA_SCALAR);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    const int64_t E = 3, N = 40;
    for (int vi = 0; vi < nv; vi++) {
        int64_t K = vs[vi].type == MF_TYPE_MLX_Q4 ||
                            vs[vi].type == MF_TYPE_MLX_Q8
                        ? 2 * vs[vi].group + 128
                        : 320 + (vs[vi].type <= MF_TYPE_BF16 ? 3 : 0);
        qd_tensor q = qd_make(&r, &vs[vi], E, N, K, vi % 2 ? 6 : 0, 1);
        for (int trial = 0; trial < 6; trial++) {
            int M = trial == 0 ? 32 : (int)mft_int(&r, 1, 32);
            int64_t nr = trial == 1 ? 1 : mft_int(&r, 1, N);
            int64_t r0 = mft_int(&r, N, E * N - nr);
            const float *xs[32];
            float *xb[32], *yb[32], *yr[32];
            mf_q8blk *qb[32];
            const mf_q8blk *qs[32];
            for (int m = 0; m < M; m++) {
                xb[m] = mft_alloc((size_t)K * 4, 4 * (size_t)mft_int(&r, 0, 3));
                mft_fill_normal(&r, xb[m], (size_t)K, 1.0f);
                xs[m] = xb[m];
                yr[m] = mft_alloc((size_t)nr * 4, 4);
                yb[m] = mft_alloc((size_t)nr * 4 + 4, 4 * (size_t)mft_int(&r, 1, 3));
                qb[m] = malloc(sizeof(mf_q8blk) * (size_t)(K / 32 + 1));
                if (K % 32 == 0)
                    ref->quantize_q8(xb[m], K, qb[m]);
                qs[m] = qb[m];
            }
            ref->qdot(&q.t, r0, nr, xs, M, yr);
            double *W = malloc((size_t)(nr * K) * 8);
            double *MAG = malloc((size_t)(nr * K) * 8);
            for (int64_t i = 0; i < nr; i++)
                for (int64_t k = 0; k < K; k++) {
                    W[i * K + k] = qd_weight(&q.t, r0 + i, k);
                    MAG[i * K + k] = qd_weight_mag(&q.t, r0 + i, k);
                }
            for (int kk = 0; kk < nk; kk++) {
                for (int m = 0; m < M; m++)
                    memset(yb[m], 0xA5, (size_t)nr * 4 + 4);
                ks[kk]->qdot(&q.t, r0, nr, xs, M, yb);
                for (int m = 0; m < M; m++) {
                    cr_assert_eq(((unsigned char *)yb[m])[nr * 4], 0xA5,
                                 "%s wrote past nr", mf_isa_name(ks[kk]->isa));
                    for (int64_t i = 0; i < nr; i++) {
                        double s = 0;
                        for (int64_t k = 0; k < K; k++)
                            s += fabs(W[i * K + k] * xb[m][k]);
                        double tol = 0x1p-22 * (double)K * s + 1e-30;
                        cr_assert(fabs((double)yb[m][i] - yr[m][i]) <= tol,
                                  "%s %s qdot M=%d m=%d row %lld: %.9g vs %.9g",
                                  mf_isa_name(ks[kk]->isa), qd_name(&vs[vi]),
                                  M, m, (long long)(r0 + i), (double)yb[m][i],
                                  (double)yr[m][i]);
                    }
                }
                if (!is_quant(vs[vi].type))
                    continue;
                ks[kk]->qdot_q8(&q.t, r0, nr, qs, M, yb);
                for (int m = 0; m < M; m++) {
                    for (int64_t i = 0; i < nr; i++) {
                        double acc = 0, quant = 0, round = 0;
                        for (int64_t b = 0; b < K / 32; b++) {
                            double d = block_d(xb[m] + 32 * b), l1 = 0;
                            for (int j = 0; j < 32; j++) {
                                int64_t k = 32 * b + j;
                                double w = W[i * K + k];
                                acc += w * xb[m][k];
                                l1 += fabs(w);
                                round += MAG[i * K + k] *
                                         (fabs(xb[m][k]) + d / 2);
                            }
                            quant += l1 * d / 2;
                        }
                        double tol = (1.0 + 1.0 / 32768) * quant +
                                     (double)(K + 8) * U24 * round + 1e-30;
                        cr_assert(fabs(yb[m][i] - acc) <= tol,
                                  "%s %s qdot_q8 M=%d m=%d row %lld: %.9g vs %.9g tol %.3g",
                                  mf_isa_name(ks[kk]->isa), qd_name(&vs[vi]),
                                  M, m, (long long)(r0 + i), (double)yb[m][i],
                                  acc, tol);
                    }
                }
            }
            free(W);
            free(MAG);
            for (int m = 0; m < M; m++) {
                mft_free(xb[m]);
                mft_free(yr[m]);
                mft_free(yb[m]);
                free(qb[m]);
            }
        }
        qd_free(&q);
    }
}

/* dequant_row of every kernel set, directly, on rows of expert 2 of a
 * padded stack: bit-exact, and nothing written past K. */
Test(kernels, dequant_row_exact)
{
    mft_rng r = mft_rng_make(__LINE__);
    const mf_kernels *ks[MF_ISA_COUNT_];
    int nk = tables(ks);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    for (int vi = 0; vi < nv; vi++) {
        int64_t K = vs[vi].type <= MF_TYPE_BF16 ? 77 : 384;
        qd_tensor q = qd_make(&r, &vs[vi], 3, 5, K, 5, 3);
        float *out = mft_alloc((size_t)K * 4 + 64, 4);
        for (int kk = 0; kk < nk; kk++)
            for (int64_t row = 10; row < 15; row++) {
                memset(out, 0xA5, (size_t)K * 4 + 64);
                ks[kk]->dequant_row(&q.t, row, out);
                for (int64_t k = 0; k < K; k++) {
                    float want = (float)qd_weight(&q.t, row, k);
                    cr_assert(same_f(out[k], want), "%s %s row %lld k %lld",
                              mf_isa_name(ks[kk]->isa), qd_name(&vs[vi]),
                              (long long)row, (long long)k);
                }
                cr_assert_eq(((unsigned char *)out)[K * 4], 0xA5,
                             "%s wrote past K", mf_isa_name(ks[kk]->isa));
            }
        mft_free(out);
        qd_free(&q);
    }
}

/* ----------------------------------------------------------- bad inputs -- */

Test(qmv, bad_inputs)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_MLX_Q4, 32, MF_TYPE_F16};
    const int64_t N = 8, K = 64, M = 2;
    qd_tensor q = qd_make(&r, &v, 1, N, K, 0, 0);
    mf_ctx *ctx = mft_ctx();
    float *x = mft_alloc(M * K * 4, 0), *bias = mft_alloc(N * 4, 0);
    mft_fill_normal(&r, x, M * K, 1.0f);
    mft_fill_normal(&r, bias, N, 1.0f);
    size_t yb = M * N * 4;
    float *y = mft_alloc(yb, 0);
    unsigned char poison[M * N * 4];
    memcpy(poison, y, yb);
    mf_qmv_desc d = {0};
    mf_tensor t;
#define EXPECT_ST(call, want)                                             \
    do {                                                                  \
        cr_expect_eq((call), (want), "%s", #call);                        \
        cr_expect(memcmp(y, poison, yb) == 0, "output written: %s", #call); \
    } while (0)
    EXPECT_ST(mf_qmv(NULL, &d, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, NULL, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, &d, NULL, x, M, y), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, NULL, M, y), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, NULL), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, 0, y), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, -1, y), MF_ERR_INVALID_ARG);
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, 65537, y), MF_ERR_INVALID_ARG);
    d.impl = (mf_impl)MF_IMPL_COUNT_;
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    d = (mf_qmv_desc){.prec = (mf_precision)MF_PREC_COUNT_};
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    d = (mf_qmv_desc){.prec = (mf_precision)-1};
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    d = (mf_qmv_desc){.act = (mf_act)MF_ACT_COUNT_};
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    d = (mf_qmv_desc){0};
    /* a stack of experts is not a matrix */
    t = q.t;
    t.e = 2;
    t.n = N / 2;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    /* tensor errors from mf_tensor_check */
    t = q.t;
    t.k = 40;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    t = q.t;
    t.group_size = 16;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_UNSUPPORTED);
    t = q.t;
    t.scale_type = MF_TYPE_Q8_0;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_UNSUPPORTED);
    t = q.t;
    t.biases = NULL;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    t = q.t;
    t.n = 0;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    t = mf_tensor_dense(MF_TYPE_Q4_0, 1, N, K, q.data);
    t.scales = q.scales; /* MLX fields on a ggml type */
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    /* overlaps */
    float *big = mft_alloc((M * K + M * N) * 4, 0);
    memcpy(big, x, M * K * 4);
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, big, M, big + M * K - 1),
              MF_ERR_INVALID_ARG);
    d.bias = y + 3;
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_INVALID_ARG);
    d.bias = NULL;
    t = q.t;
    t.data = (unsigned char *)y + yb - 1;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    t = q.t;
    t.scales = y;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    t = q.t;
    t.biases = (unsigned char *)y + 2;
    EXPECT_ST(mf_qmv(ctx, &d, &t, x, M, y), MF_ERR_INVALID_ARG);
    mft_free(big);
    /* impls this context or machine lacks */
    d.impl = MF_IMPL_GPU;
    EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_UNSUPPORTED);
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    static const mf_impl isa_impl[] = {MF_IMPL_AVX2, MF_IMPL_AVX512,
                                       MF_IMPL_NEON};
    static const mf_isa isa_of[] = {MF_ISA_AVX2, MF_ISA_AVX512, MF_ISA_NEON};
    for (int i = 0; i < 3; i++) {
        if (ci.isa_available[isa_of[i]])
            continue;
        d.impl = isa_impl[i];
        EXPECT_ST(mf_qmv(ctx, &d, &q.t, x, M, y), MF_ERR_UNSUPPORTED);
    }
#undef EXPECT_ST
    mft_free(y);
    mft_free(bias);
    mft_free(x);
    qd_free(&q);
}

/* The unfused baseline dequantizes the whole matrix: 2^24 rows of 2^20
 * weights (64 TiB of f32) cannot be allocated, and nothing is read before
 * the allocation fails. The rows' address span is computed, never touched.
 * y and the first block share one allocation, y first, so that the span
 * (upward from the block) never overlaps y whatever the address-space
 * layout (under qemu-user the heap lies above the stack). */
Test(qmv, unfused_out_of_memory)
{
    const int64_t N = (int64_t)1 << 24, K = (int64_t)1 << 20;
    float *x = calloc((size_t)K, 4);
    float *y = malloc((size_t)N * 4 + 18);
    cr_assert(x && y);
    unsigned char *blk = (unsigned char *)(y + N);
    memset(blk, 0, 18);
    mf_tensor t = mf_tensor_dense(MF_TYPE_Q4_0, 1, N, K, blk);
    y[0] = 123.0f;
    mf_qmv_desc d = {.impl = MF_IMPL_UNFUSED};
    cr_expect_eq(mf_qmv(mft_ctx(), &d, &t, x, 1, y), MF_ERR_OUT_OF_MEMORY);
    cr_expect_eq(y[0], 123.0f);
    free(x);
    free(y);
}
