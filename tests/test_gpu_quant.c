/* The quantized-weight ops on the Vulkan device against the reference
 * (MF_IMPL_REF) on fresh random inputs: mf_dequant_act, mf_qmv,
 * mf_moe_gate_up, mf_moe_down_combine in every weight format (F32, F16,
 * BF16, Q4_0, Q8_0, MLX Q4/Q8 with group 32/64/128 and f16/bf16/f32
 * scales), padded rows, unaligned host buffers, NaN; the MoE chain in one
 * submit against the CPU layer; weight residency (uploads once, explicit
 * upload with progress, staged uploads in small chunks, eviction, device
 * OOM leaving the context working); the residency API's bad inputs. Every
 * GPU case runs with both reductions the shaders have (subgroup shuffles
 * and shared memory) where the device offers both. Skipped, with the reason
 * printed, only when no Vulkan device comes up.
 *
 * Tolerances (u = 2^-24; S = sum_i |w_i x_i| (+ |bias|) per output, from
 * the reference's exact dequantized weights, computed here in double):
 *  - dequant, no activation, f32 out: bit-identical (ops.h: the format's
 *    value, exact on the device incl. denormal products); 16-bit out:
 *    bit-identical (the same integer rounding); with an activation: the
 *    activation's tolerance of mf_glu, 8 ulp (GELU erf 10) + 1e-30, and
 *    one unit of a 16-bit output type.
 *  - qmv EXACT: ops.h's 2^-22 K S (the device sums in another order); with
 *    an activation 1.13 times that (the largest slope of SiLU and GELU) plus
 *    the activation's 8 (10) ulp.
 *  - INT8 (quantized weights, on a device with integer dot products; else
 *    the device computes EXACT, ops.h): every dot product's bound gains
 *    ops.h's quantization term, sum over blocks of |w_blk|_1 d_x / 2 with
 *    d_x = absmax / 127 taken 0.01% larger (q8_bound); the same
 *    propagation through activations, GLU and combine. The INT8 shaders
 *    must give other bits than the EXACT ones (int8_path), and the
 *    expert ops' modes the same bits as each other.
 *  - moe_gate_up: g and u each within 2^-21 H S + half an ulp (bias add)
 *    of the exact value (the reference and the device each within
 *    2^-22 H S, so twice); the GLU moves errors e_g, e_u by at most
 *    1.25 e_g (|u| + 1 + e_u) + |a(g)| e_u (test_moe.c's argument), plus
 *    2^-19 |a(g)| (|u| + 1) for the two sides' activation roundings.
 *  - moe_down_combine: sum_j |w_j| e_j with e_j twice the dot bound, plus
 *    (k + 1) 2^-23 (sum_j |w_j v_j| + |residual|) (ops.h's combine bound,
 *    each side).
 *  - chain vs the CPU layer: expert indices identical; outputs within 1e-4
 *    of max |y| (the composed op tolerances, as tests/test_layer.c).
 *  - the expert ops' modes (per pair, or grouped by expert with M pairs
 *    per pass; MOEFUSE_GPU_MOE_GROUP forces one): bit-identical to each
 *    other (src/gpu/quant.h), in the ops and in the chain. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gpu_common.h"
#include "qdata.h"
#include "../tools/synth.h"

#define U24 (1.0 / 16777216.0)

static int act_ulps(mf_act a) { return a == MF_ACT_GELU ? 10 : 8; }

static size_t tsize(mf_type t) { return t == MF_TYPE_F32 ? 4 : 2; }

/* Rows per lane group of the matvec shaders (MOEFUSE_GPU_QRPW, read when a
 * plan is recorded): the test shapes are too small for the automatic
 * choice to go above 1, so cases rotate through 1 (automatic), 2 and 4. */
static void rpw_env(int i)
{
    if (i % 3 == 0)
        unsetenv("MOEFUSE_GPU_QRPW");
    else
        setenv("MOEFUSE_GPU_QRPW", i % 3 == 1 ? "2" : "4", 1);
}

/* Modes of the expert shaders (MOEFUSE_GPU_MOE_GROUP, read when a plan is
 * recorded; plans key on the mode): per pair, grouped with M = 1, 2, 4 and
 * 16 pairs per pass (as far as the register budget lets it, src/gpu/
 * quant.h). The automatic choice (unset) runs first. */
static const char *const group_modes[] = {"0", "1", "2", "4", "16"};
#define N_GROUP_MODES ((int)(sizeof group_modes / sizeof group_modes[0]))

/* The down shader's per-pair forms (MOEFUSE_GPU_DN_SLOTS, read when a plan
 * is recorded): slot groups (phase 3) and one lane group for all the slots
 * (phase 0), each forced with MOEFUSE_GPU_MOE_GROUP=0. Lavapipe's 8-lane
 * subgroups give more lane groups than the test shapes have slots, where
 * the automatic choice is phase 0; the H200 takes phase 3 for k = 8. */
static const char *const slot_modes[] = {"1", "1", "0", "1", "0"};
#define N_SLOT_MODES 5
/* INT8: the first three quantize h in the down workgroups themselves
 * (MOEFUSE_GPU_DN_PREQ=0), the last two once, in a dispatch of its own
 * (=1; the automatic choice takes it from DOWN_PREQ_BLOCKS h blocks on):
 * the same bits. */
#define SLOT_PREQ 3

/* The second slot-group run takes 8 rows per lane group (reduce_rows
 * scattering them over 8 or more lanes). */
static char slot_rpw_saved[8];

static void slot_env(int si)
{
    setenv("MOEFUSE_GPU_MOE_GROUP", "0", 1);
    setenv("MOEFUSE_GPU_DN_SLOTS", slot_modes[si], 1);
    const char *r = getenv("MOEFUSE_GPU_QRPW");
    snprintf(slot_rpw_saved, sizeof slot_rpw_saved, "%s", r ? r : "");
    if (si == 1)
        setenv("MOEFUSE_GPU_QRPW", "8", 1);
    setenv("MOEFUSE_GPU_DN_PREQ", si >= SLOT_PREQ ? "1" : "0", 1);
}

/* Back to the automatic forms, the case's rows per lane group kept. */
static void slot_env_clear(void)
{
    unsetenv("MOEFUSE_GPU_MOE_GROUP");
    unsetenv("MOEFUSE_GPU_DN_SLOTS");
    unsetenv("MOEFUSE_GPU_DN_PREQ");
    if (slot_rpw_saved[0])
        setenv("MOEFUSE_GPU_QRPW", slot_rpw_saved, 1);
    else
        unsetenv("MOEFUSE_GPU_QRPW");
}

/* Every stored row of t decoded by the reference: [rows, K] f32 (exact
 * format values). */
static float *ref_rows(const mf_tensor *t)
{
    size_t n = (size_t)(t->e * t->n * t->k);
    float *w = malloc(n * 4);
    cr_assert_not_null(w);
    mf_dequant_desc d = {.impl = MF_IMPL_REF, .out_type = MF_TYPE_F32};
    cr_assert_eq(mf_dequant_act(mft_ctx(), &d, t, w), MF_OK);
    return w;
}

/* 16-bit value to f32. */
static float half_of(mf_type t, const void *p, size_t i)
{
    uint16_t h;
    memcpy(&h, (const unsigned char *)p + 2 * i, 2);
    return t == MF_TYPE_F16 ? mf_f16_to_f32(h) : mf_bf16_to_f32(h);
}

/* ------------------------------------------------------------ dequant -- */

static void dequant_case(mf_ctx *c, mft_rng *r, const qd_variant *v,
                         int64_t E, int64_t N, int64_t K, size_t pad,
                         mf_type ot, mf_act a)
{
    qd_tensor q = qd_make(r, v, E, N, K, pad, (size_t)mft_int(r, 0, 3));
    size_t n = (size_t)(E * N * K), bytes = n * tsize(ot);
    void *want = mft_alloc(bytes, 0), *got = mft_alloc(bytes, 2);
    mf_dequant_desc d = {.impl = MF_IMPL_REF, .act = a, .out_type = ot};
    cr_assert_eq(mf_dequant_act(c, &d, &q.t, want), MF_OK);
    d.impl = MF_IMPL_GPU;
    mf_status st = mf_dequant_act(c, &d, &q.t, got);
    cr_assert_eq(st, MF_OK, "%s: gpu %s", qd_name(v), mf_status_str(st));
    if (a == MF_ACT_NONE) {
        cr_assert(memcmp(want, got, bytes) == 0,
                  "dequant %s E=%lld N=%lld K=%lld pad=%zu out=%s: not "
                  "bit-identical",
                  qd_name(v), (long long)E, (long long)N, (long long)K, pad,
                  mf_type_name(ot));
    } else {
        for (size_t i = 0; i < n; i++) {
            float wv, gv;
            int ok;
            if (ot == MF_TYPE_F32) {
                memcpy(&wv, (unsigned char *)want + 4 * i, 4);
                memcpy(&gv, (unsigned char *)got + 4 * i, 4);
                ok = mft_close(wv, gv, (uint32_t)act_ulps(a), 1e-30f);
            } else {
                uint16_t hw, hg;
                memcpy(&hw, (unsigned char *)want + 2 * i, 2);
                memcpy(&hg, (unsigned char *)got + 2 * i, 2);
                wv = half_of(ot, want, i);
                gv = half_of(ot, got, i);
                int dh = (int)hw - (int)hg;
                ok = dh >= -1 && dh <= 1;
            }
            cr_assert(ok, "dequant %s K=%lld act=%d out=%s [%zu]: %.9g vs ref %.9g",
                      qd_name(v), (long long)K, a, mf_type_name(ot), i,
                      (double)gv, (double)wv);
        }
    }
    mf_weights_evict(c, &q.t);
    mft_free(want);
    mft_free(got);
    qd_free(&q);
}

/* Every format with f32 output and no activation (bit-identical), two
 * widths each (one with padded rows); every (activation, output type) pair
 * on a few formats. Shader builds dominate the time on a CPU device, so
 * the pairs are spread rather than crossed. */
Test(gpu_quant, dequant_every_format)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    static const int64_t Ks[] = {17, 32, 96, 128, 256};
    for (int vi = 0; vi < nv; vi++) {
        int done = 0;
        for (int ki = (vi % 5); done < 2 && ki < 10; ki++) {
            int64_t K = Ks[ki % 5];
            if (!qd_k_legal(&vs[vi], K))
                continue;
            dequant_case(c, &r, &vs[vi], 1 + done, 3 + 2 * ki, K,
                         done ? (size_t)mft_int(&r, 1, 9) : 0, MF_TYPE_F32,
                         MF_ACT_NONE);
            done++;
        }
    }
    static const mf_type outs[] = {MF_TYPE_F32, MF_TYPE_F16, MF_TYPE_BF16};
    static const int picks[] = {3, 4, 1, 7, 14};
    for (int oi = 0; oi < 3; oi++)
        for (int a = 0; a < MF_ACT_COUNT_; a++) {
            if (oi == 0 && a == 0)
                continue;
            const qd_variant *v = &vs[picks[(oi * 4 + a) % 5] % nv];
            int64_t K = qd_k_legal(v, 96) ? 96 : 128;
            if (v->type <= MF_TYPE_BF16 && (oi + a) % 2)
                K = 33; /* odd K: 16-bit pairs straddle rows */
            dequant_case(c, &r, v, 2, 5, K, (size_t)(a * 2), outs[oi],
                         (mf_act)a);
        }
    mft_gpu_ctx_done(c);
}

