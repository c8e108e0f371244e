/* The profiler: the grid of op variants and sizes, timing with warm-up and
 * a stop once the median is stable, the GPU's fixed costs, model fitting
 * (see profile.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "costmodel.h"
#include "profile.h"

/* ------------------------------------------------------------------ grid -- */

static const int64_t T_QUICK[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32};
static const int64_t T_FULL[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128};
static const int64_t E_QUICK[] = {1, 2, 4, 8, 16};
static const int64_t E_FULL[] = {1, 2, 4, 8, 16, 32};

typedef struct vdef {
    int full_only;
    mf_op_id op;
    int mode;
    mf_type wtype;
    int64_t E, k, N, K;
    const char *what; /* model or role, for the label */
} vdef;

/* The variants: the models of FACTS.md at their decode shapes. The size
 * axis is T (E for dequant_act, whose E here counts experts). */
static const vdef VARIANTS[] = {
    {0, MF_OP_GATING, MF_GATING_SOFTMAX_TOPK, MF_TYPE_F32, 128, 8, 0, 0, "Qwen3"},
    {0, MF_OP_GATING, MF_GATING_SIGMOID_GROUPED, MF_TYPE_F32, 256, 8, 0, 0, "DeepSeek-V3"},
    {1, MF_OP_GATING, MF_GATING_TOPK_SOFTMAX, MF_TYPE_F32, 8, 2, 0, 0, "Mixtral"},
    {1, MF_OP_GATING, MF_GATING_TOPK_SOFTMAX, MF_TYPE_F32, 32, 4, 0, 0, "GPT-OSS"},
    {1, MF_OP_GATING, MF_GATING_SOFTMAX_TOPK, MF_TYPE_F32, 64, 8, 0, 0, "OLMoE"},

    {0, MF_OP_COMBINE, 0, MF_TYPE_F32, 0, 8, 2048, 0, "Qwen3-30B"},
    {1, MF_OP_COMBINE, 0, MF_TYPE_F32, 0, 2, 4096, 0, "Mixtral"},
    {1, MF_OP_COMBINE, 0, MF_TYPE_F32, 0, 8, 7168, 0, "DeepSeek-V3"},
    {1, MF_OP_COMBINE, 1, MF_TYPE_F32, 0, 8, 2048, 0, "Qwen3-30B exact"},

    {0, MF_OP_GLU, MF_GLU_SWIGLU, MF_TYPE_F32, 0, 0, 768, 0, "Qwen3-30B"},
    {0, MF_OP_GLU, MF_GLU_SWIGLU, MF_TYPE_F32, 0, 0, 14336, 0, "Mixtral"},
    {1, MF_OP_GLU, MF_GLU_SWIGLU_OAI, MF_TYPE_F32, 0, 0, 2880, 0, "GPT-OSS"},
    {1, MF_OP_GLU, MF_GLU_GEGLU_TANH, MF_TYPE_F32, 0, 0, 2048, 0, ""},
    {1, MF_OP_GLU, MF_GLU_SWIGLU, MF_TYPE_F16, 0, 0, 1536, 0, "Qwen3-235B"},

    {0, MF_OP_DEQUANT, MF_ACT_NONE, MF_TYPE_Q4_0, 0, 0, 768, 2048, "Qwen3-30B expert"},
    {1, MF_OP_DEQUANT, MF_ACT_NONE, MF_TYPE_Q8_0, 0, 0, 768, 2048, "Qwen3-30B expert"},
    {1, MF_OP_DEQUANT, MF_ACT_NONE, MF_TYPE_MLX_Q4, 0, 0, 768, 2048, "Qwen3-30B expert"},
    {1, MF_OP_DEQUANT, MF_ACT_NONE, MF_TYPE_MLX_Q8, 0, 0, 768, 2048, "Qwen3-30B expert"},
    {1, MF_OP_DEQUANT, MF_ACT_NONE, MF_TYPE_BF16, 0, 0, 768, 2048, "Qwen3-30B expert"},
    {1, MF_OP_DEQUANT, MF_ACT_SILU, MF_TYPE_Q4_0, 0, 0, 768, 2048, "Qwen3-30B expert"},

    {0, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_Q4_0, 1, 0, 2048, 768, "expert down"},
    {0, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_Q4_0, 1, 0, 768, 2048, "expert gate"},
    {1, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_Q8_0, 1, 0, 2048, 768, "expert down"},
    {1, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_MLX_Q4, 1, 0, 2048, 768, "expert down"},
    {1, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_F16, 1, 0, 2048, 768, "expert down"},
    {1, MF_OP_QMV, MF_PREC_INT8, MF_TYPE_Q4_0, 1, 0, 2048, 768, "expert down"},
    {1, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_F32, 1, 0, 128, 2048, "router"},
    {1, MF_OP_QMV, MF_PREC_EXACT, MF_TYPE_Q4_0, 1, 0, 2048, 7168, "shared expert"},

    {0, MF_OP_MOE_GATE_UP, MF_GLU_SWIGLU, MF_TYPE_Q4_0, 128, 8, 768, 2048, "Qwen3-30B"},
    {1, MF_OP_MOE_GATE_UP, MF_GLU_SWIGLU, MF_TYPE_Q8_0, 128, 8, 768, 2048, "Qwen3-30B"},
    {1, MF_OP_MOE_GATE_UP, MF_GLU_SWIGLU, MF_TYPE_MLX_Q4, 128, 8, 768, 2048, "Qwen3-30B"},
    {1, MF_OP_MOE_GATE_UP, MF_GLU_SWIGLU, MF_TYPE_Q4_0, 64, 8, 1024, 2048, "OLMoE"},
    {1, MF_OP_MOE_GATE_UP, MF_GLU_SWIGLU_OAI, MF_TYPE_MLX_Q4, 32, 4, 2880, 2880, "GPT-OSS"},
    {1, MF_OP_MOE_GATE_UP, MF_GLU_SWIGLU, MF_TYPE_Q4_0, 8, 2, 14336, 4096, "Mixtral"},

    {0, MF_OP_MOE_DOWN, 0, MF_TYPE_Q4_0, 128, 8, 2048, 768, "Qwen3-30B"},
    {1, MF_OP_MOE_DOWN, 0, MF_TYPE_Q8_0, 128, 8, 2048, 768, "Qwen3-30B"},
    {1, MF_OP_MOE_DOWN, 0, MF_TYPE_MLX_Q4, 128, 8, 2048, 768, "Qwen3-30B"},
    {1, MF_OP_MOE_DOWN, 0, MF_TYPE_Q4_0, 64, 8, 2048, 1024, "OLMoE"},
    {1, MF_OP_MOE_DOWN, 0, MF_TYPE_MLX_Q4, 32, 4, 2880, 2880, "GPT-OSS"},
    {1, MF_OP_MOE_DOWN, 0, MF_TYPE_Q4_0, 8, 2, 4096, 14336, "Mixtral"},
};

