/* The fused expert ops mf_moe_gate_up and mf_moe_down_combine: every CPU
 * impl, MF_IMPL_REF and MF_IMPL_UNFUSED against a naive double-precision
 * oracle written here (its own weight decoder, matvec, glu and combine in
 * double), for Q4_0, Q8_0, MLX Q4 (g64, bf16 scales), MLX Q8 (g64, f16
 * scales) and F16 weights, both precisions, three shapes, T = 1, 3, 32,
 * routing spread out or piled on a few experts; then non-finite inputs and
 * every error path.
 *
 * Tolerances (per output, from ops.h):
 *  - Dot products, EXACT: ops.h allows 2^-22 * K * S of the reference, S =
 *    sum_i |w_i x_i|; the reference itself sums sequentially in f32, within
 *    K * 2^-24 * S of the exact value. Against the oracle every impl gets
 *    2^-21 * K * S (the two added, rounded up).
 *  - INT8 adds ops.h's quantization bound: sum over blocks of |w_blk|_1 *
 *    d_x / 2, d_x = the block's absmax / 127 (taken 0.01% larger for the f32
 *    rounding of the scale). Float weights take the EXACT path under INT8.
 *  - Bias add: half an ulp of the biased value (2^-24 |v|).
 *  - glu: an error e_g on g and e_u on u moves a(g) u by at most
 *    L e_g (|u| + 1 + e_u) + |a(g)| e_u, with L = 1.25 bounding |a'| of every
 *    activation (silu' <= 1.0999, gelu' <= 1.129, OAI's g sigmoid(alpha g)
 *    likewise <= 1.0999; the clamps are 1-Lipschitz); the glu's own f32
 *    rounding (8 ulp of ops.h plus the reference's few) is covered by
 *    2^-20 |a(g)| (|u| + 1).
 *  - Combine: sum_j |w_j| e_j (each slot's error) + (k + 1) * 2^-23 *
 *    (sum_j |w_j v_j| + |residual|) (ops.h's combine bound, doubled).
 *  - Every impl against MF_IMPL_REF: twice the oracle bound (both lie within
 *    it). MF_IMPL_SCALAR runs the reference kernels on the thread pool: it
 *    must equal MF_IMPL_REF bit for bit, whatever the split.
 *  - MF_IMPL_UNFUSED (whole dequantization + sgemv) ignores prec: checked
 *    with the EXACT bound. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "src/cpu/unfused/unfused.h"

/* ------------------------------------------------------------ oracle -- */

static float ld_f16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return mf_f16_to_f32(v);
}