/* ---------------------------------------------------------------- qmv -- */

/* Bound of ops.h for each output: 2^-22 K S. */
/* 1 when the device computes MF_PREC_INT8 for weights of type t: the
 * precision asked for, a quantized type and integer dot products on the
 * device (else the GPU gives the EXACT result, ops.h). */
static int dev_int8(mf_ctx *c, mf_precision p, mf_type t)
{
    mf_gpu_info i;
    return p == MF_PREC_INT8 && t >= MF_TYPE_Q4_0 &&
           mf_ctx_gpu_info(c, &i) == MF_OK && i.int8_dot;
}

/* ops.h's INT8 quantization bound of one dot product: sum over blocks of
 * |w_blk|_1 d_x / 2, d_x = absmax / 127 taken 0.01% larger (its f32
 * rounding and the (1 + 2^-15) of ops.h). */
static double q8_bound(const float *w, const float *x, int64_t K)
{
    double q = 0;
    for (int64_t b = 0; b < K / 32; b++) {
        double amax = 0, l1 = 0;
        for (int j = 0; j < 32; j++) {
            amax = fmax(amax, fabs((double)x[32 * b + j]));
            l1 += fabs((double)w[32 * b + j]);
        }
        q += l1 * (amax / 127.0 * 1.0001) / 2;
    }
    return q;
}

static double *qmv_bounds(const float *w, const float *x, const float *bias,
                          int64_t M, int64_t N, int64_t K, int int8)
{
    double *s = malloc((size_t)(M * N) * 8);
    cr_assert_not_null(s);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double a = bias ? fabs(bias[n]) : 0;
            for (int64_t k = 0; k < K; k++)
                a += fabs((double)w[n * K + k] * x[m * K + k]);
            s[m * N + n] = 0x1p-22 * (double)K * a +
                           (int8 ? q8_bound(w + n * K, x + m * K, K) : 0);
        }
    return s;
}

static double ulp_of(float v)
{
    float a = fabsf(v);
    return (double)nextafterf(a, INFINITY) - a;
}

static void qmv_case(mf_ctx *c, mft_rng *r, const qd_variant *v, int64_t M,
                     int64_t N, int64_t K, size_t pad, int with_bias,
                     mf_act act, mf_precision prec)
{
    char what[192];
    snprintf(what, sizeof what,
             "qmv %s M=%lld N=%lld K=%lld pad=%zu bias=%d act=%d prec=%d",
             qd_name(v), (long long)M, (long long)N, (long long)K, pad,
             with_bias, act, prec);
    static int ncase;
    rpw_env(ncase++);
    qd_tensor q = qd_make(r, v, 1, N, K, pad, (size_t)mft_int(r, 0, 3));
    float *x = mft_alloc((size_t)(M * K) * 4, 4 * (size_t)mft_int(r, 1, 3));
    mft_fill_normal(r, x, (size_t)(M * K), 1.0f);
    float *bias = NULL;
    if (with_bias) {
        bias = mft_alloc((size_t)N * 4, 4);
        mft_fill_normal(r, bias, (size_t)N, 0.1f);
    }
    float *w = ref_rows(&q.t);
    const int int8 = M <= 32 && dev_int8(c, prec, v->type);
    double *tol = qmv_bounds(w, x, bias, M, N, K, int8);
    float *yr = mft_alloc((size_t)(M * N) * 4, 0);
    float *yg = mft_alloc((size_t)(M * N) * 4, 4 * (size_t)mft_int(r, 1, 3));
    mf_qmv_desc d = {.impl = MF_IMPL_REF, .act = act, .bias = bias};
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, yr), MF_OK);
    d.impl = MF_IMPL_GPU;
    d.prec = prec;
    mf_status st = mf_qmv(c, &d, &q.t, x, M, yg);
    cr_assert_eq(st, MF_OK, "%s: gpu %s", what, mf_status_str(st));
    for (int64_t i = 0; i < M * N; i++) {
        double t = tol[i];
        if (act != MF_ACT_NONE)
            t = 1.13 * t + act_ulps(act) * ulp_of(yr[i]);
        double err = fabs((double)yg[i] - yr[i]);
        cr_assert(err <= t + 1e-30, "%s: y[%lld] = %.9g, ref %.9g, err %.3g tol %.3g",
                  what, (long long)i, (double)yg[i], (double)yr[i], err, t);
    }
    if (M == 1 && !int8) {
        /* the staged row (form qmv_xstage; off by default) gives the same
         * bits, whole and in chunks of two blocks (two lanes a row: the
         * unstaged run with two lanes is the reference) */
        float *ys = mft_alloc((size_t)N * 4, 4), *yu = mft_alloc((size_t)N * 4, 4);
        setenv("MOEFUSE_GPU_XSTAGE", "1", 1);
        cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, ys), MF_OK);
        cr_expect_eq(memcmp(ys, yg, (size_t)N * 4), 0, "%s: staged bits", what);
        unsetenv("MOEFUSE_GPU_XSTAGE");
        setenv("MOEFUSE_GPU_QLANES", "2", 1);
        cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, yu), MF_OK);
        setenv("MOEFUSE_GPU_XSTAGE", "1", 1);
        setenv("MOEFUSE_GPU_XKB", "2", 1);
        cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, ys), MF_OK);
        cr_expect_eq(memcmp(ys, yu, (size_t)N * 4), 0, "%s: chunked staged bits",
                     what);
        unsetenv("MOEFUSE_GPU_XSTAGE");
        unsetenv("MOEFUSE_GPU_XKB");
        unsetenv("MOEFUSE_GPU_QLANES");
        mft_free(ys);
        mft_free(yu);
    }
    mf_weights_evict(c, &q.t);
    free(w);
    free(tol);
    mft_free(yr);
    mft_free(yg);
    mft_free(bias);
    mft_free(x);
    qd_free(&q);
}

/* Every format at M = 1 with two widths (one with padded rows); M in
 * {2, 7, 32, 33} on one format of each family; biases and activations
 * rotate. The shared-memory variant runs the multi-lane widths on a few
 * formats (its reduction differs only there). */
Test(gpu_quant, qmv_every_format)
{
    static const int64_t Ks[] = {32, 96, 128, 256, 2048, 45};
    static const int64_t Ns[] = {1, 3, 17, 67};
    static const int64_t Ms[] = {2, 7, 32, 33};
    for (int var = 0; var < 2; var++) {
        mf_ctx *c = mft_gpu_ctx(var);
        if (!c)
            continue;
        mft_rng r = mft_rng_make(__LINE__);
        qd_variant vs[32];
        int nv = qd_variants(vs, 32);
        int n = 0;
        for (int vi = 0; vi < nv; vi++) {
            if (var && vi % 4)
                continue;
            int done = 0;
            for (int ki = vi % 6; done < 2 && ki < 12; ki++) {
                int64_t K = Ks[ki % 6];
                if (!qd_k_legal(&vs[vi], K) || (var && K < 256))
                    continue;
                qmv_case(c, &r, &vs[vi], 1, Ns[n % 4], K,
                         done ? (size_t)mft_int(&r, 1, 21) : 0, n % 2,
                         (mf_act)(n % MF_ACT_COUNT_),
                         (mf_precision)(n % 5 == 4));
                done++;
                n++;
            }
        }
        static const int fam[] = {3, 4, 5, 14, 1};
        for (int fi = 0; fi < 5; fi++)
            for (int mi = 0; mi < 4; mi++, n++) {
                if (var && (fi + mi) % 3)
                    continue;
                const qd_variant *v = &vs[fam[fi] % nv];
                int64_t K = mi == 1 ? 2048 : qd_k_legal(v, 96) ? 96 : 128;
                qmv_case(c, &r, v, Ms[mi], Ns[(fi + mi) % 4], K,
                         mi % 2 ? (size_t)mft_int(&r, 1, 21) : 0, n % 2,
                         (mf_act)(n % MF_ACT_COUNT_),
                         (mf_precision)(n % 3 == 0));
            }
        mft_gpu_ctx_done(c);
    }
}

/* A NaN in activation row 1 makes all of y's row 1 NaN and no other, in
 * both precisions. */
Test(gpu_quant, qmv_nan_propagates)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    for (int vi = 0; vi < nv; vi++) {
        const int64_t M = 3, N = 19, K = 128;
        if (!qd_k_legal(&vs[vi], K) || vi % 3)
            continue;
        qd_tensor q = qd_make(&r, &vs[vi], 1, N, K, 0, 0);
        float x[3 * 128], y[3 * 19];
        mft_fill_normal(&r, x, (size_t)(M * K), 1.0f);
        x[K + 77] = NAN;
        for (int p = 0; p < 2; p++) {
            mf_qmv_desc d = {.impl = MF_IMPL_GPU, .prec = (mf_precision)p};
            cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, y), MF_OK);
            for (int64_t i = 0; i < M * N; i++)
                cr_expect((i / N == 1) == (isnan(y[i]) != 0),
                          "%s prec %d y[%lld] = %g", qd_name(&vs[vi]), p,
                          (long long)i, (double)y[i]);
        }
        mf_weights_evict(c, &q.t);
        qd_free(&q);
    }
    mft_gpu_ctx_done(c);
}

/* ----------------------------------------------------------- moe ops -- */

/* Formats of the moe cases: every family once (MLX with a group size and
 * scale type each; the qmv and dequant sweeps cover the rest). */
static const qd_variant moe_fmts[] = {
    {MF_TYPE_Q4_0, 0, MF_TYPE_F32},   {MF_TYPE_Q8_0, 0, MF_TYPE_F32},
    {MF_TYPE_MLX_Q4, 64, MF_TYPE_BF16}, {MF_TYPE_MLX_Q8, 32, MF_TYPE_F16},
    {MF_TYPE_MLX_Q4, 128, MF_TYPE_F32}, {MF_TYPE_F16, 0, MF_TYPE_F32},
    {MF_TYPE_BF16, 0, MF_TYPE_F32},   {MF_TYPE_F32, 0, MF_TYPE_F32},
};
#define N_MOE_FMTS ((int)(sizeof moe_fmts / sizeof moe_fmts[0]))