static const char *mode_name(mf_op_id op, int mode)
{
    static const char *const gating[] = {"softmax_topk", "topk_softmax",
                                         "sigmoid_grouped"};
    static const char *const glu[] = {"swiglu", "geglu_tanh", "geglu_erf",
                                      "swiglu_oai"};
    static const char *const act[] = {"", "silu", "gelu", "gelu_tanh"};
    switch (op) {
    case MF_OP_GATING: return gating[mode % 3];
    case MF_OP_GLU:
    case MF_OP_MOE_GATE_UP: return glu[mode % 4];
    case MF_OP_DEQUANT: return act[mode % 4];
    case MF_OP_QMV: return mode ? "int8" : "";
    case MF_OP_COMBINE: return mode ? "exact" : "";
    default: return "";
    }
}

int mf_prof_grid(int full, mf_prof_variant *out, int cap)
{
    int n = 0;
    for (size_t i = 0; i < sizeof VARIANTS / sizeof VARIANTS[0]; i++) {
        const vdef *d = &VARIANTS[i];
        if (d->full_only && !full)
            continue;
        if (n >= cap)
            break;
        mf_prof_variant *v = &out[n++];
        memset(v, 0, sizeof *v);
        v->op = d->op;
        v->base = (mf_op_shape){.op = d->op, .T = 1, .E = d->E, .k = d->k,
                                .N = d->N, .K = d->K, .wtype = d->wtype,
                                .mode = d->mode};
        const int64_t *sz;
        size_t nsz;
        if (d->op == MF_OP_DEQUANT) {
            sz = full ? E_FULL : E_QUICK;
            nsz = full ? sizeof E_FULL / sizeof E_FULL[0]
                       : sizeof E_QUICK / sizeof E_QUICK[0];
        } else {
            sz = full ? T_FULL : T_QUICK;
            nsz = full ? sizeof T_FULL / sizeof T_FULL[0]
                       : sizeof T_QUICK / sizeof T_QUICK[0];
        }
        v->n_sizes = (int)nsz;
        memcpy(v->sizes, sz, nsz * sizeof *sz);
        const char *m = mode_name(d->op, d->mode);
        char dims[64];
        switch (d->op) {
        case MF_OP_GATING:
            snprintf(dims, sizeof dims, "E=%lld k=%lld", (long long)d->E,
                     (long long)d->k);
            break;
        case MF_OP_COMBINE:
            snprintf(dims, sizeof dims, "k=%lld D=%lld", (long long)d->k,
                     (long long)d->N);
            break;
        case MF_OP_GLU:
            snprintf(dims, sizeof dims, "%s n=%lld", mf_type_name(d->wtype),
                     (long long)d->N);
            break;
        case MF_OP_DEQUANT:
        case MF_OP_QMV:
            snprintf(dims, sizeof dims, "%s N=%lld K=%lld",
                     mf_type_name(d->wtype), (long long)d->N,
                     (long long)d->K);
            break;
        default:
            snprintf(dims, sizeof dims, "%s E=%lld k=%lld N=%lld K=%lld",
                     mf_type_name(d->wtype), (long long)d->E,
                     (long long)d->k, (long long)d->N, (long long)d->K);
        }
        snprintf(v->label, sizeof v->label, "%s%s%s (%s)", m, *m ? " " : "",
                 dims, d->what);
    }
    return n;
}

