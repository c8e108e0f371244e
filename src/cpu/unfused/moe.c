/* Unfused expert ops: what a plain engine runs for each (token, slot) pair.
 * Gate/up: dequantize the whole expert matrices to f32 (reference dequant,
 * row by row), OpenBLAS sgemv, then a bias pass, an activation pass and a
 * multiply pass. Down: dequantize, sgemv, bias pass, then the combine as
 * separate scale, sum and residual passes. Every product and sum is rounded
 * to f32 in slot order, as mf_combine's exact sequence. The prec field is
 * ignored: the f32 result is the EXACT one. */
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

mf_status mf_unfused_moe_gate_up(const mf_moe_gate_up_desc *d, int64_t T,
                                 int32_t k, const float *x,
                                 const int32_t *idx, float *h)
{
    const mf_kernels *kern = mf_kernels_get(MF_ISA_SCALAR);
    const mf_tensor *wg = d->w_gate;
    const int sep = d->layout == MF_GLU_SEPARATE;
    const int64_t H = wg->k, N = wg->n, F = sep ? N : N / 2;
    /* Matrices: Wg [N, H] and (separate) Wu [F, H]; vectors gu [N], u [F],
     * g [F]. */
    size_t mat = (size_t)N * (size_t)H + (sep ? (size_t)F * (size_t)H : 0);
    float *Wg = malloc((mat + (size_t)N + 2 * (size_t)F) * sizeof(float));
    if (!Wg)
        return MF_ERR_OUT_OF_MEMORY;
    float *Wu = Wg + (size_t)N * (size_t)H;
    float *gu = Wg + mat, *g = gu + N, *u = g + F;

    for (int64_t p = 0; p < T * k; p++) {
        const int64_t t = p / k, e = idx[p];
        const float *xt = x + t * H;
        dequant_expert(kern, wg, e, Wg);
        gemv(Wg, N, H, xt, gu);
        if (d->b_gate)
            bias_pass(gu, d->b_gate + e * N, N);
        float *gv = gu, *uv = gu + F; /* CONCAT: halves of one vector */
        if (sep) {
            dequant_expert(kern, d->w_up, e, Wu);
            gemv(Wu, F, H, xt, u);
            if (d->b_up)
                bias_pass(u, d->b_up + e * F, F);
            uv = u;
        } else if (d->layout == MF_GLU_INTERLEAVED) {
            for (int64_t i = 0; i < F; i++) { /* split the alternating rows */
                g[i] = gu[2 * i];
                u[i] = gu[2 * i + 1];
            }
            gv = g;
            uv = u;
        }
        act_pass(d, gv, F);
        if (d->glu == MF_GLU_SWIGLU_OAI)
            oai_up_pass(d, uv, F);
        mul_pass(gv, uv, h + p * F, F);
    }
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
    const int64_t H = wd->n, F = wd->k;
    /* Wd [H, F], the expert's output o [H], the running sum acc [H]. */
    float *Wd = malloc(((size_t)H * (size_t)F + 2 * (size_t)H) *
                       sizeof(float));
    if (!Wd)
        return MF_ERR_OUT_OF_MEMORY;
    float *o = Wd + (size_t)H * (size_t)F, *acc = o + H;

    for (int64_t t = 0; t < T; t++) {
        for (int32_t j = 0; j < k; j++) {
            const int64_t p = t * k + j, e = idx[p];
            dequant_expert(kern, wd, e, Wd);
            gemv(Wd, H, F, h + p * F, o);
            if (d->b_down)
                bias_pass(o, d->b_down + e * H, H);
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
    free(Wd);
    return MF_OK;
}