enum { SPREAD = 0, PILE = 1 };

/* SPREAD: k distinct experts per token; PILE: every slot from the first
 * three experts, repeats within a token included. */
static void make_idx(mft_rng *r, int32_t *idx, int64_t T, int32_t k,
                     int64_t E, int mode)
{
    for (int64_t t = 0; t < T; t++)
        for (int32_t j = 0; j < k; j++) {
            int32_t *it = idx + t * k;
            if (mode == PILE) {
                it[j] = (int32_t)mft_int(r, 0, E < 3 ? E - 1 : 2);
                continue;
            }
            int dup;
            do {
                it[j] = (int32_t)mft_int(r, 0, E - 1);
                dup = 0;
                for (int32_t i = 0; i < j; i++)
                    dup |= it[i] == it[j];
            } while (dup);
        }
}

static double act_d(mf_glu_kind kind, double g, double alpha)
{
    switch (kind) {
    case MF_GLU_SWIGLU: return g / (1 + exp(-g));
    case MF_GLU_GEGLU_TANH:
        return 0.5 * g * (1 + tanh(sqrt(2 / 3.14159265358979323846) *
                                   (g + 0.044715 * g * g * g)));
    case MF_GLU_GEGLU_ERF: return 0.5 * g * (1 + erf(g / sqrt(2.0)));
    default: return g / (1 + exp(-alpha * g));
    }
}

/* Row r of decoded weights dotted with x: value (with bias) and the bound
 * of one side (2^-22 K S + half an ulp of the bias add; INT8 adds
 * q8_bound). */
static void dot_bound(const float *w, const float *x, int64_t K, double bias,
                      int int8, double *v, double *e)
{
    double s = 0, mag = 0;
    for (int64_t i = 0; i < K; i++) {
        s += (double)w[i] * x[i];
        mag += fabs((double)w[i] * x[i]);
    }
    *v = s + bias;
    *e = 0x1p-22 * (double)K * mag + 0x1p-24 * fabs(*v) +
         (int8 ? q8_bound(w, x, K) : 0);
}

typedef struct gu_case {
    int64_t E, H, F, T;
    int32_t k;
    mf_glu_layout layout;
    mf_glu_kind kind;
    float limit, alpha, bias_range;
    int route;
    int modes; /* also every forced mode: the same bits */
} gu_case;

static void gate_up_case(mf_ctx *c, mft_rng *r, const qd_variant *v,
                         const gu_case *gc)
{
    const int sep = gc->layout == MF_GLU_SEPARATE;
    const int64_t E = gc->E, H = gc->H, F = gc->F, T = gc->T;
    const int64_t N = sep ? F : 2 * F, P = T * gc->k;
    char what[192];
    snprintf(what, sizeof what,
             "gate_up %s E=%lld H=%lld F=%lld T=%lld k=%d layout=%d glu=%d "
             "bias=%g route=%d",
             qd_name(v), (long long)E, (long long)H, (long long)F,
             (long long)T, gc->k, gc->layout, gc->kind,
             (double)gc->bias_range, gc->route);
    static int ncase;
    rpw_env(ncase++);
    qd_tensor wg = qd_make(r, v, E, N, H, (size_t)mft_int(r, 0, 1) * 6,
                           (size_t)mft_int(r, 0, 3));
    qd_tensor wu;
    if (sep)
        wu = qd_make(r, v, E, F, H, 0, (size_t)mft_int(r, 0, 3));
    float *x = mft_alloc((size_t)(T * H) * 4, 4 * (size_t)mft_int(r, 1, 3));
    mft_fill_normal(r, x, (size_t)(T * H), 1.0f);
    int32_t *idx = mft_alloc((size_t)P * 4, 4);
    make_idx(r, idx, T, gc->k, E, gc->route);
    float *bg = NULL, *bu = NULL;
    if (gc->bias_range > 0) {
        bg = mft_alloc((size_t)(E * N) * 4, 4);
        mft_fill_uniform(r, bg, (size_t)(E * N), -gc->bias_range,
                         gc->bias_range);
        if (sep) {
            bu = mft_alloc((size_t)(E * F) * 4, 8);
            mft_fill_uniform(r, bu, (size_t)(E * F), -gc->bias_range,
                             gc->bias_range);
        }
    }
    float *Dg = ref_rows(&wg.t), *Du = sep ? ref_rows(&wu.t) : Dg;
    mf_moe_gate_up_desc d = {.impl = MF_IMPL_REF, .glu = gc->kind,
                             .limit = gc->limit, .alpha = gc->alpha,
                             .layout = gc->layout, .w_gate = &wg.t,
                             .w_up = sep ? &wu.t : NULL, .b_gate = bg,
                             .b_up = bu};
    float *hr = mft_alloc((size_t)(P * F) * 4, 0);
    float *hg = mft_alloc((size_t)(P * F) * 4, 4 * (size_t)mft_int(r, 1, 3));
    cr_assert_eq(mf_moe_gate_up(c, &d, T, gc->k, x, idx, hr), MF_OK);
    d.impl = MF_IMPL_GPU;
    d.prec = (mf_precision)(gc->route); /* PILE cases: INT8 */
    const int int8 = dev_int8(c, d.prec, v->type);
    mf_status st = mf_moe_gate_up(c, &d, T, gc->k, x, idx, hg);
    cr_assert_eq(st, MF_OK, "%s: gpu %s", what, mf_status_str(st));
    if (gc->modes) {
        float *hm = mft_alloc((size_t)(P * F) * 4, 0);
        for (int mi = 0; mi < N_GROUP_MODES; mi++) {
            setenv("MOEFUSE_GPU_MOE_GROUP", group_modes[mi], 1);
            st = mf_moe_gate_up(c, &d, T, gc->k, x, idx, hm);
            unsetenv("MOEFUSE_GPU_MOE_GROUP");
            cr_assert_eq(st, MF_OK, "%s mode %s: gpu %s", what,
                         group_modes[mi], mf_status_str(st));
            cr_expect(memcmp(hm, hg, (size_t)(P * F) * 4) == 0,
                      "%s: mode %s differs from the automatic mode", what,
                      group_modes[mi]);
        }
        /* the activations staged in shared memory or loaded by each lane,
         * whole rows or in chunks (two lanes a row, chunks of two blocks;
         * per pair and grouped): the same bits */
        setenv("MOEFUSE_GPU_XSTAGE", "1", 1);
        st = mf_moe_gate_up(c, &d, T, gc->k, x, idx, hm);
        unsetenv("MOEFUSE_GPU_XSTAGE");
        cr_assert_eq(st, MF_OK, "%s staged: gpu %s", what,
                     mf_status_str(st));
        cr_expect(memcmp(hm, hg, (size_t)(P * F) * 4) == 0,
                  "%s: staged activations change the bits", what);
        /* unstaged with the next block's loads in flight: the same bits */
        setenv("MOEFUSE_GPU_GU_NEXT", "1", 1);
        st = mf_moe_gate_up(c, &d, T, gc->k, x, idx, hm);
        unsetenv("MOEFUSE_GPU_GU_NEXT");
        cr_assert_eq(st, MF_OK, "%s next: gpu %s", what, mf_status_str(st));
        cr_expect(memcmp(hm, hg, (size_t)(P * F) * 4) == 0,
                  "%s: the next block's loads change the bits", what);
        float *h2 = mft_alloc((size_t)(P * F) * 4, 0);
        setenv("MOEFUSE_GPU_QLANES", "2", 1);
        for (int gi = 0; gi < 2; gi++) {
            setenv("MOEFUSE_GPU_MOE_GROUP", gi ? "4" : "0", 1);
            setenv("MOEFUSE_GPU_XSTAGE", "0", 1);
            cr_assert_eq(mf_moe_gate_up(c, &d, T, gc->k, x, idx, hm), MF_OK);
            setenv("MOEFUSE_GPU_XSTAGE", "1", 1);
            setenv("MOEFUSE_GPU_XKB", "2", 1);
            cr_assert_eq(mf_moe_gate_up(c, &d, T, gc->k, x, idx, h2), MF_OK);
            unsetenv("MOEFUSE_GPU_XKB");
            unsetenv("MOEFUSE_GPU_XSTAGE");
            cr_expect(memcmp(hm, h2, (size_t)(P * F) * 4) == 0,
                      "%s: chunked staging (group %d) changes the bits", what,
                      gi ? 4 : 0);
            /* two lanes a row: every lane has several blocks, so the
             * next-block loads are in play */
            setenv("MOEFUSE_GPU_GU_NEXT", "1", 1);
            cr_assert_eq(mf_moe_gate_up(c, &d, T, gc->k, x, idx, h2), MF_OK);
            unsetenv("MOEFUSE_GPU_GU_NEXT");
            cr_expect(memcmp(hm, h2, (size_t)(P * F) * 4) == 0,
                      "%s: next-block loads (group %d) change the bits", what,
                      gi ? 4 : 0);
        }
        unsetenv("MOEFUSE_GPU_QLANES");
        unsetenv("MOEFUSE_GPU_MOE_GROUP");
        mft_free(h2);
        mft_free(hm);
    }
    const double limit = gc->limit != 0 ? gc->limit : 7.0;
    const double alpha = gc->alpha != 0 ? gc->alpha : 1.702;
    int bad = 0;
    for (int64_t p = 0; p < P && bad < 3; p++) {
        const int64_t t = p / gc->k, e = idx[p];
        for (int64_t f = 0; f < F; f++) {
            int64_t rg, ru;
            if (sep) {
                rg = ru = e * F + f;
            } else if (gc->layout == MF_GLU_CONCAT) {
                rg = e * N + f;
                ru = rg + F;
            } else {
                rg = e * N + 2 * f;
                ru = rg + 1;
            }
            double g, u, eg, eu;
            dot_bound(Dg + rg * H, x + t * H, H, bg ? bg[rg] : 0, int8, &g,
                      &eg);
            dot_bound(Du + ru * H, x + t * H, H,
                      sep ? (bu ? bu[ru] : 0) : (bg ? bg[ru] : 0), int8, &u,
                      &eu);
            double up1 = u;
            if (gc->kind == MF_GLU_SWIGLU_OAI) {
                g = fmin(g, limit);
                u = fmax(fmin(u, limit), -limit);
                up1 = u + 1;
            }
            double a = act_d(gc->kind, g, alpha);
            /* twice the one-sided bound (both sides are within it) */
            double tol = 2 * (1.25 * eg * (fabs(u) + 1 + eu) + fabs(a) * eu) +
                         0x1p-19 * fabs(a) * (fabs(u) + 1) + 1e-30;
            (void)up1;
            double err = fabs((double)hg[p * F + f] - hr[p * F + f]);
            if (!(err <= tol)) {
                cr_log_error("%s: h[%lld, %lld] = %.9g, ref %.9g, tol %.3g",
                             what, (long long)p, (long long)f,
                             (double)hg[p * F + f], (double)hr[p * F + f], tol);
                bad++;
            }
        }
    }
    cr_expect_eq(bad, 0, "%s", what);
    mf_weights_evict(c, NULL);
    free(Dg);
    if (sep)
        free(Du);
    mft_free(hr);
    mft_free(hg);
    mft_free(bg);
    mft_free(bu);
    mft_free(idx);
    mft_free(x);
    qd_free(&wg);
    if (sep)
        qd_free(&wu);
}