static float ld_param(mf_type st, const void *arr, size_t i)
{
    const unsigned char *p = arr;
    if (st == MF_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t v;
    memcpy(&v, p + 2 * i, 2);
    return st == MF_TYPE_F16 ? mf_f16_to_f32(v) : mf_bf16_to_f32(v);
}

/* Row r of t decoded to the f32 values the format defines (FACTS.md). */
static void decode_row(const mf_tensor *t, int64_t r, double *out)
{
    size_t rb = mf_tensor_row_bytes(t->type, t->k);
    const unsigned char *row = (const unsigned char *)t->data +
                               (size_t)r * (t->row_stride ? t->row_stride : rb);
    int64_t K = t->k;
    switch (t->type) {
    case MF_TYPE_F16:
        for (int64_t i = 0; i < K; i++)
            out[i] = ld_f16(row + 2 * i);
        break;
    case MF_TYPE_Q4_0:
        for (int64_t b = 0; b < K / 32; b++) {
            const unsigned char *blk = row + 18 * b;
            float d = ld_f16(blk);
            for (int j = 0; j < 16; j++) {
                out[32 * b + j] = d * (float)((blk[2 + j] & 15) - 8);
                out[32 * b + j + 16] = d * (float)((blk[2 + j] >> 4) - 8);
            }
        }
        break;
    case MF_TYPE_Q8_0:
        for (int64_t b = 0; b < K / 32; b++) {
            const unsigned char *blk = row + 34 * b;
            float d = ld_f16(blk);
            for (int j = 0; j < 32; j++)
                out[32 * b + j] = d * (float)(int8_t)blk[2 + j];
        }
        break;
    default: { /* MLX: w = round(round(scale * q) + bias) */
        int bits = t->type == MF_TYPE_MLX_Q4 ? 4 : 8;
        for (int64_t i = 0; i < K; i++) {
            uint32_t word;
            memcpy(&word, row + 4 * (i * bits / 32), 4);
            uint32_t q = (word >> (i * bits % 32)) & ((1u << bits) - 1);
            size_t gi = (size_t)(r * (K / t->group_size) + i / t->group_size);
            float p = ld_param(t->scale_type, t->scales, gi) * (float)q;
            float w = p + ld_param(t->scale_type, t->biases, gi);
            out[i] = w;
        }
        break;
    }
    }
}

/* All rows of t, decoded: [e * n, k]. */
static double *decode_all(const mf_tensor *t)
{
    int64_t rows = t->e * t->n;
    double *w = malloc((size_t)(rows * t->k) * sizeof(double));
    cr_assert_not_null(w);
    for (int64_t r = 0; r < rows; r++)
        decode_row(t, r, w + r * t->k);
    return w;
}

/* INT8 activation scale of each block of 32 of a row (absmax / 127). */
static void block_scales(const float *x, int64_t K, double *dx)
{
    for (int64_t b = 0; b < K / 32; b++) {
        double m = 0;
        for (int j = 0; j < 32; j++)
            m = fmax(m, fabs((double)x[32 * b + j]));
        dx[b] = m / 127.0 * 1.0001;
    }
}

/* One dot product of a decoded row with x, with its error bound. */
typedef struct dot_d {
    double v, err;
} dot_d;

static dot_d dot_oracle(const double *w, const float *x, int64_t K,
                        const double *dx, double bias)
{
    double s = 0, mag = 0, q8 = 0;
    for (int64_t i = 0; i < K; i++) {
        s += w[i] * x[i];
        mag += fabs(w[i] * x[i]);
    }
    if (dx)
        for (int64_t b = 0; b < K / 32; b++) {
            double l1 = 0;
            for (int j = 0; j < 32; j++)
                l1 += fabs(w[32 * b + j]);
            q8 += l1 * dx[b] / 2;
        }
    dot_d r;
    r.v = s + bias;
    r.err = ldexp(1.0, -21) * (double)K * mag + q8 + ldexp(fabs(r.v), -24);
    return r;
}

static double act_d(mf_glu_kind kind, double g, double alpha)
{
    switch (kind) {
    case MF_GLU_SWIGLU: return g / (1 + exp(-g));
    case MF_GLU_GEGLU_TANH:
        return 0.5 * g *
               (1 + tanh(sqrt(2 / 3.14159265358979323846) *
                         (g + 0.044715 * g * g * g)));
    case MF_GLU_GEGLU_ERF: return 0.5 * g * (1 + erf(g / sqrt(2.0)));
    default: return g / (1 + exp(-alpha * g));
    }
}

/* glu(g, u) with the bound of an output whose inputs carry errors eg, eu. */
static dot_d glu_oracle(mf_glu_kind kind, double limit, double alpha,
                        dot_d g, dot_d u)
{
    double gv = g.v, uv = u.v, up1;
    if (kind == MF_GLU_SWIGLU_OAI) {
        gv = fmin(gv, limit);
        uv = fmax(fmin(uv, limit), -limit);
        up1 = uv + 1;
    } else {
        up1 = uv;
    }
    double a = act_d(kind, gv, alpha);
    const double L = 1.25;
    dot_d r;
    r.v = a * up1;
    r.err = L * g.err * (fabs(uv) + 1 + u.err) + fabs(a) * u.err +
            ldexp(fabs(a) * (fabs(uv) + 1), -20) + 1e-30;
    return r;
}

/* --------------------------------------------------------- test data -- */

typedef struct fmt {
    mf_type type;
    int32_t group; /* MLX: 64, or 32 where K is not a multiple of 64 */
    mf_type st;
} fmt;

static const fmt fmts[] = {
    {MF_TYPE_Q4_0, 0, MF_TYPE_F32},
    {MF_TYPE_Q8_0, 0, MF_TYPE_F32},
    {MF_TYPE_MLX_Q4, 64, MF_TYPE_BF16},
    {MF_TYPE_MLX_Q8, 64, MF_TYPE_F16},
    {MF_TYPE_F16, 0, MF_TYPE_F32},
};
#define N_FMTS ((int)(sizeof fmts / sizeof fmts[0]))

static int is_mlx(mf_type t)
{
    return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8;
}

static int is_float(mf_type t) { return t == MF_TYPE_F16; }

/* A weight stack [e, n, K] of format f, its rows copied `pad` bytes apart
 * beyond their dense size into a buffer starting `offset` bytes past a
 * 64-byte boundary (unaligned, strided rows). */
typedef struct wt {
    mft_qtensor q;
    void *rows;
    mf_tensor t;
} wt;

static wt make_weights(mft_rng *r, const fmt *f, int64_t e, int64_t n,
                       int64_t K, size_t pad, size_t offset)
{
    wt w;
    int mlx = is_mlx(f->type);
    int32_t g = mlx ? (K % f->group ? 32 : f->group) : 0;
    w.q = mft_qtensor_random(r, f->type, e, n, K, g,
                             mlx ? f->st : MF_TYPE_F32);
    size_t rb = mf_tensor_row_bytes(f->type, K), stride = rb + pad;
    w.rows = mft_alloc((size_t)(e * n) * stride, offset);
    for (int64_t i = 0; i < e * n; i++)
        memcpy((unsigned char *)w.rows + (size_t)i * stride,
               (unsigned char *)w.q.data + (size_t)i * rb, rb);
    w.t = w.q.t;
    w.t.data = w.rows;
    w.t.row_stride = pad ? stride : 0;
    return w;
}

static void free_weights(wt *w)
{
    mft_free(w->rows);
    mft_qtensor_free(&w->q);
}

/* Routing: SPREAD gives each token k distinct experts at random (as the
 * gating op does); PILE draws every slot from the first three experts, with
 * repeats across tokens and within a token, so one expert serves many
 * tokens in one call. */
enum { SPREAD = 0, PILE = 1 };

static void make_idx(mft_rng *r, int32_t *idx, int64_t T, int32_t k,
                     int64_t E, int mode)
{
    for (int64_t t = 0; t < T; t++) {
        int32_t *it = idx + t * k;
        for (int32_t j = 0; j < k; j++) {
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
}

/* Guard floats after each output, checked for their poison. */
#define GUARD 16

static void expect_guard(const float *p, const char *what)
{
    unsigned char poison[GUARD * sizeof(float)];
    memset(poison, 0xA5, sizeof poison);
    cr_expect(memcmp(p, poison, sizeof poison) == 0,
              "%s: written past its end", what);
}

/* ---------------------------------------------------------- gate / up -- */

typedef struct gu_cfg {
    int64_t E, H, F;
    int32_t k;
    mf_glu_layout layout;
    mf_glu_kind kind;
    float limit, alpha;  /* desc values (0 = defaults) */
    float bias_range;    /* biases uniform in +-range; 0 = no biases */
} gu_cfg;

static const char *impl_str(mf_impl i) { return mf_impl_name(i); }

/* Compares got [n] with the oracle; returns the count of failures. */
static int compare(const float *got, const double *want, const double *tol,
                   int64_t n, double tol_scale, const char *what)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= tol[i] * tol_scale)) {
            if (bad < 3)
                cr_log_error("%s: [%lld] got %.9g want %.9g (tol %.3g)", what,
                             (long long)i, (double)got[i], want[i],
                             tol[i] * tol_scale);
            bad++;
        }
    }
    return bad;
}