mf_op_shape mf_prof_shape(const mf_prof_variant *v, int64_t x)
{
    mf_op_shape s = v->base;
    if (v->op == MF_OP_DEQUANT)
        s.E = x;
    else
        s.T = x;
    return s;
}

/* ---------------------------------------------------------------- timing -- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_REPS 1001
#define MIN_REPS 10

/* Percentile q of sorted v[0..n-1] (nearest rank). */
static double pct(const double *v, int n, double q)
{
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

static double median_of(const double *s, int n, double *tmp)
{
    memcpy(tmp, s, (size_t)n * sizeof *s);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_dbl);
    return pct(tmp, n, 0.5);
}

/* One sample in microseconds. */
typedef mf_status (*sample_fn)(void *arg, double *us);

/* Two warm-up samples (one when the first takes a quarter of the budget),
 * then samples until the median moved by under 1% over each of the last two
 * runs of 5 samples (after MIN_REPS), the budget is spent (after 3),
 * MAX_REPS samples, or a stop request. Fills median, p10, p90 and reps (samples x `calls`,
 * the calls each sample averages). */
static mf_status sample(sample_fn f, void *arg, int calls, double budget_s,
                        volatile sig_atomic_t *stop, mf_pc_point *pt)
{
    double samples[MAX_REPS], tmp[MAX_REPS], us;
    double t0 = now_s();
    mf_status st;
    for (int i = 0; i < 2 && (i == 0 || now_s() - t0 < budget_s / 4); i++)
        if ((st = f(arg, &us)) != MF_OK)
            return st;
    int n = 0, stable = 0;
    double prev = -1;
    while (n < MAX_REPS) {
        if ((st = f(arg, &samples[n])) != MF_OK)
            return st;
        n++;
        if (stop && *stop)
            break;
        if (n >= MIN_REPS && n % 5 == 0) {
            double med = median_of(samples, n, tmp);
            stable = prev >= 0 && fabs(med - prev) <= 0.01 * med ? stable + 1
                                                                 : 0;
            if (stable >= 2)
                break;
            prev = med;
        }
        /* Past the budget: stop once there is a spread to report. */
        if (n >= 3 && now_s() - t0 > budget_s)
            break;
    }
    if (n < 3)
        return MF_ERR_IO; /* stopped before anything meaningful */
    memcpy(tmp, samples, (size_t)n * sizeof *tmp);
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_dbl);
    pt->median_us = pct(tmp, n, 0.5);
    pt->p10_us = pct(tmp, n, 0.1);
    pt->p90_us = pct(tmp, n, 0.9);
    pt->reps = n * calls;
    return MF_OK;
}