Test(gpu_quant, moe_gate_up)
{
    static const gu_case cases[] = {
        /* E, H, F, T, k, layout, kind, limit, alpha, bias, route, modes */
        {8, 64, 96, 1, 2, MF_GLU_SEPARATE, MF_GLU_SWIGLU, 0, 0, 0.5f, SPREAD,
         0},
        {8, 96, 40, 3, 3, MF_GLU_CONCAT, MF_GLU_GEGLU_TANH, 0, 0, 0, PILE, 0},
        {8, 64, 33, 3, 2, MF_GLU_CONCAT, MF_GLU_GEGLU_ERF, 0, 0, 1.0f, SPREAD,
         0},
        {4, 64, 64, 32, 2, MF_GLU_INTERLEAVED, MF_GLU_SWIGLU_OAI, 0, 0, 10.0f,
         PILE, 0},
        {6, 128, 17, 5, 3, MF_GLU_INTERLEAVED, MF_GLU_SWIGLU_OAI, 5.0f, 1.25f,
         10.0f, SPREAD, 0},
        {5, 256, 32, 2, 5, MF_GLU_SEPARATE, MF_GLU_SWIGLU, 0, 0, 0, SPREAD, 0},
    };
    for (int var = 0; var < 2; var++) {
        mf_ctx *c = mft_gpu_ctx(var);
        if (!c)
            continue;
        mft_rng r = mft_rng_make(__LINE__);
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
            for (int fi = 0; fi < N_MOE_FMTS; fi++) {
                if ((fi + (int)ci + var) % 2)
                    continue; /* every (case, format) pair over the variants */
                gu_case gc = cases[ci];
                if (moe_fmts[fi].type >= MF_TYPE_Q4_0 &&
                    gc.H % (moe_fmts[fi].group ? moe_fmts[fi].group : 32))
                    continue;
                gate_up_case(c, &r, &moe_fmts[fi], &gc);
            }
        /* float weights with H not a multiple of 32 (padded rows); every
         * mode */
        gu_case odd = {3, 45, 7, 2, 2, MF_GLU_SEPARATE, MF_GLU_SWIGLU, 0, 0,
                       0.5f, SPREAD, 1};
        gate_up_case(c, &r, &moe_fmts[5], &odd);
        mft_gpu_ctx_done(c);
    }
}

typedef struct dn_case {
    int64_t E, H, F, T;
    int32_t k;
    float bias_range;
    int route, res_mode; /* 0 none, 1 separate, 2 in place */
    int modes; /* also every forced mode: the same bits */
} dn_case;

static void down_case(mf_ctx *c, mft_rng *r, const qd_variant *v,
                      const dn_case *dc)
{
    const int64_t E = dc->E, H = dc->H, F = dc->F, T = dc->T;
    const int32_t k = dc->k;
    const int64_t P = T * k;
    char what[192];
    snprintf(what, sizeof what,
             "down %s E=%lld H=%lld F=%lld T=%lld k=%d bias=%g route=%d res=%d",
             qd_name(v), (long long)E, (long long)H, (long long)F,
             (long long)T, k, (double)dc->bias_range, dc->route,
             dc->res_mode);
    static int ncase;
    rpw_env(ncase++);
    qd_tensor wd = qd_make(r, v, E, H, F, (size_t)mft_int(r, 0, 1) * 10,
                           (size_t)mft_int(r, 0, 3));
    float *h = mft_alloc((size_t)(P * F) * 4, 4 * (size_t)mft_int(r, 1, 3));
    mft_fill_normal(r, h, (size_t)(P * F), 1.0f);
    int32_t *idx = mft_alloc((size_t)P * 4, 4);
    make_idx(r, idx, T, k, E, dc->route);
    float *w = mft_alloc((size_t)P * 4, 8);
    mft_fill_uniform(r, w, (size_t)P, 0.0f, 1.0f);
    float *bd = NULL, *res = NULL;
    if (dc->bias_range > 0) {
        bd = mft_alloc((size_t)(E * H) * 4, 12);
        mft_fill_uniform(r, bd, (size_t)(E * H), -dc->bias_range,
                         dc->bias_range);
    }
    if (dc->res_mode) {
        res = mft_alloc((size_t)(T * H) * 4, 4);
        mft_fill_normal(r, res, (size_t)(T * H), 2.0f);
    }
    float *D = ref_rows(&wd.t);
    mf_moe_down_desc d = {.impl = MF_IMPL_REF, .w_down = &wd.t, .b_down = bd};
    float *yr = mft_alloc((size_t)(T * H) * 4, 0);
    float *yg = mft_alloc((size_t)(T * H) * 4, 4);
    cr_assert_eq(mf_moe_down_combine(c, &d, T, k, h, idx, w, res, yr), MF_OK);
    d.impl = MF_IMPL_GPU;
    d.prec = (mf_precision)(dc->route); /* PILE cases: INT8 */
    const int int8 = dev_int8(c, d.prec, v->type);
    const float *rp = res;
    if (dc->res_mode == 2) {
        memcpy(yg, res, (size_t)(T * H) * 4);
        rp = yg;
    }
    mf_status st = mf_moe_down_combine(c, &d, T, k, h, idx, w, rp, yg);
    cr_assert_eq(st, MF_OK, "%s: gpu %s", what, mf_status_str(st));
    if (dc->modes) {
        float *ym = mft_alloc((size_t)(T * H) * 4, 0);
        for (int mi = 0; mi < N_GROUP_MODES; mi++) {
            setenv("MOEFUSE_GPU_MOE_GROUP", group_modes[mi], 1);
            /* INT8: h quantized once (odd) or by the workgroups */
            setenv("MOEFUSE_GPU_DN_PREQ", mi % 2 ? "1" : "0", 1);
            st = mf_moe_down_combine(c, &d, T, k, h, idx, w, res, ym);
            unsetenv("MOEFUSE_GPU_MOE_GROUP");
            unsetenv("MOEFUSE_GPU_DN_PREQ");
            cr_assert_eq(st, MF_OK, "%s mode %s: gpu %s", what,
                         group_modes[mi], mf_status_str(st));
            cr_expect(memcmp(ym, yg, (size_t)(T * H) * 4) == 0,
                      "%s: mode %s differs from the automatic mode", what,
                      group_modes[mi]);
        }
        for (int si = 0; si < N_SLOT_MODES; si++) {
            slot_env(si);
            st = mf_moe_down_combine(c, &d, T, k, h, idx, w, res, ym);
            slot_env_clear();
            cr_assert_eq(st, MF_OK, "%s slots %s: gpu %s", what, slot_modes[si],
                         mf_status_str(st));
            cr_expect(memcmp(ym, yg, (size_t)(T * H) * 4) == 0,
                      "%s: slots %s differs from the automatic mode", what,
                      slot_modes[si]);
        }
        /* slot groups and one lane group for the slots, h staged in
         * shared memory instead of loaded by each lane */
        for (int si = 0; si < 3; si++) {
            slot_env(si);
            setenv("MOEFUSE_GPU_XSTAGE", "1", 1);
            st = mf_moe_down_combine(c, &d, T, k, h, idx, w, res, ym);
            unsetenv("MOEFUSE_GPU_XSTAGE");
            slot_env_clear();
            cr_assert_eq(st, MF_OK, "%s staged: gpu %s", what,
                         mf_status_str(st));
            cr_expect(memcmp(ym, yg, (size_t)(T * H) * 4) == 0,
                      "%s: slots %s staged differs from the automatic mode",
                      what, slot_modes[si]);
        }
        /* h staged in chunks of two blocks (two lanes a row), one lane
         * group for the slots: the unstaged bits */
        float *y2 = mft_alloc((size_t)(T * H) * 4, 0);
        setenv("MOEFUSE_GPU_QLANES", "2", 1);
        slot_env(2);
        setenv("MOEFUSE_GPU_XSTAGE", "0", 1);
        cr_assert_eq(mf_moe_down_combine(c, &d, T, k, h, idx, w, res, ym),
                     MF_OK);
        setenv("MOEFUSE_GPU_XSTAGE", "1", 1);
        setenv("MOEFUSE_GPU_XKB", "2", 1);
        cr_assert_eq(mf_moe_down_combine(c, &d, T, k, h, idx, w, res, y2),
                     MF_OK);
        unsetenv("MOEFUSE_GPU_XKB");
        unsetenv("MOEFUSE_GPU_XSTAGE");
        slot_env_clear();
        unsetenv("MOEFUSE_GPU_QLANES");
        cr_expect(memcmp(ym, y2, (size_t)(T * H) * 4) == 0,
                  "%s: chunked staging of h changes the bits", what);
        mft_free(y2);
        mft_free(ym);
    }
    int bad = 0;
    for (int64_t t = 0; t < T && bad < 3; t++)
        for (int64_t i = 0; i < H; i++) {
            double err = 0, mag = 0;
            for (int32_t j = 0; j < k; j++) {
                int64_t p = t * k + j, row = idx[p] * H + i;
                double vv, ee;
                dot_bound(D + row * F, h + p * F, F, bd ? bd[row] : 0, int8,
                          &vv, &ee);
                err += w[p] * ee;
                mag += fabs(w[p] * vv);
            }
            double rv = res ? fabs(res[t * H + i]) : 0;
            double tol = 2 * err + 2 * (k + 1) * 0x1p-23 * (mag + rv) + 1e-30;
            double e2 = fabs((double)yg[t * H + i] - yr[t * H + i]);
            if (!(e2 <= tol)) {
                cr_log_error("%s: y[%lld, %lld] = %.9g, ref %.9g, tol %.3g",
                             what, (long long)t, (long long)i,
                             (double)yg[t * H + i], (double)yr[t * H + i], tol);
                bad++;
            }
        }
    cr_expect_eq(bad, 0, "%s", what);
    mf_weights_evict(c, NULL);
    free(D);
    mft_free(yr);
    mft_free(yg);
    mft_free(res);
    mft_free(bd);
    mft_free(w);
    mft_free(idx);
    mft_free(h);
    qd_free(&wd);
}