static void run_gate_up(const gu_cfg *c, const fmt *f, int64_t T, int route,
                        uint64_t stream)
{
    mft_rng r = mft_rng_make(stream);
    const int sep = c->layout == MF_GLU_SEPARATE;
    const int64_t E = c->E, H = c->H, F = c->F, N = sep ? F : 2 * F;
    const int32_t k = c->k;
    const int64_t P = T * k;
    size_t pad = (size_t)mft_int(&r, 0, 1) * 6;
    wt wg = make_weights(&r, f, E, N, H, pad, (size_t)mft_int(&r, 1, 3));
    wt wu;
    if (sep)
        wu = make_weights(&r, f, E, F, H, 0, (size_t)mft_int(&r, 0, 3));
    float *x = mft_alloc((size_t)(T * H) * 4, 4 * (size_t)mft_int(&r, 1, 3));
    mft_fill_normal(&r, x, (size_t)(T * H), 1.0f);
    int32_t *idx = mft_alloc((size_t)P * 4, 4 * (size_t)mft_int(&r, 1, 3));
    make_idx(&r, idx, T, k, E, route);
    float *bg = NULL, *bu = NULL;
    if (c->bias_range > 0) {
        bg = mft_alloc((size_t)(E * N) * 4, 4);
        mft_fill_uniform(&r, bg, (size_t)(E * N), -c->bias_range,
                         c->bias_range);
        if (sep) {
            bu = mft_alloc((size_t)(E * F) * 4, 8);
            mft_fill_uniform(&r, bu, (size_t)(E * F), -c->bias_range,
                             c->bias_range);
        }
    }

    /* Oracle and bounds for both precisions. */
    double *Dg = decode_all(&wg.t), *Du = sep ? decode_all(&wu.t) : NULL;
    double *want = malloc((size_t)(P * F) * sizeof(double));
    double *tol[2];
    tol[0] = malloc((size_t)(P * F) * sizeof(double));
    tol[1] = malloc((size_t)(P * F) * sizeof(double));
    double *dx = malloc((size_t)(T * (H / 32)) * sizeof(double));
    for (int64_t t = 0; t < T; t++)
        block_scales(x + t * H, H, dx + t * (H / 32));
    const double limit = c->limit != 0 ? c->limit : 7.0;
    const double alpha = c->alpha != 0 ? c->alpha : 1.702;
    for (int64_t p = 0; p < P; p++) {
        const int64_t t = p / k, e = idx[p];
        for (int64_t n = 0; n < F; n++) {
            int64_t rg, ru;
            const double *U = sep ? Du : Dg;
            if (sep) {
                rg = ru = e * F + n;
            } else if (c->layout == MF_GLU_CONCAT) {
                rg = e * N + n;
                ru = rg + F;
            } else {
                rg = e * N + 2 * n;
                ru = rg + 1;
            }
            double bgv = bg ? bg[rg] : 0, buv = sep ? (bu ? bu[ru] : 0)
                                                    : (bg ? bg[ru] : 0);
            for (int pr = 0; pr < 2; pr++) {
                const double *d8 = pr && !is_float(f->type)
                                       ? dx + t * (H / 32) : NULL;
                dot_d g = dot_oracle(Dg + rg * H, x + t * H, H, d8, bgv);
                dot_d u = dot_oracle(U + ru * H, x + t * H, H, d8, buv);
                dot_d o = glu_oracle(c->kind, limit, alpha, g, u);
                want[p * F + n] = o.v;
                tol[pr][p * F + n] = o.err;
            }
        }
    }

    mf_moe_gate_up_desc d = {.glu = c->kind, .limit = c->limit,
                             .alpha = c->alpha, .layout = c->layout,
                             .w_gate = &wg.t, .w_up = sep ? &wu.t : NULL,
                             .b_gate = bg, .b_up = bu};
    const size_t hb = (size_t)(P * F) * 4;
    float *h_ref = mft_alloc(hb + GUARD * 4, 0);
    float *h = mft_alloc(hb + GUARD * 4, 4 * (size_t)mft_int(&r, 1, 3));
    double *ref_d = malloc((size_t)(P * F) * sizeof(double));
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_UNFUSED;
    char what[160];
    for (int pr = 0; pr < 2; pr++) {
        d.prec = (mf_precision)pr;
        d.impl = MF_IMPL_REF;
        snprintf(what, sizeof what, "gate_up %s %s T=%lld E=%lld k=%d %s",
                 mf_type_name(f->type), pr ? "int8" : "exact", (long long)T,
                 (long long)E, k, "ref");
        cr_assert_eq(mf_moe_gate_up(mft_ctx(), &d, T, k, x, idx, h_ref),
                     MF_OK, "%s", what);
        cr_expect_eq(compare(h_ref, want, tol[pr], P * F, 1.0, what), 0,
                     "%s vs oracle", what);
        expect_guard(h_ref + P * F, what);
        for (int64_t i = 0; i < P * F; i++)
            ref_d[i] = h_ref[i];
        for (int ii = 0; ii < ni; ii++) {
            d.impl = impls[ii];
            memset(h, 0xA5, hb + GUARD * 4);
            snprintf(what, sizeof what, "gate_up %s %s T=%lld E=%lld k=%d %s",
                     mf_type_name(f->type), pr ? "int8" : "exact",
                     (long long)T, (long long)E, k, impl_str(d.impl));
            cr_assert_eq(mf_moe_gate_up(mft_ctx(), &d, T, k, x, idx, h),
                         MF_OK, "%s", what);
            const double *tl = d.impl == MF_IMPL_UNFUSED ? tol[0] : tol[pr];
            cr_expect_eq(compare(h, want, tl, P * F, 1.0, what), 0,
                         "%s vs oracle", what);
            if (d.impl != MF_IMPL_UNFUSED)
                cr_expect_eq(compare(h, ref_d, tol[pr], P * F, 2.0, what), 0,
                             "%s vs ref", what);
            if (d.impl == MF_IMPL_SCALAR)
                cr_expect(memcmp(h, h_ref, hb) == 0,
                          "%s: differs from ref", what);
            expect_guard(h + P * F, what);
        }
    }

    free(Dg);
    free(Du);
    free(want);
    free(ref_d);
    free(tol[0]);
    free(tol[1]);
    free(dx);
    mft_free(h);
    mft_free(h_ref);
    mft_free(bg);
    mft_free(bu);
    mft_free(idx);
    mft_free(x);
    free_weights(&wg);
    if (sep)
        free_weights(&wu);
}