/* An op call through the public API; a sample is the mean of `inner`
 * calls, inner chosen so that a sample lasts >= 20 us. */
typedef struct op_arg {
    mf_prof_inst *in;
    mf_ctx *ctx;
    int64_t x;
    mf_impl impl;
    int rotate, inner;
} op_arg;

static mf_status op_sample(void *arg, double *us)
{
    op_arg *a = arg;
    double t = now_s();
    for (int i = 0; i < a->inner; i++) {
        mf_status st = mf_prof_inst_run(a->in, a->ctx, a->x, a->impl,
                                        a->rotate);
        if (st != MF_OK)
            return st;
    }
    *us = (now_s() - t) / a->inner * 1e6;
    return MF_OK;
}

/* Seconds of calls that bring an idle GPU's clocks up before a GPU point
 * is sampled: the GPU idles through the CPU points, and its SM clock drops
 * (an idle H100 reads 345 MHz). min(budget / 4, MOEFUSE_PROFILE_GPU_WARM_MS
 * or 50 ms); 0 turns it off. */
static double gpu_warm_s(double budget_s)
{
    const char *e = getenv("MOEFUSE_PROFILE_GPU_WARM_MS");
    double ms = e ? strtod(e, NULL) : 50.0;
    if (!(ms > 0))
        return 0;
    double w = ms / 1e3;
    return w < budget_s / 4 ? w : budget_s / 4;
}

/* Calls f for `seconds` (or until a stop request), its samples unused. */
static mf_status warm_up(sample_fn f, void *arg, double seconds,
                         volatile sig_atomic_t *stop)
{
    const double t0 = now_s();
    double us;
    mf_status st = MF_OK;
    while (st == MF_OK && now_s() - t0 < seconds && !*stop)
        st = f(arg, &us);
    return st;
}

/* warm: bring the GPU's clocks up first (GPU points; the first
 * measurement of a point). */
static mf_status time_point(op_arg *a, double budget_s, int warm,
                            volatile sig_atomic_t *stop, mf_pc_point *pt)
{
    a->inner = 1;
    double once;
    mf_status st = op_sample(a, &once);
    if (st != MF_OK)
        return st;
    if (a->impl == MF_IMPL_GPU && warm &&
        (st = warm_up(op_sample, a, gpu_warm_s(budget_s), stop)) != MF_OK)
        return st;
    int inner = once > 0 ? (int)ceil(20.0 / once) : 256;
    a->inner = inner < 1 ? 1 : (inner > 256 ? 256 : inner);
    return sample(op_sample, a, a->inner, budget_s, stop, pt);
}

__attribute__((format(printf, 2, 3))) static void
note(const mf_prof_opts *o, const char *fmt, ...);

/* The kernel forms of a GPU point's op (gpu.h: forms computing the same
 * bits), one after the other: each timed with the value 0 and with 1, the
 * forms before it at their chosen values, and its value the one
 * mf_pc_form_pick gives (the built-in choice within the noise). Leaves
 * the chosen forms forced on ctx for the point's own measurement; forms
 * the environment overrides are not measured. *warm: whether the GPU was
 * warmed. A form the device cannot run stays automatic (noted). */