Test(gpu_quant, moe_down_combine)
{
    static const dn_case cases[] = {
        /* E, H, F, T, k, bias, route, residual, modes */
        {8, 64, 96, 1, 2, 0, SPREAD, 0, 0},
        {5, 96, 32, 3, 5, 0, PILE, 1, 0},
        {4, 64, 64, 32, 2, 3.0f, PILE, 2, 0},
        /* k > 8: two slot passes per token; every mode */
        {16, 33, 128, 2, 11, 0.5f, SPREAD, 1, 1},
        {8, 17, 256, 7, 8, 0, SPREAD, 2, 0},
        /* INT8 (PILE) in every mode: h quantized once or per workgroup */
        {16, 40, 128, 2, 9, 0.5f, PILE, 1, 1},
    };
    for (int var = 0; var < 2; var++) {
        mf_ctx *c = mft_gpu_ctx(var);
        if (!c)
            continue;
        mft_rng r = mft_rng_make(__LINE__);
        for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++)
            for (int fi = 0; fi < N_MOE_FMTS; fi++) {
                if ((fi + (int)ci + var) % 2)
                    continue;
                dn_case dc = cases[ci];
                if (moe_fmts[fi].type >= MF_TYPE_Q4_0 &&
                    dc.F % (moe_fmts[fi].group ? moe_fmts[fi].group : 32))
                    continue;
                down_case(c, &r, &moe_fmts[fi], &dc);
            }
        dn_case odd = {3, 20, 45, 2, 2, 0.5f, SPREAD, 1, 1};
        down_case(c, &r, &moe_fmts[6], &odd);
        mft_gpu_ctx_done(c);
    }
}

/* Many pairs per expert: T = 32 over E = 4 (k = 2), T = 7 over E = 3
 * (k = 3, repeats within a token), and 600 pairs over E = 2 (about 300 an
 * expert: more than a workgroup's pair list holds at once). Each against the reference, and
 * every forced mode (per pair, grouped with several pairs per pass) gives
 * the automatic mode's bits; both reductions. */
Test(gpu_quant, moe_grouped)
{
    static const gu_case gcs[] = {
        /* E, H, F, T, k, layout, kind, limit, alpha, bias, route, modes */
        {4, 128, 48, 32, 2, MF_GLU_CONCAT, MF_GLU_SWIGLU, 0, 0, 0.5f, SPREAD,
         1},
        {3, 128, 40, 7, 3, MF_GLU_INTERLEAVED, MF_GLU_SWIGLU_OAI, 0, 0, 10.0f,
         PILE, 1},
        {2, 64, 32, 300, 2, MF_GLU_SEPARATE, MF_GLU_GEGLU_ERF, 0, 0, 0, PILE,
         1},
    };
    static const dn_case dcs[] = {
        /* E, H, F, T, k, bias, route, residual, modes */
        {4, 40, 128, 32, 2, 3.0f, SPREAD, 1, 1},
        {3, 33, 128, 7, 3, 0, PILE, 2, 1},
        {2, 24, 64, 300, 2, 0.5f, PILE, 0, 1},
    };
    for (int var = 0; var < 2; var++) {
        mf_ctx *c = mft_gpu_ctx(var);
        if (!c)
            continue;
        mft_rng r = mft_rng_make(__LINE__);
        for (int ci = 0; ci < 2; ci++)
            for (int fi = 0; fi < N_MOE_FMTS; fi++) {
                if ((fi + ci + var) % 2)
                    continue; /* every (case, format) pair over the variants */
                gate_up_case(c, &r, &moe_fmts[fi], &gcs[ci]);
                down_case(c, &r, &moe_fmts[fi], &dcs[ci]);
            }
        gate_up_case(c, &r, &moe_fmts[var ? 1 : 2], &gcs[2]);
        down_case(c, &r, &moe_fmts[var ? 3 : 0], &dcs[2]);
        mft_gpu_ctx_done(c);
    }
}

/* A NaN in token 1's activations makes token 1's outputs NaN, others
 * finite (gate_up, then down_combine with a NaN in h). */
Test(gpu_quant, moe_nan_propagates)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t E = 8, H = 128, F = 128, T = 3;
    const int32_t k = 2;
    for (int fi = 0; fi < N_MOE_FMTS; fi++) {
        qd_tensor wg = qd_make(&r, &moe_fmts[fi], E, F, H, 0, 0);
        qd_tensor wu = qd_make(&r, &moe_fmts[fi], E, F, H, 0, 0);
        qd_tensor wd = qd_make(&r, &moe_fmts[fi], E, H, F, 0, 0);
        float x[3 * 128], h[6 * 128], y[3 * 128];
        float w[6] = {.5f, .5f, .5f, .5f, .5f, .5f};
        int32_t idx[6];
        mft_fill_normal(&r, x, (size_t)(T * H), 1.0f);
        x[H + 17] = NAN;
        make_idx(&r, idx, T, k, E, SPREAD);
        mf_moe_gate_up_desc gd = {.impl = MF_IMPL_GPU, .w_gate = &wg.t,
                                  .w_up = &wu.t,
                                  .prec = (mf_precision)(fi % 2)};
        mf_status st = mf_moe_gate_up(c, &gd, T, k, x, idx, h);
        cr_assert_eq(st, MF_OK, "%s: %s", qd_name(&moe_fmts[fi]),
                     mf_status_str(st));
        for (int64_t i = 0; i < T * k * F; i++)
            cr_expect((i / (k * F) == 1) == (isnan(h[i]) != 0),
                      "%s h[%lld] = %g", qd_name(&moe_fmts[fi]), (long long)i,
                      (double)h[i]);
        mf_moe_down_desc dd = {.impl = MF_IMPL_GPU, .w_down = &wd.t,
                               .prec = (mf_precision)(fi % 2)};
        cr_assert_eq(mf_moe_down_combine(c, &dd, T, k, h, idx, w, NULL, y),
                     MF_OK);
        for (int64_t i = 0; i < T * H; i++)
            cr_expect((i / H == 1) == (isnan(y[i]) != 0), "%s y[%lld] = %g",
                      qd_name(&moe_fmts[fi]), (long long)i, (double)y[i]);
        mf_weights_evict(c, NULL);
        qd_free(&wg);
        qd_free(&wu);
        qd_free(&wd);
    }
    mft_gpu_ctx_done(c);
}

/* The INT8 shaders run where the device has integer dot products: for
 * every quantized format their results differ from the EXACT ones (and are
 * within the bound, qmv_every_format), and with MOEFUSE_GPU_NO_INT8=1 the
 * context reports no int8_dot and INT8 calls give the EXACT bits. */
Test(gpu_quant, int8_path)
{
    for (int off = 0; off < 2; off++) {
        if (off)
            setenv("MOEFUSE_GPU_NO_INT8", "1", 1);
        mf_ctx *c = mft_gpu_ctx(0);
        unsetenv("MOEFUSE_GPU_NO_INT8");
        if (!c)
            return;
        mf_gpu_info info;
        cr_assert_eq(mf_ctx_gpu_info(c, &info), MF_OK);
        if (off)
            cr_expect_eq(info.int8_dot, 0, "MOEFUSE_GPU_NO_INT8 ignored");
        else if (!info.int8_dot)
            cr_log_info("%s has no integer dot products: INT8 runs as EXACT",
                        info.name);
        mft_rng r = mft_rng_make(__LINE__);
        const int64_t M = 3, N = 64, K = 256, E = 4, H = 128, F = 128, T = 2;
        const int32_t k = 2;
        for (int fi = 0; fi < N_MOE_FMTS; fi++) {
            const qd_variant *v = &moe_fmts[fi];
            if (v->type < MF_TYPE_Q4_0)
                continue;
            const char *nm = qd_name(v);
            qd_tensor q = qd_make(&r, v, 1, N, K, 0, 0);
            float x[3 * 256], ye[3 * 64], yi[3 * 64];
            mft_fill_normal(&r, x, (size_t)(M * K), 1.0f);
            mf_qmv_desc d = {.impl = MF_IMPL_GPU};
            cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, ye), MF_OK);
            d.prec = MF_PREC_INT8;
            cr_assert_eq(mf_qmv(c, &d, &q.t, x, M, yi), MF_OK);
            int same = memcmp(ye, yi, sizeof ye) == 0;
            cr_expect(same == !info.int8_dot, "qmv %s: INT8 %s EXACT", nm,
                      same ? "equals" : "differs from");
            /* the expert ops */
            qd_tensor wg = qd_make(&r, v, E, 2 * F, H, 0, 0);
            qd_tensor wd = qd_make(&r, v, E, H, F, 0, 0);
            float xg[2 * 128], he[4 * 128], hi[4 * 128], w[4] = {.5f, .25f, 1, 2};
            float oe[2 * 128], oi[2 * 128];
            int32_t idx[4] = {1, 3, 0, 1};
            mft_fill_normal(&r, xg, (size_t)(T * H), 1.0f);
            mf_moe_gate_up_desc gd = {.impl = MF_IMPL_GPU, .w_gate = &wg.t,
                                      .layout = MF_GLU_CONCAT};
            cr_assert_eq(mf_moe_gate_up(c, &gd, T, k, xg, idx, he), MF_OK);
            gd.prec = MF_PREC_INT8;
            cr_assert_eq(mf_moe_gate_up(c, &gd, T, k, xg, idx, hi), MF_OK);
            same = memcmp(he, hi, sizeof he) == 0;
            cr_expect(same == !info.int8_dot, "gate_up %s: INT8 %s EXACT", nm,
                      same ? "equals" : "differs from");
            mf_moe_down_desc dd = {.impl = MF_IMPL_GPU, .w_down = &wd.t};
            cr_assert_eq(mf_moe_down_combine(c, &dd, T, k, he, idx, w, NULL, oe),
                         MF_OK);
            dd.prec = MF_PREC_INT8;
            cr_assert_eq(mf_moe_down_combine(c, &dd, T, k, he, idx, w, NULL, oi),
                         MF_OK);
            same = memcmp(oe, oi, sizeof oe) == 0;
            cr_expect(same == !info.int8_dot, "down %s: INT8 %s EXACT", nm,
                      same ? "equals" : "differs from");
            mf_weights_evict(c, NULL);
            qd_free(&q);
            qd_free(&wg);
            qd_free(&wd);
        }
        /* the staged blocks in chunks (MOEFUSE_GPU_I8_KB=32, rows of 64
         * blocks): the same lanes take the same blocks, the same bits */
        if (!off && info.int8_dot) {
            const qd_variant *v = &moe_fmts[0];
            const int64_t K2 = 2048, N2 = 24, E2 = 2, F2 = 16;
            qd_tensor q = qd_make(&r, v, 1, N2, K2, 0, 0);
            qd_tensor wg = qd_make(&r, v, E2, 2 * F2, K2, 0, 0);
            qd_tensor wd = qd_make(&r, v, E2, F2, K2, 0, 0);
            float *x = mft_alloc((size_t)(2 * K2) * 4, 4);
            float *ya = mft_alloc((size_t)(2 * K2) * 4, 4);
            float *yb = mft_alloc((size_t)(2 * K2) * 4, 4);
            mft_fill_normal(&r, x, (size_t)(2 * K2), 1.0f);
            int32_t idx[2] = {1, 0};
            float w[2] = {.75f, .25f};
            mf_qmv_desc d = {.impl = MF_IMPL_GPU, .prec = MF_PREC_INT8};
            mf_moe_gate_up_desc gd = {.impl = MF_IMPL_GPU, .prec = MF_PREC_INT8,
                                      .w_gate = &wg.t, .layout = MF_GLU_CONCAT};
            mf_moe_down_desc dd = {.impl = MF_IMPL_GPU, .prec = MF_PREC_INT8,
                                   .w_down = &wd.t};
            for (int op = 0; op < 3; op++) {
                size_t nout = op == 0 ? 2 * N2 : op == 1 ? 2 * F2 : F2;
                for (int chunked = 0; chunked < 2; chunked++) {
                    float *y = chunked ? yb : ya;
                    if (chunked)
                        setenv("MOEFUSE_GPU_I8_KB", "32", 1);
                    mf_weights_evict(c, NULL); /* plans recorded anew */
                    mf_status st =
                        op == 0   ? mf_qmv(c, &d, &q.t, x, 2, y)
                        : op == 1 ? mf_moe_gate_up(c, &gd, 1, 2, x, idx, y)
                                  : mf_moe_down_combine(c, &dd, 1, 2, x, idx, w,
                                                        NULL, y);
                    unsetenv("MOEFUSE_GPU_I8_KB");
                    cr_assert_eq(st, MF_OK, "op %d chunked %d: %s", op, chunked,
                                 mf_status_str(st));
                }
                cr_expect(memcmp(ya, yb, nout * 4) == 0,
                          "op %d: chunked staging changed the bits", op);
            }
            mf_weights_evict(c, NULL);
            mft_free(x);
            mft_free(ya);
            mft_free(yb);
            qd_free(&q);
            qd_free(&wg);
            qd_free(&wd);
        }
        mft_gpu_ctx_done(c);
    }
}