static const int64_t Ts[] = {1, 3, 32};

static void gate_up_all(const gu_cfg *c, uint64_t stream)
{
    for (int fi = 0; fi < N_FMTS; fi++)
        for (int ti = 0; ti < 3; ti++)
            for (int route = 0; route < 2; route++)
                run_gate_up(c, &fmts[fi], Ts[ti], route,
                            stream * 1000 + (uint64_t)(fi * 10 + ti * 2 + route));
}

Test(moe, gate_up_small_swiglu_separate)
{
    gu_cfg c = {8, 64, 96, 2, MF_GLU_SEPARATE, MF_GLU_SWIGLU, 0, 0, 0.5f};
    gate_up_all(&c, __LINE__);
}

Test(moe, gate_up_small_geglu_concat)
{
    gu_cfg c = {8, 64, 96, 2, MF_GLU_CONCAT, MF_GLU_GEGLU_TANH, 0, 0, 0};
    gate_up_all(&c, __LINE__);
    c.kind = MF_GLU_GEGLU_ERF;
    c.bias_range = 1.0f;
    gate_up_all(&c, __LINE__);
}

Test(moe, gate_up_odd_k_equals_e)
{
    gu_cfg c = {5, 96, 32, 5, MF_GLU_SEPARATE, MF_GLU_SWIGLU, 0, 0, 0};
    gate_up_all(&c, __LINE__);
}

/* GPT-OSS style: interleaved gate/up rows, biases wide enough that the
 * clamps at +-limit are hit, SWIGLU_OAI with default and explicit
 * limit/alpha. */
Test(moe, gate_up_gpt_oss_style)
{
    gu_cfg c = {4, 64, 64, 2, MF_GLU_INTERLEAVED, MF_GLU_SWIGLU_OAI, 0, 0,
                10.0f};
    gate_up_all(&c, __LINE__);
    c.limit = 5.0f;
    c.alpha = 1.25f;
    c.E = 6;
    c.k = 3;
    gate_up_all(&c, __LINE__);
}

/* ------------------------------------------------------------- down -- */

typedef struct dn_cfg {
    int64_t E, H, F;
    int32_t k;
    float bias_range; /* 0 = no biases */
} dn_cfg;

enum { RES_NONE = 0, RES_SEPARATE = 1, RES_INPLACE = 2 };