static mf_status tune_forms(mf_ctx *ctx, op_arg *oa, const mf_op_shape *s,
                            double budget_s, const mf_prof_opts *o,
                            mf_placement *p, int *warm)
{
    ctx->forms_forced = 1;
    mf_gpu_forms_auto(&ctx->forms);
    for (int f = 0; f < MF_GPU_FORM_COUNT_ && !*o->stop; f++) {
        /* INT8 qmv runs other shaders: its forms are EXACT's */
        if (mf_gpu_form_op(f) != (int)s->op ||
            mf_gpu_form_env(f) != MF_GPU_FORM_AUTO ||
            (s->op == MF_OP_QMV && s->mode != MF_PREC_EXACT))
            continue;
        mf_pc_form pf = {.s = *s, .form = f};
        mf_status st = MF_OK;
        for (int v = 0; v < 2 && st == MF_OK; v++) {
            ctx->forms.v[f] = (int8_t)v;
            mf_pc_point tp;
            st = time_point(oa, budget_s, !*warm, o->stop, &tp);
            *warm = 1;
            pf.us[v] = tp.median_us;
        }
        if (*o->stop)
            break;
        if (st == MF_ERR_OUT_OF_MEMORY)
            return st;
        if (st != MF_OK) {
            note(o, "%s T=%lld: form %s not measured (%s)", mf_op_name(s->op),
                 (long long)s->T, mf_gpu_form_name(f), mf_status_str(st));
            ctx->forms.v[f] = MF_GPU_FORM_AUTO;
            continue;
        }
        if ((st = mf_placement_add_form(p, &pf)) != MF_OK)
            return st;
        ctx->forms.v[f] = (int8_t)mf_pc_form_pick(pf.us);
    }
    return MF_OK;
}

/* The GPU's own timings (bench helpers of the GPU side). */
typedef struct gpu_arg {
    mf_gpu *g;
    int op; /* -1: an empty submit; else replay of that op's last plan */
} gpu_arg;

static mf_status gpu_sample(void *arg, double *us)
{
    gpu_arg *a = arg;
    mf_gpu_timing t;
    mf_status st = a->op < 0 ? mf_gpu_bench_empty(a->g, &t)
                             : mf_gpu_bench_replay(a->g, (mf_gpu_op)a->op, &t);
    *us = t.host_us;
    return st;
}

_Static_assert((int)MF_GPU_OP_GATING == (int)MF_OP_GATING &&
                   (int)MF_GPU_OP_MOE_DOWN == (int)MF_OP_MOE_DOWN &&
                   (int)MF_GPU_OP_COUNT_ == (int)MF_OP_COUNT_,
               "GPU bench op ids follow the op ids");

/* Copy times seen on GPU calls: the public call (host arrays in and out)
 * less the replay of its recorded plan (no host copies). */
#define MAX_COPIES_SEEN 256
typedef struct copies_seen {
    int n;
    double in[MAX_COPIES_SEEN], out[MAX_COPIES_SEEN], us[MAX_COPIES_SEEN];
} copies_seen;

/* Fits us = a + b_in * in + b_out * out (absolute least squares,
 * non-negative) and splits it into the two curves, a shared evenly; each
 * curve's points are its bytes and the copy time left once the other
 * direction's fit is taken off. 0 when there is too little to fit. */
static int fit_copies(const copies_seen *c, mf_pc_gpu *g)
{
    if (c->n < 3)
        return 0;
    double X[MAX_COPIES_SEEN * 3], coef[3];
    for (int i = 0; i < c->n; i++) {
        X[i * 3] = 1;
        X[i * 3 + 1] = c->in[i];
        X[i * 3 + 2] = c->out[i];
    }
    if (mf_nnls_w(X, c->us, NULL, c->n, 3, coef) != 0)
        return 0;
    g->h2d.a_us = g->d2h.a_us = coef[0] / 2;
    g->h2d.b_us_per_byte = coef[1];
    g->d2h.b_us_per_byte = coef[2];
    g->h2d.n = g->d2h.n = 0;
    for (int i = 0; i < c->n && i < MF_PC_MAX_CURVE; i++) {
        double up = c->us[i] - mf_curve_eval(&g->d2h, c->out[i]);
        double down = c->us[i] - mf_curve_eval(&g->h2d, c->in[i]);
        g->h2d.bytes[g->h2d.n] = c->in[i];
        g->h2d.us[g->h2d.n++] = up > 0 ? up : 0;
        g->d2h.bytes[g->d2h.n] = c->out[i];
        g->d2h.us[g->d2h.n++] = down > 0 ? down : 0;
    }
    return 1;
}

/* --------------------------------------------------------------- fitting -- */