/* -------------------------------------------------------------- chain -- */

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
    c.n_shared = 0;
    c.shared_ffn = 0;
    return c;
}

/* The layer on the GPU (one chain per forward) against the reference
 * layer: identical experts, outputs within 1e-4 of max |y|; the second
 * forward of a shape uploads nothing and reuses the recorded chain. */
static void chain_preset(mf_ctx *c, const char *preset, mf_type fmt, int64_t T,
                         int residual, uint64_t seed)
{
    mf_moe_config cfg = small(preset, 128, 64, 16, 4);
    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &cfg, fmt, seed), 0);
    mf_moe_layer *l;
    cr_assert_eq(mf_moe_layer_create(c, &cfg, &L.w, &l), MF_OK, "%s", preset);
    mft_rng r = mft_rng_make(seed);
    size_t TH = (size_t)(T * cfg.hidden), Tk = (size_t)(T * cfg.top_k);
    float *x = malloc(TH * 4), *res = residual ? malloc(TH * 4) : NULL;
    float *y0 = malloc(TH * 4), *y1 = malloc(TH * 4);
    int32_t *i0 = malloc(Tk * 4);
    float *w0 = malloc(Tk * 4);
    mft_fill_normal(&r, x, TH, 1.0f);
    if (res)
        mft_fill_normal(&r, res, TH, 1.0f);
    mf_moe_run r0 = {MF_IMPL_REF, MF_PREC_EXACT}, r1 = {MF_IMPL_GPU, MF_PREC_EXACT};
    cr_assert_eq(mf_moe_layer_forward(l, &r0, x, T, res, y0), MF_OK);
    const float *wts;
    memcpy(i0, mf_moe_layer_last_routing(l, &wts, NULL), Tk * 4);
    memcpy(w0, wts, Tk * 4);
    mf_weights_stats s0, s1;
    for (int rep = 0; rep < 2; rep++) {
        mf_weights_stats_get(c, &s0);
        mf_status st = mf_moe_layer_forward(l, &r1, x, T, res, y1);
        cr_assert_eq(st, MF_OK, "%s: %s", preset, mf_status_str(st));
        mf_weights_stats_get(c, &s1);
        if (rep)
            cr_expect(s1.uploads == s0.uploads &&
                          s1.uploaded_bytes == s0.uploaded_bytes,
                      "%s: the second forward uploaded %llu bytes", preset,
                      (unsigned long long)(s1.uploaded_bytes - s0.uploaded_bytes));
        int64_t nt = 0;
        const int32_t *idx = mf_moe_layer_last_routing(l, &wts, &nt);
        cr_assert_not_null(idx);
        cr_assert_eq(nt, T);
        for (size_t i = 0; i < Tk; i++) {
            cr_assert_eq(idx[i], i0[i], "%s T=%lld slot %zu", preset,
                         (long long)T, i);
            /* routing weights: gating's 8 ulp + 1e-7 (softmax) on logits
             * within qmv's bound: a relative 1e-5 covers both here */
            cr_expect(fabsf(wts[i] - w0[i]) <= 1e-5f * fabsf(w0[i]) + 1e-7f,
                      "%s slot %zu: weight %.9g vs ref %.9g", preset, i,
                      (double)wts[i], (double)w0[i]);
        }
        double mx = 0, err = 0;
        for (size_t i = 0; i < TH; i++) {
            mx = fmax(mx, fabs(y0[i]));
            err = fmax(err, fabs((double)y1[i] - y0[i]));
        }
        cr_expect_leq(err, 1e-4 * mx, "%s %s T=%lld: err %g max %g", preset,
                      mf_type_name(fmt), (long long)T, err, mx);
    }
    mf_moe_layer_destroy(l);
    mf_weights_evict(c, NULL);
    synth_layer_free(&L);
    free(x);
    free(res);
    free(y0);
    free(y1);
    free(i0);
    free(w0);
}

Test(gpu_quant, chain_layer_presets)
{
    for (int var = 0; var < 2; var++) {
        mf_ctx *c = mft_gpu_ctx(var);
        if (!c)
            continue;
        chain_preset(c, "qwen3-30b-a3b", MF_TYPE_Q4_0, 1, 0, 11);
        if (!var) {
            chain_preset(c, "qwen3-30b-a3b", MF_TYPE_Q4_0, 5, 1, 12);
            chain_preset(c, "mixtral-8x7b", MF_TYPE_Q8_0, 3, 1, 13);
            chain_preset(c, "gpt-oss-20b", MF_TYPE_MLX_Q4, 2, 0, 14);
            chain_preset(c, "olmoe-1b-7b", MF_TYPE_F16, 1, 1, 15);
            /* sigmoid gating with groups and a correction bias (no shared
             * expert: the chain takes it) */
            chain_preset(c, "deepseek-v3", MF_TYPE_Q4_0, 4, 1, 16);
        }
        mft_gpu_ctx_done(c);
    }
}

/* Sigmoid rows the device cannot prove, inside the layer's chain (router
 * on the device): experts 0 and 1 get logits 0.5 and 0.5 + 2^-20 in every
 * token (router rows zero but for column 0, x[t][0] = 1) and correction
 * biases of 1.0 that put both in the selection, so their order rests on
 * scores closer than the device's bound (2^-18 relative) and every row is
 * flagged. The host then fetches the router's logits, recomputes those rows
 * with the reference and reruns the expert ops: indices identical to the
 * reference layer, weights within 1e-5 relative, y within 1e-4 of max |y|
 * (the tolerances of chain_preset). */
static void chain_unproven_case(mf_ctx *c, int64_t T, uint64_t seed)
{
    mf_moe_config cfg = small("deepseek-v3", 128, 64, 16, 4);
    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &cfg, MF_TYPE_Q4_0, seed), 0);
    const int64_t H = cfg.hidden;
    cr_assert_eq(L.router.t.type, MF_TYPE_F32);
    cr_assert_not_null(L.corr_bias, "deepseek-v3 has a correction bias");
    float *rw = L.router.data;
    memset(rw, 0, 2 * (size_t)H * 4);
    rw[0] = 0.5f;
    rw[H] = 0.5f + 0x1p-20f;
    if (L.router_bias)
        L.router_bias[0] = L.router_bias[1] = 0.0f;
    L.corr_bias[0] = L.corr_bias[1] = 1.0f;
    mf_moe_layer *l;
    cr_assert_eq(mf_moe_layer_create(c, &cfg, &L.w, &l), MF_OK);
    mft_rng r = mft_rng_make(seed);
    const size_t TH = (size_t)(T * H), Tk = (size_t)(T * cfg.top_k);
    float *x = malloc(TH * 4), *y0 = malloc(TH * 4), *y1 = malloc(TH * 4);
    float *w0 = malloc(Tk * 4);
    int32_t *i0 = malloc(Tk * 4);
    cr_assert(x && y0 && y1 && w0 && i0);
    mft_fill_normal(&r, x, TH, 1.0f);
    for (int64_t t = 0; t < T; t++)
        x[t * H] = 1.0f;
    mf_moe_run r0 = {MF_IMPL_REF, MF_PREC_EXACT}, r1 = {MF_IMPL_GPU, MF_PREC_EXACT};
    cr_assert_eq(mf_moe_layer_forward(l, &r0, x, T, NULL, y0), MF_OK);
    const float *wts;
    memcpy(i0, mf_moe_layer_last_routing(l, &wts, NULL), Tk * 4);
    memcpy(w0, wts, Tk * 4);
    /* the constructed near-tie is where the reference put it */
    for (int64_t t = 0; t < T; t++) {
        int seen = 0;
        for (int32_t j = 0; j < cfg.top_k; j++)
            seen |= i0[t * cfg.top_k + j] == 0 ? 1 : i0[t * cfg.top_k + j] == 1 ? 2 : 0;
        cr_assert_eq(seen, 3, "token %lld: experts 0 and 1 not both selected",
                     (long long)t);
    }
    int64_t dev0, host0, dev1, host1;
    mf_gpu_gating_rows(mft_gpu_of(c), &dev0, &host0);
    mf_status st = mf_moe_layer_forward(l, &r1, x, T, NULL, y1);
    cr_assert_eq(st, MF_OK, "%s", mf_status_str(st));
    mf_gpu_gating_rows(mft_gpu_of(c), &dev1, &host1);
    cr_expect_geq(host1 - host0, T,
                  "rows recomputed on the host: %lld of %lld (device %lld)",
                  (long long)(host1 - host0), (long long)T,
                  (long long)(dev1 - dev0));
    int64_t nt = 0;
    const int32_t *idx = mf_moe_layer_last_routing(l, &wts, &nt);
    cr_assert_not_null(idx);
    cr_assert_eq(nt, T);
    for (size_t i = 0; i < Tk; i++) {
        cr_assert_eq(idx[i], i0[i], "T=%lld slot %zu", (long long)T, i);
        cr_expect(fabsf(wts[i] - w0[i]) <= 1e-5f * fabsf(w0[i]) + 1e-7f,
                  "slot %zu: weight %.9g vs ref %.9g", i, (double)wts[i],
                  (double)w0[i]);
    }
    double mx = 0, err = 0;
    for (size_t i = 0; i < TH; i++) {
        mx = fmax(mx, fabs(y0[i]));
        err = fmax(err, fabs((double)y1[i] - y0[i]));
    }
    cr_expect_leq(err, 1e-4 * mx, "T=%lld: err %g max %g", (long long)T, err, mx);
    mf_moe_layer_destroy(l);
    mf_weights_evict(c, NULL);
    synth_layer_free(&L);
    free(x);
    free(y0);
    free(y1);
    free(w0);
    free(i0);
}