static void run_down(const dn_cfg *c, const fmt *f, int64_t T, int route,
                     int res_mode, uint64_t stream)
{
    mft_rng r = mft_rng_make(stream);
    const int64_t E = c->E, H = c->H, F = c->F, P = T * c->k;
    const int32_t k = c->k;
    size_t pad = (size_t)mft_int(&r, 0, 1) * 10;
    wt wd = make_weights(&r, f, E, H, F, pad, (size_t)mft_int(&r, 0, 3));
    float *h = mft_alloc((size_t)(P * F) * 4, 4 * (size_t)mft_int(&r, 1, 3));
    mft_fill_normal(&r, h, (size_t)(P * F), 1.0f);
    int32_t *idx = mft_alloc((size_t)P * 4, 4 * (size_t)mft_int(&r, 1, 3));
    make_idx(&r, idx, T, k, E, route);
    float *w = mft_alloc((size_t)P * 4, 4 * (size_t)mft_int(&r, 1, 3));
    mft_fill_uniform(&r, w, (size_t)P, 0.0f, 1.0f);
    float *bd = NULL;
    if (c->bias_range > 0) {
        bd = mft_alloc((size_t)(E * H) * 4, 12);
        mft_fill_uniform(&r, bd, (size_t)(E * H), -c->bias_range,
                         c->bias_range);
    }
    float *res = NULL;
    if (res_mode != RES_NONE) {
        res = mft_alloc((size_t)(T * H) * 4, 4);
        mft_fill_normal(&r, res, (size_t)(T * H), 2.0f);
    }

    double *D = decode_all(&wd.t);
    double *want = malloc((size_t)(T * H) * sizeof(double));
    double *tol[2];
    tol[0] = malloc((size_t)(T * H) * sizeof(double));
    tol[1] = malloc((size_t)(T * H) * sizeof(double));
    double *dh = malloc((size_t)(P * (F / 32)) * sizeof(double));
    for (int64_t p = 0; p < P; p++)
        block_scales(h + p * F, F, dh + p * (F / 32));
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H; i++)
            for (int pr = 0; pr < 2; pr++) {
                double sum = 0, err = 0, mag = 0;
                for (int32_t j = 0; j < k; j++) {
                    int64_t p = t * k + j, row = idx[p] * H + i;
                    const double *d8 = pr && !is_float(f->type)
                                           ? dh + p * (F / 32) : NULL;
                    dot_d v = dot_oracle(D + row * F, h + p * F, F, d8,
                                         bd ? bd[row] : 0);
                    sum += w[p] * v.v;
                    err += w[p] * v.err;
                    mag += fabs(w[p] * v.v);
                }
                double rv = res ? res[t * H + i] : 0;
                want[t * H + i] = sum + rv;
                tol[pr][t * H + i] =
                    err + (k + 1) * ldexp(mag + fabs(rv), -23) + 1e-30;
            }

    mf_moe_down_desc d = {.w_down = &wd.t, .b_down = bd};
    const size_t yb = (size_t)(T * H) * 4;
    float *y_ref = mft_alloc(yb + GUARD * 4, 0);
    float *y = res_mode == RES_INPLACE ? mft_alloc(yb + GUARD * 4, 8)
                                       : mft_alloc(yb + GUARD * 4, 4);
    double *ref_d = malloc((size_t)(T * H) * sizeof(double));
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_UNFUSED;
    char what[160];
    for (int pr = 0; pr < 2; pr++) {
        d.prec = (mf_precision)pr;
        for (int ii = -1; ii < ni; ii++) {
            d.impl = ii < 0 ? MF_IMPL_REF : impls[ii];
            float *out = ii < 0 ? y_ref : y;
            memset(out, 0xA5, yb + GUARD * 4);
            const float *rp = res;
            if (res_mode == RES_INPLACE) {
                memcpy(out, res, yb);
                rp = out;
            }
            snprintf(what, sizeof what,
                     "down %s %s T=%lld E=%lld k=%d res=%d %s",
                     mf_type_name(f->type), pr ? "int8" : "exact",
                     (long long)T, (long long)E, k, res_mode,
                     impl_str(d.impl));
            cr_assert_eq(mf_moe_down_combine(mft_ctx(), &d, T, k, h, idx, w,
                                             rp, out),
                         MF_OK, "%s", what);
            const double *tl = d.impl == MF_IMPL_UNFUSED ? tol[0] : tol[pr];
            cr_expect_eq(compare(out, want, tl, T * H, 1.0, what), 0,
                         "%s vs oracle", what);
            if (ii < 0)
                for (int64_t i = 0; i < T * H; i++)
                    ref_d[i] = y_ref[i];
            else if (d.impl != MF_IMPL_UNFUSED)
                cr_expect_eq(compare(out, ref_d, tol[pr], T * H, 2.0, what),
                             0, "%s vs ref", what);
            if (d.impl == MF_IMPL_SCALAR)
                cr_expect(memcmp(out, y_ref, yb) == 0,
                          "%s: differs from ref", what);
            expect_guard(out + T * H, what);
        }
    }

    free(D);
    free(want);
    free(ref_d);
    free(tol[0]);
    free(tol[1]);
    free(dh);
    mft_free(y);
    mft_free(y_ref);
    mft_free(res);
    mft_free(bd);
    mft_free(w);
    mft_free(idx);
    mft_free(h);
    free_weights(&wd);
}

static void down_all(const dn_cfg *c, uint64_t stream)
{
    for (int fi = 0; fi < N_FMTS; fi++)
        for (int ti = 0; ti < 3; ti++)
            for (int route = 0; route < 2; route++)
                run_down(c, &fmts[fi], Ts[ti], route, (fi + ti + route) % 3,
                         stream * 1000 + (uint64_t)(fi * 10 + ti * 2 + route));
}

Test(moe, down_small)
{
    dn_cfg c = {8, 64, 96, 2, 0};
    down_all(&c, __LINE__);
}

Test(moe, down_odd_k_equals_e)
{
    dn_cfg c = {5, 96, 32, 5, 0};
    down_all(&c, __LINE__);
}

Test(moe, down_gpt_oss_style_biases)
{
    dn_cfg c = {4, 64, 64, 2, 3.0f};
    down_all(&c, __LINE__);
}

/* Every residual mode on one shape and format. */
Test(moe, down_residual_modes)
{
    dn_cfg c = {8, 64, 96, 2, 0.5f};
    for (int m = 0; m < 3; m++)
        for (int ti = 0; ti < 3; ti++)
            run_down(&c, &fmts[0], Ts[ti], PILE, m,
                     (uint64_t)__LINE__ * 1000 + (uint64_t)(m * 3 + ti));
}