static mf_status fit_group(mf_placement *p, mf_pc_model **models,
                           size_t *n_models, size_t *cap, int op, int mode,
                           int wtype, int dev)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_pts; i++) {
        const mf_pc_point *pt = &p->pts[i];
        if ((int)pt->s.op == op && pt->dev == dev &&
            (mode < 0 || (pt->s.mode == mode && (int)pt->s.wtype == wtype)))
            n++;
    }
    if (!n)
        return MF_OK;
    mf_op_shape *sh = malloc(n * sizeof *sh);
    double *us = malloc(n * sizeof *us), *div = malloc(n * sizeof *div);
    if (!sh || !us || !div) {
        free(sh);
        free(us);
        free(div);
        return MF_ERR_OUT_OF_MEMORY;
    }
    n = 0;
    for (size_t i = 0; i < p->n_pts; i++) {
        const mf_pc_point *pt = &p->pts[i];
        if ((int)pt->s.op == op && pt->dev == dev &&
            (mode < 0 || (pt->s.mode == mode && (int)pt->s.wtype == wtype))) {
            sh[n] = pt->s;
            div[n] = pt->median_us;
            us[n++] = dev == MF_DEVICE_GPU
                          ? mf_gpu_device_part_raw(p, &pt->s, pt->median_us)
                          : pt->median_us;
        }
    }
    mf_pc_model m = {.op = op, .mode = mode, .wtype = wtype, .dev = dev};
    int rc = mf_model_fit(sh, us, div, (int)n, &m);
    free(sh);
    free(us);
    free(div);
    if (rc != 0)
        return MF_ERR_OUT_OF_MEMORY;
    if (*n_models == *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        mf_pc_model *nm = realloc(*models, nc * sizeof *nm);
        if (!nm)
            return MF_ERR_OUT_OF_MEMORY;
        *models = nm;
        *cap = nc;
    }
    (*models)[(*n_models)++] = m;
    return MF_OK;
}

mf_status mf_profile_fit(mf_placement *p)
{
    mf_pc_model *models = NULL;
    size_t n = 0, cap = 0;
    mf_status st = MF_OK;
    /* Variant models, in the order the (sorted) points first name them. */
    for (size_t i = 0; i < p->n_pts && st == MF_OK; i++) {
        const mf_pc_point *pt = &p->pts[i];
        int seen = 0;
        for (size_t j = 0; j < n && !seen; j++)
            seen = models[j].op == (int)pt->s.op &&
                   models[j].mode == pt->s.mode &&
                   models[j].wtype == (int)pt->s.wtype &&
                   models[j].dev == pt->dev;
        if (!seen)
            st = fit_group(p, &models, &n, &cap, pt->s.op, pt->s.mode,
                           pt->s.wtype, pt->dev);
    }
    /* Pooled models per (op, dev). */
    for (int op = 0; op < MF_OP_COUNT_ && st == MF_OK; op++)
        for (int dev = 0; dev < MF_DEVICE_COUNT_ && st == MF_OK; dev++)
            st = fit_group(p, &models, &n, &cap, op, -1, -1, dev);
    if (st != MF_OK) {
        free(models);
        return st;
    }
    free(p->models);
    p->models = models;
    p->n_models = n;
    return MF_OK;
}

/* ------------------------------------------------------------------- run -- */

/* A remark for the notes stream, one line. */
__attribute__((format(printf, 2, 3))) static void
note(const mf_prof_opts *o, const char *fmt, ...)
{
    if (!o->notes)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(o->notes, fmt, ap);
    va_end(ap);
    fputc('\n', o->notes);
}

/* Says so when other work competes for the CPUs: every timing then
 * includes waits for them (most of all multi-threaded ops, whose workers
 * queue behind other processes). */
static void note_load(const mf_prof_opts *o, const mf_cpu_info *ci,
                      const char *when)
{
    double la[1];
    if (getloadavg(la, 1) != 1 || la[0] <= 0.75 * ci->logical_cpus)
        return;
    note(o, "the machine is busy (load average %.1f on %d CPUs %s): "
            "timings include waits for other work",
         la[0], ci->logical_cpus, when);
}

static void utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