Test(gpu_quant, chain_unproven_rows)
{
    mf_ctx *c = mft_gpu_ctx(0);
    if (!c)
        return;
    chain_unproven_case(c, 1, 31);
    chain_unproven_case(c, 3, 32);
    mft_gpu_ctx_done(c);
}

/* The chain directly, from given logits, against the three ops run one by
 * one on the device: identical indices and weights, y within the combine's
 * slack; per-step timestamps when the device has them; a replay. With
 * `modes`, the chain again in every forced mode of the expert ops (per
 * pair, grouped by expert): the same y, bit for bit. */
static void chain_logits_case(mf_ctx *c, const char *preset, int32_t E,
                              int32_t k, int64_t T, mf_type fmt, int modes,
                              mf_precision prec, uint64_t seed)
{
    mf_moe_config cfg = small(preset, 128, 64, E, k);
    synth_layer L;
    cr_assert_eq(synth_layer_make(&L, &cfg, fmt, seed), 0);
    mft_rng r = mft_rng_make(seed);
    const int64_t H = cfg.hidden;
    const size_t TH = (size_t)(T * H), Tk = (size_t)(T * k);
    float *x = malloc(TH * 4), *logits = malloc((size_t)(T * E) * 4);
    float *res = malloc(TH * 4), *y0 = malloc(TH * 4), *y1 = malloc(TH * 4);
    float *w0 = malloc(Tk * 4), *w1 = malloc(Tk * 4);
    float *h = malloc(Tk * (size_t)cfg.expert_ffn * 4);
    int32_t *i0 = malloc(Tk * 4), *i1 = malloc(Tk * 4);
    cr_assert(x && logits && res && y0 && y1 && w0 && w1 && h && i0 && i1);
    mft_fill_normal(&r, x, TH, 1.0f);
    mft_fill_normal(&r, logits, (size_t)(T * E), 2.0f);
    mft_fill_normal(&r, res, TH, 1.0f);
    mf_gating_desc gd = {.impl = MF_IMPL_GPU, .mode = cfg.router,
                         .n_experts = E, .k = k,
                         .renormalize = cfg.renormalize};
    mf_moe_gate_up_desc gu = {.impl = MF_IMPL_GPU, .prec = prec, .glu = cfg.glu,
                              .layout = cfg.gate_up_layout,
                              .w_gate = &L.w.gate, .w_up = &L.w.up};
    mf_moe_down_desc dd = {.impl = MF_IMPL_GPU, .prec = prec,
                           .w_down = &L.w.down};
    cr_assert_eq(mf_gating(c, &gd, logits, T, i0, w0), MF_OK);
    cr_assert_eq(mf_moe_gate_up(c, &gu, T, k, x, i0, h), MF_OK);
    cr_assert_eq(mf_moe_down_combine(c, &dd, T, k, h, i0, w0, res, y0),
                 MF_OK);
    mf_gpu_chain_desc cd = {.gating = &gd, .gate_up = &gu, .down = &dd};
    mf_gpu_chain_times tm;
    mf_gpu *g = mft_gpu_of(c);
    cr_assert_eq(mf_gpu_moe_chain(g, &cd, x, logits, T, res, y1, i1, w1, &tm),
                 MF_OK);
    cr_expect_eq(memcmp(i0, i1, Tk * 4), 0, "%s: indices differ", preset);
    cr_expect_eq(memcmp(w0, w1, Tk * 4), 0, "%s: routing weights differ",
                 preset);
    /* same kernels and inputs: the same y, bit for bit */
    cr_expect_eq(memcmp(y0, y1, TH * 4), 0, "%s: y differs from the op chain",
                 preset);
    mf_gpu_info info;
    cr_assert_eq(mf_ctx_gpu_info(c, &info), MF_OK);
    if (info.timestamps) {
        cr_expect_geq(tm.gpu_us, 0.0);
        for (int i = 1; i < 4; i++)
            cr_expect_geq(tm.step_us[i], 0.0, "step %d", i);
    }
    cr_expect_gt(tm.host_us, 0.0);
    mf_gpu_chain_times rt;
    cr_expect_eq(mf_gpu_bench_chain(g, &rt), MF_OK);
    cr_expect_gt(rt.host_us, 0.0);
    for (int mi = 0; modes && mi < N_GROUP_MODES; mi++) {
        setenv("MOEFUSE_GPU_MOE_GROUP", group_modes[mi], 1);
        /* INT8: h quantized once (odd) or by the down workgroups */
        setenv("MOEFUSE_GPU_DN_PREQ", mi % 2 ? "1" : "0", 1);
        mf_status st = mf_gpu_moe_chain(g, &cd, x, logits, T, res, y1, i1, w1,
                                        NULL);
        unsetenv("MOEFUSE_GPU_MOE_GROUP");
        unsetenv("MOEFUSE_GPU_DN_PREQ");
        cr_assert_eq(st, MF_OK, "%s mode %s: %s", preset, group_modes[mi],
                     mf_status_str(st));
        cr_expect_eq(memcmp(i0, i1, Tk * 4), 0, "%s mode %s: indices differ",
                     preset, group_modes[mi]);
        cr_expect_eq(memcmp(y0, y1, TH * 4), 0,
                     "%s mode %s: y differs from the automatic mode", preset,
                     group_modes[mi]);
    }
    for (int si = 0; modes && si < N_SLOT_MODES; si++) {
        slot_env(si);
        mf_status st = mf_gpu_moe_chain(g, &cd, x, logits, T, res, y1, i1, w1,
                                        NULL);
        slot_env_clear();
        cr_assert_eq(st, MF_OK, "%s slots %s: %s", preset, slot_modes[si],
                     mf_status_str(st));
        cr_expect_eq(memcmp(y0, y1, TH * 4), 0,
                     "%s slots %s: y differs from the automatic mode", preset,
                     slot_modes[si]);
    }
    /* the cache warming off (the default) and on: it only reads, so the
     * same bits */
    for (int pf = 0; pf < 2; pf++) {
        setenv("MOEFUSE_GPU_PREFETCH", pf ? "1" : "0", 1);
        mf_status st = mf_gpu_moe_chain(g, &cd, x, logits, T, res, y1, i1, w1,
                                        NULL);
        unsetenv("MOEFUSE_GPU_PREFETCH");
        cr_assert_eq(st, MF_OK, "%s prefetch %d: %s", preset, pf,
                     mf_status_str(st));
        cr_expect_eq(memcmp(i0, i1, Tk * 4), 0, "%s prefetch %d: indices differ",
                     preset, pf);
        cr_expect_eq(memcmp(y0, y1, TH * 4), 0, "%s prefetch %d: y differs",
                     preset, pf);
    }
    mf_weights_evict(c, NULL);
    /* evicting the weights drops the recorded chain */
    cr_expect_eq(mf_gpu_bench_chain(g, &rt), MF_ERR_INVALID_ARG);
    synth_layer_free(&L);
    free(x);
    free(logits);
    free(res);
    free(y0);
    free(y1);
    free(w0);
    free(w1);
    free(h);
    free(i0);
    free(i1);
}

Test(gpu_quant, chain_from_logits)
{
    mf_ctx *c = mft_gpu_ctx(0);
    chain_logits_case(c, "qwen3-30b-a3b", 12, 3, 3, MF_TYPE_MLX_Q8, 0,
                      MF_PREC_EXACT, 21);
    /* many pairs per expert: 64 pairs over 4 experts */
    chain_logits_case(c, "mixtral-8x7b", 4, 2, 32, MF_TYPE_Q4_0, 1,
                      MF_PREC_EXACT, 22);
    /* INT8: the down step's h quantized by a dispatch of its own or by
     * the down workgroups (forced forms: the same bits) */
    chain_logits_case(c, "qwen3-30b-a3b", 16, 8, 2, MF_TYPE_Q4_0, 1,
                      MF_PREC_INT8, 24);
    mft_gpu_ctx_done(c);
    /* the shared-memory reductions */
    c = mft_gpu_ctx(1);
    if (c) {
        chain_logits_case(c, "mixtral-8x7b", 4, 2, 32, MF_TYPE_Q8_0, 1,
                          MF_PREC_EXACT, 23);
        chain_logits_case(c, "mixtral-8x7b", 4, 2, 32, MF_TYPE_Q4_0, 1,
                          MF_PREC_INT8, 25);
        mft_gpu_ctx_done(c);
    }
}

/* --------------------------------------------------------- residency -- */

typedef struct prog_log {
    double f[4096];
    int n;
} prog_log;

static void on_progress(void *user, double f)
{
    prog_log *p = user;
    if (p->n < 4096)
        p->f[p->n] = f;
    p->n++;
}

static void check_progress(const prog_log *p, int min_calls)
{
    cr_assert_geq(p->n, min_calls, "progress calls %d", p->n);
    for (int i = 0; i < p->n && i < 4096; i++) {
        cr_expect(p->f[i] > 0 && p->f[i] <= 1.0, "fraction %g", p->f[i]);
        if (i)
            cr_expect(p->f[i] >= p->f[i - 1], "fractions decrease");
    }
    cr_expect_eq(p->f[(p->n < 4096 ? p->n : 4096) - 1], 1.0);
}

/* The second call uploads nothing; an explicit upload reports progress and
 * is then reused; eviction and re-upload; a changed tensor in freed memory
 * is caught; staged uploads in small chunks give the same results. */