/* The unfused baseline takes a call in chunks of tokens when its buffers
 * would pass their bound (each chunk groups its own pairs by expert and
 * dequantizes its experts again): a bound of 2048 floats makes T = 32 run
 * in chunks of 1 to 8 tokens, checked like every other path. */
Test(moe, unfused_chunked)
{
    const size_t keep = mf_unfused_moe_chunk_floats;
    mf_unfused_moe_chunk_floats = 2048;
    gu_cfg g = {8, 64, 96, 2, MF_GLU_CONCAT, MF_GLU_SWIGLU, 0, 0, 0.5f};
    for (int route = 0; route < 2; route++)
        run_gate_up(&g, &fmts[0], 32, route, (uint64_t)__LINE__ * 10 + route);
    dn_cfg d = {5, 96, 32, 5, 0.5f};
    for (int m = 0; m < 3; m++)
        run_down(&d, &fmts[0], 32, PILE, m, (uint64_t)__LINE__ * 10 + m);
    mf_unfused_moe_chunk_floats = keep;
}

/* ------------------------------------------------------- non-finite -- */

/* A NaN in token 1's activations makes every output of token 1 NaN (in
 * INT8 too: its block's scale is NaN) and leaves the other tokens finite. */
Test(moe, gate_up_nan_propagates)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t E = 8, H = 64, F = 96, T = 3;
    const int32_t k = 2;
    const mf_glu_kind kinds[2] = {MF_GLU_SWIGLU, MF_GLU_SWIGLU_OAI};
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_REF;
    impls[ni++] = MF_IMPL_UNFUSED;
    for (int fi = 0; fi < N_FMTS; fi++) {
        wt wg = make_weights(&r, &fmts[fi], E, F, H, 0, 0);
        wt wu = make_weights(&r, &fmts[fi], E, F, H, 0, 0);
        float x[3 * 64];
        int32_t idx[6];
        float h[6 * 96];
        mft_fill_normal(&r, x, (size_t)(T * H), 1.0f);
        x[H + 17] = NAN;
        make_idx(&r, idx, T, k, E, SPREAD);
        for (int ki = 0; ki < 2; ki++)
            for (int pr = 0; pr < 2; pr++)
                for (int ii = 0; ii < ni; ii++) {
                    mf_moe_gate_up_desc d = {
                        .impl = impls[ii], .prec = (mf_precision)pr,
                        .glu = kinds[ki], .w_gate = &wg.t, .w_up = &wu.t};
                    cr_assert_eq(mf_moe_gate_up(mft_ctx(), &d, T, k, x, idx,
                                                h),
                                 MF_OK);
                    int nan_ok = 1, fin_ok = 1;
                    for (int64_t p = 0; p < T * k; p++)
                        for (int64_t n = 0; n < F; n++) {
                            float v = h[p * F + n];
                            if (p / k == 1)
                                nan_ok &= isnan(v) != 0;
                            else
                                fin_ok &= isfinite(v) != 0;
                        }
                    cr_expect(nan_ok, "%s %s %s: NaN lost",
                              mf_type_name(fmts[fi].type),
                              impl_str(impls[ii]), pr ? "int8" : "exact");
                    cr_expect(fin_ok, "%s %s: NaN leaked to other tokens",
                              mf_type_name(fmts[fi].type),
                              impl_str(impls[ii]));
                }
        free_weights(&wg);
        free_weights(&wu);
    }
}

/* A NaN in one slot's h makes its token's outputs NaN; an infinite
 * residual element gives an infinite output there only. */
Test(moe, down_nonfinite)
{
    mft_rng r = mft_rng_make(__LINE__);
    const int64_t E = 8, H = 64, F = 96, T = 3;
    const int32_t k = 2;
    mf_impl impls[8];
    int ni = mft_cpu_impls(impls);
    impls[ni++] = MF_IMPL_REF;
    impls[ni++] = MF_IMPL_UNFUSED;
    for (int fi = 0; fi < N_FMTS; fi++) {
        wt wd = make_weights(&r, &fmts[fi], E, H, F, 0, 0);
        float h[6 * 96], w[6], res[3 * 64], y[3 * 64];
        int32_t idx[6];
        mft_fill_normal(&r, h, (size_t)(T * k * F), 1.0f);
        mft_fill_uniform(&r, w, 6, 0.25f, 1.0f);
        mft_fill_normal(&r, res, (size_t)(T * H), 1.0f);
        h[3 * F + 40] = NAN;     /* token 1, slot 1 */
        res[2 * H + 9] = INFINITY; /* token 2, element 9 */
        make_idx(&r, idx, T, k, E, SPREAD);
        for (int pr = 0; pr < 2; pr++)
            for (int ii = 0; ii < ni; ii++) {
                mf_moe_down_desc d = {.impl = impls[ii],
                                      .prec = (mf_precision)pr,
                                      .w_down = &wd.t};
                cr_assert_eq(mf_moe_down_combine(mft_ctx(), &d, T, k, h, idx,
                                                 w, res, y),
                             MF_OK);
                int ok = 1;
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = 0; i < H; i++) {
                        float v = y[t * H + i];
                        if (t == 1)
                            ok &= isnan(v) != 0;
                        else if (t == 2 && i == 9)
                            ok &= isinf(v) && v > 0;
                        else
                            ok &= isfinite(v) != 0;
                    }
                cr_expect(ok, "%s %s %s: non-finite handling",
                          mf_type_name(fmts[fi].type), impl_str(impls[ii]),
                          pr ? "int8" : "exact");
            }
        free_weights(&wd);
    }
}