mf_status mf_profile_run(mf_ctx *ctx, const mf_prof_opts *o,
                         mf_placement **out)
{
    if (!ctx || !o || !out)
        return MF_ERR_INVALID_ARG;
    mf_placement *p = calloc(1, sizeof *p);
    if (!p)
        return MF_ERR_OUT_OF_MEMORY;
    mf_status st = mf_fingerprint_make(ctx, &p->fp);
    if (st != MF_OK) {
        free(p);
        return st;
    }
    double start = now_s();
    double budget = o->budget_s > 0 ? o->budget_s : (o->full ? 900 : 90);
    snprintf(p->profile_mode, sizeof p->profile_mode, "%s",
             o->full ? "full" : "quick");
    utc_now(p->created, sizeof p->created);
    int ndev = ctx->gpu ? 2 : 1;
    if (!ctx->gpu)
        note(o, "no GPU in this context (%s): CPU only",
             mf_status_str(mf_ctx_gpu_status(ctx)));

    mf_prof_variant vars[64];
    int nv = mf_prof_grid(o->full, vars, 64), total = 0;
    for (int i = 0; i < nv; i++)
        if (!o->only_op || strcmp(o->only_op, mf_op_name(vars[i].op)) == 0)
            total += vars[i].n_sizes * ndev;

    /* Weights rotate through copies spanning twice the last-level cache
     * (64 MiB at least), so CPU runs read them from DRAM as a decode step
     * does. GPU runs keep one copy: a GPU holds its weights resident. */
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    size_t cold = (size_t)(2 * (ci.l3_bytes > ci.l2_bytes ? ci.l3_bytes
                                                         : ci.l2_bytes));
    if (cold < ((size_t)64 << 20))
        cold = (size_t)64 << 20;
    note_load(o, &ci, "at the start");

    static volatile sig_atomic_t never;
    mf_prof_opts oo = *o;
    if (!oo.stop)
        oo.stop = &never;
    o = &oo;

    /* The GPU's submit round trip. */
    copies_seen copies = {0};
    mf_pc_point rt = {0};
    int have_rt = 0;
    if (ctx->gpu) {
        gpu_arg ga = {.g = ctx->gpu, .op = -1};
        /* empty submits first, for as long as a GPU point warms */
        mf_status gs = warm_up(gpu_sample, &ga, gpu_warm_s(4.0), o->stop);
        if (gs == MF_OK)
            gs = sample(gpu_sample, &ga, 1, 1.0, o->stop, &rt);
        have_rt = gs == MF_OK;
        if (!have_rt)
            note(o, "GPU empty submit: %s; GPU fixed costs not measured",
                 mf_status_str(gs));
    }

    int done = 0, stopped = 0;
    double measuring = 0; /* seconds spent on points so far */
    for (int vi = 0; vi < nv && !stopped && st == MF_OK; vi++) {
        const mf_prof_variant *v = &vars[vi];
        if (o->only_op && strcmp(o->only_op, mf_op_name(v->op)) != 0)
            continue;
        mf_prof_inst *in = NULL;
        st = mf_prof_inst_create(v, v->sizes[v->n_sizes - 1], cold, &in);
        if (st != MF_OK) {
            note(o, "%s %s: cannot allocate its inputs; skipped",
                 mf_op_name(v->op), v->label);
            done += v->n_sizes * ndev;
            st = st == MF_ERR_OUT_OF_MEMORY ? MF_OK : st;
            continue;
        }
        int dev_ok[2] = {1, 1}, prev_slow = -1;
        double prev_ratio = 0;
        for (int si = 0; si < v->n_sizes && !stopped; si++) {
            double cur[2] = {-1, -1};
            for (int dev = 0; dev < ndev && !stopped; dev++) {
                int64_t x = v->sizes[si];
                double elapsed = now_s() - start;
                int left = total - done;
                double eta = done ? measuring / done * left : -1;
                char what[160];
                snprintf(what, sizeof what, "%s %s %s=%lld %s",
                         mf_op_name(v->op), v->label,
                         v->op == MF_OP_DEQUANT ? "E" : "T", (long long)x,
                         dev ? "gpu" : "cpu");
                if (o->progress)
                    o->progress(o->progress_user, done, total, elapsed, eta,
                                what);
                done++;
                if (!dev_ok[dev])
                    continue;
                double per = (budget - elapsed) / (left > 0 ? left : 1);
                per = per < 0.02 ? 0.02 : (per > (o->full ? 3.0 : 0.5)
                                               ? (o->full ? 3.0 : 0.5)
                                               : per);
                mf_pc_point pt = {.s = mf_prof_shape(v, x), .dev = dev};
                op_arg oa = {.in = in, .ctx = ctx, .x = x,
                             .impl = dev ? MF_IMPL_GPU : MF_IMPL_CPU,
                             .rotate = dev == 0};
                double a = now_s();
                int warm = 0;
                mf_status ts = MF_OK;
                if (dev && (v->op == MF_OP_GATING || v->op == MF_OP_QMV ||
                            v->op == MF_OP_MOE_GATE_UP ||
                            v->op == MF_OP_MOE_DOWN))
                    ts = tune_forms(ctx, &oa, &pt.s, per / 2, o, p, &warm);
                if (ts == MF_OK)
                    ts = time_point(&oa, per, !warm, o->stop, &pt);
                ctx->forms_forced = 0;
                /* Copy costs from cheap calls only: in a long one they are
                 * lost in its noise. */
                if (ts == MF_OK && dev && pt.median_us < 2000 &&
                    copies.n < MAX_COPIES_SEEN && !*o->stop) {
                    /* The same call's plan replayed without host copies. */
                    gpu_arg ga = {.g = ctx->gpu, .op = (int)v->op};
                    mf_pc_point rp;
                    if (sample(gpu_sample, &ga, 1, per / 2, o->stop, &rp) ==
                        MF_OK) {
                        mf_op_cost c = mf_op_features(&pt.s);
                        copies.in[copies.n] = c.in_bytes;
                        copies.out[copies.n] = c.out_bytes;
                        copies.us[copies.n++] = pt.median_us - rp.median_us;
                    }
                }
                measuring += now_s() - a;
                if (o->stop && *o->stop)
                    stopped = 1;
                if (ts == MF_OK) {
                    st = mf_placement_add_point(p, &pt);
                    cur[dev] = pt.median_us;
                } else if (!stopped) {
                    /* This device cannot run the variant (an op the GPU
                     * side lacks, a format it does not take): skip it. */
                    note(o, "%s: %s", what, mf_status_str(ts));
                    dev_ok[dev] = 0;
                }
            }
            /* A device that takes milliseconds a call and stays far behind
             * the other at two sizes in a row is not measured at larger
             * ones: its points only cost time (its model still covers
             * them). */
            if (cur[0] > 0 && cur[1] > 0) {
                int slow = cur[1] > cur[0];
                double ratio = cur[slow] / cur[!slow];
                if (cur[slow] > 5000 && ratio > 8 && slow == prev_slow &&
                    ratio > prev_ratio / 2 && si + 1 < v->n_sizes) {
                    dev_ok[slow] = 0;
                    note(o, "%s %s: the %s is not measured beyond %s=%lld "
                            "(%.1f ms a call, %.0fx slower than the %s, "
                            "not closing)",
                         mf_op_name(v->op), v->label, slow ? "gpu" : "cpu",
                         v->op == MF_OP_DEQUANT ? "E" : "T",
                         (long long)v->sizes[si], cur[slow] / 1000, ratio,
                         slow ? "cpu" : "gpu");
                }
                prev_slow = slow;
                prev_ratio = ratio;
            }
        }
        mf_prof_inst_free(in);
    }
    /* Fixed costs are used only when both the round trip and the copies
     * are known; otherwise the GPU models fit whole calls (conservative for
     * chains: every GPU call then pays its own copies and submit). */
    if (have_rt && fit_copies(&copies, &p->gpu)) {
        p->gpu.measured = 1;
        p->gpu.roundtrip_us = rt.median_us;
    } else if (ctx->gpu) {
        memset(&p->gpu, 0, sizeof p->gpu);
        note(o, "GPU copy costs could not be separated (%s); GPU models "
                "cover whole calls",
             have_rt ? "too few GPU calls" : "no round trip");
    }
    if (st == MF_OK)
        st = mf_placement_finish(p);
    if (st == MF_OK)
        st = mf_profile_fit(p);
    if (st != MF_OK) {
        mf_placement_free(p);
        return st;
    }
    note_load(o, &ci, "at the end");
    p->complete = !stopped;
    p->profile_seconds = now_s() - start;
    if (o->progress)
        o->progress(o->progress_user, total, total, p->profile_seconds, 0,
                    stopped ? "stopped" : "done");
    *out = p;
    return MF_OK;
}