static void residency_on(mf_ctx *c, int staged)
{
    mft_rng r = mft_rng_make(__LINE__ + (uint64_t)staged);
    qd_variant v = {MF_TYPE_Q4_0, 0, MF_TYPE_F32};
    const int64_t N = 300, K = 256;
    qd_tensor q = qd_make(&r, &v, 1, N, K, 4, 1);
    float x[256], y0[300], y1[300];
    mft_fill_normal(&r, x, 256, 1.0f);
    mf_qmv_desc d = {.impl = MF_IMPL_REF};
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y0), MF_OK);
    d.impl = MF_IMPL_GPU;
    mf_weights_stats s0, s1, s2;
    mf_weights_stats_get(c, &s0);
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y1), MF_OK);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.uploads, s0.uploads + 1);
    cr_expect_gt(s1.uploaded_bytes, s0.uploaded_bytes);
    cr_expect_eq(s1.tensors, s0.tensors + 1);
    cr_expect_geq(s1.resident_bytes, s1.uploaded_bytes - s0.uploaded_bytes);
    float y2[300];
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y2), MF_OK);
    mf_weights_stats_get(c, &s2);
    cr_expect_eq(s2.uploads, s1.uploads, "second call uploaded");
    cr_expect_eq(s2.uploaded_bytes, s1.uploaded_bytes);
    cr_expect_eq(memcmp(y1, y2, sizeof y1), 0);
    double S = 0;
    for (int i = 0; i < 300; i++)
        S = fmax(S, fabs(y0[i]));
    for (int i = 0; i < 300; i++)
        cr_expect(fabs(y1[i] - y0[i]) <= 1e-4 * S, "y[%d] %g vs %g", i,
                  (double)y1[i], (double)y0[i]);

    /* evict, then an explicit upload with progress */
    cr_assert_eq(mf_weights_evict(c, &q.t), MF_OK);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.tensors, s2.tensors - 1);
    cr_expect_gt(s1.evictions, s2.evictions);
    static prog_log pl;
    pl.n = 0;
    cr_assert_eq(mf_weights_upload(c, &q.t, on_progress, &pl), MF_OK);
    check_progress(&pl, staged ? 3 : 1);
    mf_weights_stats_get(c, &s2);
    cr_expect_eq(s2.uploads, s1.uploads + 1);
    /* already resident: no copy, one 1.0 */
    pl.n = 0;
    cr_assert_eq(mf_weights_upload(c, &q.t, on_progress, &pl), MF_OK);
    cr_expect_eq(pl.n, 1);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.uploads, s2.uploads);
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y2), MF_OK);
    cr_expect_eq(memcmp(y1, y2, sizeof y1), 0, "after the explicit upload");
    mf_weights_stats_get(c, &s2);
    cr_expect_eq(s2.uploads, s1.uploads);

    /* by range: any byte of the codes */
    cr_assert_eq(mf_weights_evict_range(c, (unsigned char *)q.data + 100, 1),
                 MF_OK);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.tensors, s2.tensors - 1);
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y2), MF_OK);

    /* implicit entry, memory rewritten with other codes: caught, uploaded
     * again, the result follows the new values */
    unsigned char *bytes = q.data;
    for (int i = 0; i < 16; i++)
        bytes[2 + i] ^= 0x5a;
    mf_weights_stats_get(c, &s1);
    d.impl = MF_IMPL_REF;
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y0), MF_OK);
    d.impl = MF_IMPL_GPU;
    cr_assert_eq(mf_qmv(c, &d, &q.t, x, 1, y2), MF_OK);
    mf_weights_stats_get(c, &s2);
    cr_expect_eq(s2.uploads, s1.uploads + 1, "stale copy not caught");
    cr_expect(fabs(y2[0] - y0[0]) <= 1e-4 * S, "y[0] %g vs %g", (double)y2[0],
              (double)y0[0]);
    mf_weights_evict(c, NULL);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.tensors, 0);
    cr_expect_eq(s1.resident_bytes, 0);
    qd_free(&q);
}

Test(gpu_quant, residency)
{
    mf_ctx *c = mft_gpu_ctx(0);
    residency_on(c, 0);
    mft_gpu_ctx_done(c);
}

/* Uploads through the staging buffers, in 4 KiB chunks (many chunks, both
 * buffers in turn): every format dequantizes bit-identically. */
Test(gpu_quant, staged_upload)
{
    setenv("MOEFUSE_GPU_UPLOAD", "staged", 1);
    setenv("MOEFUSE_GPU_UPLOAD_CHUNK", "4096", 1);
    mf_ctx *c = mft_gpu_ctx(0);
    residency_on(c, 1); /* the variables are read at the first upload */
    unsetenv("MOEFUSE_GPU_UPLOAD");
    unsetenv("MOEFUSE_GPU_UPLOAD_CHUNK");
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant vs[32];
    int nv = qd_variants(vs, 32);
    for (int vi = 0; vi < nv; vi += 2)
        dequant_case(c, &r, &vs[vi], 3, 37, 256, (size_t)(vi % 3) * 5,
                     MF_TYPE_F32, MF_ACT_NONE);
    mft_gpu_ctx_done(c);
}

/* Device OOM at upload: the GPU call fails with MF_ERR_DEVICE_OOM, nothing
 * becomes resident, the CPU keeps working, and the next GPU call uploads
 * and succeeds. Then OOM while the op's buffers are made (after the
 * upload), and a lost device. */
Test(gpu_quant, device_oom)
{
    mf_ctx *c = mft_gpu_ctx(0);
    mf_gpu *g = mft_gpu_of(c);
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_MLX_Q4, 64, MF_TYPE_F16};
    qd_tensor q = qd_make(&r, &v, 1, 40, 128, 0, 0);
    float x[128], y[40], yc[40];
    mft_fill_normal(&r, x, 128, 1.0f);
    mf_weights_stats s0, s1;
    mf_weights_stats_get(c, &s0);
    mf_qmv_desc d = {.impl = MF_IMPL_GPU};
    mf_gpu_inject_fault(g, MF_GPU_FAULT_OOM);
    memset(y, 0x7f, sizeof y);
    cr_expect_eq(mf_qmv(c, &d, &q.t, x, 1, y), MF_ERR_DEVICE_OOM);
    for (int i = 0; i < 40; i++)
        cr_expect_eq(y[i], y[0], "output written on error");
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.tensors, s0.tensors);
    cr_expect_eq(s1.uploads, s0.uploads);
    d.impl = MF_IMPL_CPU;
    cr_expect_eq(mf_qmv(c, &d, &q.t, x, 1, yc), MF_OK);
    d.impl = MF_IMPL_AUTO;
    cr_expect_eq(mf_qmv(c, &d, &q.t, x, 1, y), MF_OK);
    d.impl = MF_IMPL_GPU;
    cr_expect_eq(mf_qmv(c, &d, &q.t, x, 1, y), MF_OK);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.uploads, s0.uploads + 1);
    /* explicit upload under OOM */
    mf_weights_evict(c, NULL);
    mf_gpu_inject_fault(g, MF_GPU_FAULT_OOM);
    cr_expect_eq(mf_weights_upload(c, &q.t, NULL, NULL), MF_ERR_DEVICE_OOM);
    mf_weights_stats_get(c, &s1);
    cr_expect_eq(s1.tensors, 0);
    /* resident, then OOM on the call's own buffers (a new shape) */
    cr_assert_eq(mf_weights_upload(c, &q.t, NULL, NULL), MF_OK);
    mf_gpu_inject_fault(g, MF_GPU_FAULT_OOM);
    float x2[2 * 128], y2[2 * 40];
    mft_fill_normal(&r, x2, 256, 1.0f);
    cr_expect_eq(mf_qmv(c, &d, &q.t, x2, 2, y2), MF_ERR_DEVICE_OOM);
    cr_expect_eq(mf_qmv(c, &d, &q.t, x2, 2, y2), MF_OK);
    /* a lost device: the GPU call reports it, AUTO and CPU calls work */
    mf_gpu_inject_fault(g, MF_GPU_FAULT_LOST);
    cr_expect_eq(mf_qmv(c, &d, &q.t, x, 1, y), MF_ERR_DEVICE_LOST);
    cr_expect_eq(mf_weights_upload(c, &q.t, NULL, NULL), MF_ERR_DEVICE_LOST);
    d.impl = MF_IMPL_AUTO;
    cr_expect_eq(mf_qmv(c, &d, &q.t, x, 1, y), MF_OK);
    cr_expect_eq(memcmp(y, yc, sizeof y), 0);
    mf_weights_evict(c, NULL);
    qd_free(&q);
    mft_gpu_ctx_done(c);
}

/* Every error path of the residency API, with and without a GPU. */
Test(gpu_quant, weights_api_errors)
{
    mft_rng r = mft_rng_make(__LINE__);
    qd_variant v = {MF_TYPE_Q8_0, 0, MF_TYPE_F32};
    qd_tensor q = qd_make(&r, &v, 1, 4, 64, 0, 0);
    mf_weights_stats st;
    /* no GPU (mft_ctx is CPU-only) */
    mf_ctx *cpu = mft_ctx();
    cr_expect_eq(mf_weights_upload(NULL, &q.t, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_upload(cpu, NULL, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_upload(cpu, &q.t, NULL, NULL), MF_ERR_UNSUPPORTED);
    mf_tensor bad = q.t;
    bad.k = 48; /* not a multiple of the block */
    cr_expect_eq(mf_weights_upload(cpu, &bad, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict(NULL, &q.t), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict(cpu, &bad), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict(cpu, &q.t), MF_OK);
    cr_expect_eq(mf_weights_evict(cpu, NULL), MF_OK);
    cr_expect_eq(mf_weights_evict_range(NULL, q.data, 4), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict_range(cpu, NULL, 4), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict_range(cpu, q.data, 0), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict_range(cpu, q.data, 4), MF_OK);
    cr_expect_eq(mf_weights_stats_get(NULL, &st), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_stats_get(cpu, NULL), MF_ERR_INVALID_ARG);
    memset(&st, 0x55, sizeof st);
    cr_expect_eq(mf_weights_stats_get(cpu, &st), MF_OK);
    cr_expect(st.tensors == 0 && st.resident_bytes == 0 && st.uploads == 0 &&
                  st.uploaded_bytes == 0 && st.evictions == 0,
              "CPU-only stats not zero");
    bad = q.t;
    bad.type = (mf_type)99;
    cr_expect_eq(mf_weights_upload(cpu, &bad, NULL, NULL), MF_ERR_UNSUPPORTED);
    /* with a GPU: the same validation first */
    mf_ctx *c = mft_gpu_ctx(0);
    bad = q.t;
    bad.k = 48;
    cr_expect_eq(mf_weights_upload(c, &bad, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_upload(c, NULL, NULL, NULL), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict(c, &bad), MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_weights_evict_range(c, q.data, 0), MF_ERR_INVALID_ARG);
    mf_weights_stats_get(c, &st);
    cr_expect_eq(st.tensors, 0);
    cr_expect_eq(mf_weights_upload(c, &q.t, NULL, NULL), MF_OK);
    mf_weights_stats_get(c, &st);
    cr_expect_eq(st.tensors, 1);
    mft_gpu_ctx_done(c);
    qd_free(&q);
}