/* ------------------------------------------------------- bad inputs -- */

/* Each case changes one argument of a valid call; the status must be the
 * documented one and the output must stay as it was. */
Test(moe, gate_up_errors)
{
    mft_rng r = mft_rng_make(__LINE__);
    enum { E = 8, H = 64, F = 96, T = 3, K = 2 };
    wt wg = make_weights(&r, &fmts[0], E, F, H, 0, 0);
    wt wu = make_weights(&r, &fmts[0], E, F, H, 0, 0);
    wt wc = make_weights(&r, &fmts[0], E, 2 * F, H, 0, 0);
    float *x = mft_alloc(T * H * 4, 0), *bg = mft_alloc(E * 2 * F * 4, 0);
    mft_fill_normal(&r, x, T * H, 1.0f);
    mft_fill_uniform(&r, bg, E * 2 * F, -1, 1);
    int32_t idx[T * K] = {0, 1, 2, 3, 7, 4};
    float *h = mft_alloc(T * K * F * 4, 0);
    unsigned char poison[T * K * F * 4];
    memset(poison, 0xA5, sizeof poison);
    mf_ctx *ctx = mft_ctx();
    const mf_moe_gate_up_desc ok = {.w_gate = &wg.t, .w_up = &wu.t};
    mf_moe_gate_up_desc d;
#define GU_EXPECT(st, call)                                                 \
    do {                                                                    \
        cr_expect_eq((call), (st), "line %d", __LINE__);                    \
        cr_expect(memcmp(h, poison, sizeof poison) == 0,                    \
                  "line %d: output written on error", __LINE__);            \
    } while (0)

    d = ok;
    cr_assert_eq(mf_moe_gate_up(ctx, &d, T, K, x, idx, h), MF_OK);
    memset(h, 0xA5, sizeof poison);
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(NULL, &d, T, K, x, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, NULL, T, K, x, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, NULL, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, NULL, h));
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, x, idx, NULL),
                 MF_ERR_INVALID_ARG);
    /* T and k limits */
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, 0, K, x, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, -1, K, x, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_gate_up(ctx, &d, 65537, K, x, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, 0, x, idx, h));
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, 1, E + 1, x, idx,
                                                 h));
    /* enums */
    d = ok; d.impl = MF_IMPL_COUNT_;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d = ok; d.impl = (mf_impl)-1;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d = ok; d.prec = MF_PREC_COUNT_;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d = ok; d.glu = MF_GLU_KIND_COUNT_;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d = ok; d.layout = MF_GLU_LAYOUT_COUNT_;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    /* SWIGLU_OAI parameters */
    d = ok; d.glu = MF_GLU_SWIGLU_OAI; d.limit = NAN;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d.limit = -1.0f;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d.limit = 0; d.alpha = INFINITY;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    /* expert indices */
    int32_t bad[T * K];
    memcpy(bad, idx, sizeof bad);
    bad[4] = E;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &ok, T, K, x, bad, h));
    bad[4] = -1;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &ok, T, K, x, bad, h));
    bad[4] = INT32_MIN;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &ok, T, K, x, bad, h));
    /* weights */
    d = ok; d.w_gate = NULL;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d = ok; d.w_up = NULL;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    mf_tensor t2 = wu.t;
    t2.type = MF_TYPE_Q8_0; /* other type (its rows would be larger) */
    d = ok; d.w_up = &t2;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    t2 = wu.t; t2.n = F - 32;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    t2 = wu.t; t2.k = H - 32;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    t2 = wu.t; t2.e = E - 1;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    t2 = wg.t; t2.k = H - 16; /* not whole Q4_0 blocks */
    d = ok; d.w_gate = &t2;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    t2 = wg.t; t2.type = (mf_type)99;
    GU_EXPECT(MF_ERR_UNSUPPORTED, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    t2 = wg.t; t2.e = 4097; /* over the expert limit (never read) */
    d.w_up = NULL; d.layout = MF_GLU_CONCAT;
    t2.n = 2 * F;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    /* concatenated layouts: one tensor, even rows, no b_up */
    d = ok; d.layout = MF_GLU_CONCAT; d.w_gate = &wc.t; d.w_up = NULL;
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, x, idx, h), MF_OK);
    memset(h, 0xA5, sizeof poison);
    d.w_up = &wu.t;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d.w_up = NULL; d.b_up = bg;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    d.b_up = NULL; d.layout = MF_GLU_INTERLEAVED;
    t2 = wc.t; t2.n = 2 * F - 1;
    d.w_gate = &t2;
    GU_EXPECT(MF_ERR_INVALID_ARG, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    /* overlaps of h with the inputs */
    d = ok;
    float *big = mft_alloc((T * K * F + T * H) * 4, 0);
    memcpy(big, x, T * H * 4);
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, big, idx, big + 1),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, big + T * K * F - 1, idx,
                                big),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, x, idx, (float *)(void *)idx),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, x, idx,
                                (float *)wg.rows + 5),
                 MF_ERR_INVALID_ARG);
    d.b_gate = big;
    cr_expect_eq(mf_moe_gate_up(ctx, &d, T, K, x, idx, big + 7),
                 MF_ERR_INVALID_ARG);
    /* impls this machine or build lacks */
    d = ok; d.impl = MF_IMPL_GPU;
    GU_EXPECT(MF_ERR_UNSUPPORTED, mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++)
        if (!ci.isa_available[i]) {
            d.impl = i == MF_ISA_AVX2 ? MF_IMPL_AVX2
                     : i == MF_ISA_AVX512 ? MF_IMPL_AVX512
                                          : MF_IMPL_NEON;
            GU_EXPECT(MF_ERR_UNSUPPORTED,
                      mf_moe_gate_up(ctx, &d, T, K, x, idx, h));
        }
