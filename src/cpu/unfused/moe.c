/* Unfused expert ops: what a plain engine runs. The (token, slot) pairs of a
 * call are grouped by expert; each expert that has pairs is dequantized once
 * to f32 (reference dequant, row by row), then OpenBLAS multiplies it with
 * its pairs' activations: sgemv for one pair, sgemm for several (at T = 1
 * every expert has one pair: the per-pair sgemv of a plain decode step).
 * Gate/up: then a bias pass, an activation pass and a multiply pass per
 * pair. Down: bias pass, then the combine as separate scale, sum and
 * residual passes per token, in slot order (mf_combine's exact sequence).
 * Buffers are bounded (mf_unfused_moe_chunk_floats); a call with more pairs than fit is
 * taken in chunks of tokens, each dequantizing its experts again. The prec
 * field is ignored: the f32 result is the EXACT one. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"
#include "unfused.h"

/* Dequantizes expert e's n rows of w into out [n, w->k]. */
static void dequant_expert(const mf_kernels *kern, const mf_tensor *w,
                           int64_t e, float *out)
{
    for (int64_t r = 0; r < w->n; r++)
        kern->dequant_row(w, e * w->n + r, out + r * w->k);
}

/* y [n] = W [n, K] x [K]. */
static void gemv(const float *W, int64_t n, int64_t K, const float *x,
                 float *y)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)K, 1.0f, W,
                (int)K, x, 1, 0.0f, y, 1);
}

static void bias_pass(float *y, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = y[i] + b[i];
}

/* Comparisons keep NaN (min/clamp of NaN is NaN). */
static float min_keep_nan(float v, float hi) { return v > hi ? hi : v; }

static void act_pass(const mf_moe_gate_up_desc *d, float *g, int64_t n)
{
    const float limit = d->limit != 0 ? d->limit : 7.0f;
    const float alpha = d->alpha != 0 ? d->alpha : 1.702f;
    for (int64_t i = 0; i < n; i++) {
        float v = g[i];
        switch (d->glu) {
        case MF_GLU_SWIGLU: v = v / (1.0f + expf(-v)); break;
        case MF_GLU_GEGLU_TANH:
            v = 0.5f * v *
                (1.0f + tanhf(0.7978845608f * (v + 0.044715f * v * v * v)));
            break;
        case MF_GLU_GEGLU_ERF:
            v = 0.5f * v * (1.0f + erff(v * 0.70710678f));
            break;
        default: /* SWIGLU_OAI: clamp, then g * sigmoid(alpha g) */
            v = min_keep_nan(v, limit);
            v = v / (1.0f + expf(-alpha * v));
            break;
        }
        g[i] = v;
    }
}

/* SWIGLU_OAI's up side: clamp to [-limit, limit], plus one. */
static void oai_up_pass(const mf_moe_gate_up_desc *d, float *u, int64_t n)
{
    const float limit = d->limit != 0 ? d->limit : 7.0f;
    for (int64_t i = 0; i < n; i++) {
        float v = min_keep_nan(u[i], limit);
        v = v < -limit ? -limit : v;
        u[i] = v + 1.0f;
    }
}

static void mul_pass(const float *a, const float *u, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * u[i];
}

size_t mf_unfused_moe_chunk_floats = (size_t)256 << 20;

/* The pairs [p0, p1) grouped by expert: order lists them expert by expert
 * (in pair order within an expert), start [E + 1] the groups' bounds. */
static void group_pairs(const int32_t *idx, int64_t p0, int64_t p1, int64_t E,
                        int64_t *order, int64_t *start)
{
    memset(start, 0, (size_t)(E + 1) * sizeof *start);
    for (int64_t p = p0; p < p1; p++)
        start[idx[p] + 1]++;
    for (int64_t e = 0; e < E; e++)
        start[e + 1] += start[e];
    for (int64_t p = p0; p < p1; p++)
        order[start[idx[p]]++] = p;
    for (int64_t e = E; e > 0; e--) /* back to the groups' first entries */
        start[e] = start[e - 1];
    start[0] = 0;
}

/* X [n, width] = the rows ps[i] / per of src (per = k: a pair's token). */
static void gather_rows(float *X, const float *src, const int64_t *ps,
                        int64_t n, int64_t per, int64_t width)
{
    for (int64_t i = 0; i < n; i++)
        memcpy(X + i * width, src + (ps[i] / per) * width,
               (size_t)width * sizeof(float));
}

/* Y [n, N] = X [n, K] W [N, K]^T: sgemv for one row, sgemm for more. */
static void mul_rows(const float *W, int64_t N, int64_t K, const float *X,
                     int64_t n, float *Y)
{
    if (n == 1)
        gemv(W, N, K, X, Y);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)N,
                    (int)K, 1.0f, X, (int)K, W, (int)K, 0.0f, Y, (int)N);
}

/* Tokens per chunk so that its pairs' rows of `width` floats (twice: the
 * gathered inputs and the outputs) stay within the bound; >= 1. */
static int64_t chunk_tokens(int64_t T, int32_t k, int64_t width)
{
    int64_t c = (int64_t)(mf_unfused_moe_chunk_floats /
                          (2 * (size_t)k * (size_t)width));
    return c < 1 ? 1 : c > T ? T : c;
}

mf_status mf_unfused_moe_gate_up(const mf_moe_gate_up_desc *d, int64_t T,
                                 int32_t k, const float *x,
                                 const int32_t *idx, float *h)
{
    const mf_kernels *kern = mf_kernels_get(MF_ISA_SCALAR);
    const mf_tensor *wg = d->w_gate;
    const int sep = d->layout == MF_GLU_SEPARATE;
    const int64_t H = wg->k, N = wg->n, F = sep ? N : N / 2, E = wg->e;
    const int64_t Tc = chunk_tokens(T, k, N + F > H ? N + F : H);
    const size_t Pc = (size_t)Tc * (size_t)k;
    /* Matrices Wg [N, H] and (separate) Wu [F, H]; per chunk the gathered
     * activations X [Pc, H], GU [Pc, N], U [Pc, F] (separate); vectors g
     * and u [F] (interleaved rows split). */
    size_t mat = (size_t)N * (size_t)H + (sep ? (size_t)F * (size_t)H : 0);
    size_t nf = mat + Pc * ((size_t)H + (size_t)N + (size_t)F) + 2 * (size_t)F;
    float *Wg = malloc(nf * sizeof(float));
    int64_t *order = malloc((Pc + (size_t)E + 1) * sizeof *order);
    if (!Wg || !order) {
        free(Wg);
        free(order);
        return MF_ERR_OUT_OF_MEMORY;
    }
    int64_t *start = order + Pc;
    float *Wu = Wg + (size_t)N * (size_t)H;
    float *X = Wg + mat, *GU = X + Pc * (size_t)H, *U = GU + Pc * (size_t)N;
    float *g = U + Pc * (size_t)F, *u = g + F;

    for (int64_t t0 = 0; t0 < T; t0 += Tc) {
        const int64_t p0 = t0 * k, p1 = (t0 + Tc < T ? t0 + Tc : T) * k;
        group_pairs(idx, p0, p1, E, order, start);
        for (int64_t e = 0; e < E; e++) {
            const int64_t *ps = order + start[e];
            const int64_t n = start[e + 1] - start[e];
            if (!n)
                continue;
            gather_rows(X, x, ps, n, k, H);
            dequant_expert(kern, wg, e, Wg);
            mul_rows(Wg, N, H, X, n, GU);
            if (sep) {
                dequant_expert(kern, d->w_up, e, Wu);
                mul_rows(Wu, F, H, X, n, U);
            }
            for (int64_t i = 0; i < n; i++) {
                const int64_t p = ps[i];
                float *gu = GU + i * N, *gv = gu, *uv = gu + F;
                if (d->b_gate)
                    bias_pass(gu, d->b_gate + e * N, N);
                if (sep) { /* CONCAT: halves of one vector */
                    uv = U + i * F;
                    if (d->b_up)
                        bias_pass(uv, d->b_up + e * F, F);
                } else if (d->layout == MF_GLU_INTERLEAVED) {
                    for (int64_t j = 0; j < F; j++) { /* split the rows */
                        g[j] = gu[2 * j];
                        u[j] = gu[2 * j + 1];
                    }
                    gv = g;
                    uv = u;
                }
                act_pass(d, gv, F);
                if (d->glu == MF_GLU_SWIGLU_OAI)
                    oai_up_pass(d, uv, F);
                mul_pass(gv, uv, h + p * F, F);
            }
        }
    }
    free(order);
    free(Wg);
    return MF_OK;
}