#undef GU_EXPECT
    mft_free(big);
    mft_free(h);
    mft_free(x);
    mft_free(bg);
    free_weights(&wg);
    free_weights(&wu);
    free_weights(&wc);
}

Test(moe, down_errors)
{
    mft_rng r = mft_rng_make(__LINE__);
    enum { E = 8, H = 64, F = 96, T = 3, K = 2 };
    wt wd = make_weights(&r, &fmts[2], E, H, F, 0, 0);
    float *h = mft_alloc(T * K * F * 4, 0), *res = mft_alloc(T * H * 4, 0);
    float *bd = mft_alloc(E * H * 4, 0);
    mft_fill_normal(&r, h, T * K * F, 1.0f);
    mft_fill_normal(&r, res, T * H, 1.0f);
    mft_fill_normal(&r, bd, E * H, 1.0f);
    int32_t idx[T * K] = {0, 1, 2, 3, 7, 4};
    float w[T * K] = {0.5f, 0.5f, 0.25f, 0.75f, 1, 0};
    float *y = mft_alloc(T * H * 4, 0);
    unsigned char poison[T * H * 4];
    memset(poison, 0xA5, sizeof poison);
    mf_ctx *ctx = mft_ctx();
    const mf_moe_down_desc ok = {.w_down = &wd.t, .b_down = bd};
    mf_moe_down_desc d = ok;
#define DN_EXPECT(st, call)                                                 \
    do {                                                                    \
        cr_expect_eq((call), (st), "line %d", __LINE__);                    \
        cr_expect(memcmp(y, poison, sizeof poison) == 0,                    \
                  "line %d: output written on error", __LINE__);            \
    } while (0)

    cr_assert_eq(mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y), MF_OK);
    memset(y, 0xA5, sizeof poison);
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(NULL, &d, T, K, h, idx, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, NULL, T, K, h, idx, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, NULL, idx, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, NULL, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, NULL, res, y));
    cr_expect_eq(mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, NULL),
                 MF_ERR_INVALID_ARG);
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, 0, K, h, idx, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, 65537, K, h, idx, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, 0, h, idx, w, res, y));
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, 1, E + 1, h, idx, w, res, y));
    d = ok; d.impl = MF_IMPL_COUNT_;
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
    d = ok; d.prec = (mf_precision)-1;
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
    d = ok; d.w_down = NULL;
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
    mf_tensor t2 = wd.t;
    t2.group_size = 48; /* not an MLX group size */
    d.w_down = &t2;
    DN_EXPECT(MF_ERR_UNSUPPORTED,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
    t2 = wd.t; t2.scales = NULL;
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
    t2 = wd.t; t2.e = 5000; /* over the expert limit (never read) */
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
    int32_t bad[T * K];
    memcpy(bad, idx, sizeof bad);
    bad[5] = E;
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &ok, T, K, h, bad, w, res, y));
    bad[5] = -1;
    DN_EXPECT(MF_ERR_INVALID_ARG,
              mf_moe_down_combine(ctx, &ok, T, K, h, bad, w, res, y));
    /* overlaps: y with h, w, idx, the bias, the weights, or part of the
     * residual (only y == residual is allowed) */
    float *big = mft_alloc((T * K * F + T * H) * 4, 0);
    memcpy(big, h, T * K * F * 4);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, big, idx, w, res,
                                     big + T * K * F - 1),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, h, idx, w, res, w),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, h, idx, w, res,
                                     (float *)(void *)idx),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, h, idx, w, res,
                                     bd + 5),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, h, idx, w, res,
                                     (float *)wd.q.scales + 1),
                 MF_ERR_INVALID_ARG);
    memcpy(big, res, T * H * 4);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, h, idx, w, big,
                                     big + 1),
                 MF_ERR_INVALID_ARG);
    cr_expect_eq(mf_moe_down_combine(ctx, &ok, T, K, h, idx, w, big, big),
                 MF_OK);
    d = ok; d.impl = MF_IMPL_GPU;
    DN_EXPECT(MF_ERR_UNSUPPORTED,
              mf_moe_down_combine(ctx, &d, T, K, h, idx, w, res, y));
#undef DN_EXPECT
    mft_free(big);
    mft_free(y);
    mft_free(h);
    mft_free(res);
    mft_free(bd);
    free_weights(&wd);
}

/* Enough tokens that the call scratch (quantized activations, expert
 * groups, per-thread result blocks) outgrows the stack buffer and comes
 * from the heap. */
Test(moe, many_tokens_heap_scratch)
{
    gu_cfg g = {8, 64, 96, 2, MF_GLU_SEPARATE, MF_GLU_SWIGLU, 0, 0, 0.5f};
    dn_cfg c = {8, 64, 96, 2, 0.5f};
    for (int fi = 0; fi < 3; fi += 2)
        for (int route = 0; route < 2; route++) {
            uint64_t s = (uint64_t)__LINE__ * 1000 + (uint64_t)(fi * 2 + route);
            run_gate_up(&g, &fmts[fi], 640, route, s);
            run_down(&c, &fmts[fi], 640, route, RES_INPLACE, s);
        }
}