mf_status mf_unfused_moe_down_combine(const mf_moe_down_desc *d, int64_t T,
                                      int32_t k, const float *h,
                                      const int32_t *idx, const float *w,
                                      const float *residual, float *y)
{
    const mf_kernels *kern = mf_kernels_get(MF_ISA_SCALAR);
    const mf_tensor *wd = d->w_down;
    const int64_t H = wd->n, F = wd->k, E = wd->e;
    const int64_t Tc = chunk_tokens(T, k, H > F ? H : F);
    const size_t Pc = (size_t)Tc * (size_t)k;
    /* Wd [H, F]; per chunk the gathered inputs X [Pc, F] and the expert
     * outputs O [Pc, H] (in group order), each pair's row in O (slot), the
     * running sum acc [H]. */
    size_t nf = (size_t)H * (size_t)F + Pc * ((size_t)F + (size_t)H) + (size_t)H;
    float *Wd = malloc(nf * sizeof(float));
    int64_t *order = malloc((2 * Pc + (size_t)E + 1) * sizeof *order);
    if (!Wd || !order) {
        free(Wd);
        free(order);
        return MF_ERR_OUT_OF_MEMORY;
    }
    int64_t *slot = order + Pc, *start = slot + Pc;
    float *X = Wd + (size_t)H * (size_t)F, *O = X + Pc * (size_t)F;
    float *acc = O + Pc * (size_t)H;

    for (int64_t t0 = 0; t0 < T; t0 += Tc) {
        const int64_t t1 = t0 + Tc < T ? t0 + Tc : T;
        const int64_t p0 = t0 * k, p1 = t1 * k;
        group_pairs(idx, p0, p1, E, order, start);
        for (int64_t e = 0; e < E; e++) {
            const int64_t *ps = order + start[e];
            const int64_t n = start[e + 1] - start[e];
            if (!n)
                continue;
            gather_rows(X, h, ps, n, 1, F);
            for (int64_t i = 0; i < n; i++)
                slot[ps[i] - p0] = start[e] + i;
            dequant_expert(kern, wd, e, Wd);
            float *Oe = O + start[e] * H;
            mul_rows(Wd, H, F, X, n, Oe);
            if (d->b_down)
                for (int64_t i = 0; i < n; i++)
                    bias_pass(Oe + i * H, d->b_down + e * H, H);
        }
        for (int64_t t = t0; t < t1; t++) {
            for (int32_t j = 0; j < k; j++) {
                const int64_t p = t * k + j;
                float *o = O + slot[p - p0] * H;
                for (int64_t i = 0; i < H; i++) /* scale pass */
                    o[i] = w[p] * o[i];
                if (j == 0) /* sum pass */
                    memcpy(acc, o, (size_t)H * sizeof(float));
                else
                    for (int64_t i = 0; i < H; i++)
                        acc[i] = acc[i] + o[i];
            }
            float *yt = y + t * H;
            if (residual) { /* residual pass (y may be residual) */
                const float *rt = residual + t * H;
                for (int64_t i = 0; i < H; i++)
                    yt[i] = acc[i] + rt[i];
            } else {
                memcpy(yt, acc, (size_t)H * sizeof(float));
            }
        }
    }
    free(order);
    free(Wd);
    return MF_OK;
}
