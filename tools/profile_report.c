/* moefuse-profile's report (see profile_report.h). */
#include "profile_report.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/dispatch/costmodel.h"
#include "src/dispatch/json.h"

#define MAXS 16

typedef struct vrep {
    mf_prof_variant v;
    int n;
    int64_t x[MAXS];
    const mf_pc_point *pt[MAXS][2];
    double pred[MAXS][2]; /* model-only, host in/out; -1: none */
    mf_route_decision dec[MAXS];
    int64_t cross_meas, cross_pred; /* first size the GPU wins from; -1 */
    double regret_max, regret_mean;
    int regret_n;
    const mf_pc_model *model[2];
} vrep;

static const char *const DEV[2] = {"cpu", "gpu"};

static const char *axis_name(mf_op_id op) { return op == MF_OP_DEQUANT ? "E" : "T"; }

/* A device's total for a host-in/host-out call from the models alone. */
static double model_total(const mf_placement *p, const mf_pc_model *m,
                          const mf_op_shape *s, int dev)
{
    if (!m)
        return -1;
    double t = mf_model_eval(m, s);
    if (dev == MF_DEVICE_GPU && p->gpu.measured) {
        mf_op_cost c = mf_op_features(s);
        t += p->gpu.roundtrip_us + mf_curve_eval(&p->gpu.h2d, c.in_bytes) +
             mf_curve_eval(&p->gpu.d2h, c.out_bytes);
    }
    return t;
}

/* Sizes the crossover search walks: every value to 64, then doubling. */
static int64_t next_size(int64_t x) { return x < 64 ? x + 1 : x * 2; }

/* The first size from which the models have the GPU win up to four times
 * the largest size measured (linear models are not to be trusted far
 * beyond their data). */
static int64_t predicted_crossover(const mf_placement *p, const vrep *r)
{
    if (!r->model[0] || !r->model[1] || !r->n)
        return -1;
    int64_t lim = 4 * r->x[r->n - 1];
    int64_t first = -1;
    for (int64_t x = 1; x <= lim; x = next_size(x)) {
        mf_op_shape s = mf_prof_shape(&r->v, x);
        int gpu = model_total(p, r->model[1], &s, 1) <
                  model_total(p, r->model[0], &s, 0);
        if (gpu && first < 0)
            first = x;
        else if (!gpu)
            first = -1; /* the GPU must keep winning from there on */
    }
    return first;
}

static int64_t measured_crossover(const vrep *r)
{
    int64_t first = -1;
    for (int i = 0; i < r->n; i++) {
        const mf_pc_point *c = r->pt[i][0], *g = r->pt[i][1];
        if (!c || !g)
            continue;
        if (g->median_us < c->median_us) {
            if (first < 0)
                first = r->x[i];
        } else {
            first = -1;
        }
    }
    return first;
}

/* Regret of model-based choices on held-out sizes (every fourth from the
 * third), models refitted without them. */
static void heldout_regret(const mf_placement *p, vrep *r)
{
    mf_op_shape sh[2][MAXS];
    double us[2][MAXS], div[2][MAXS];
    int n[2] = {0, 0}, both = 0;
    for (int i = 0; i < r->n; i++)
        both += r->pt[i][0] && r->pt[i][1];
    if (both < 4)
        return;
    for (int i = 0, j = 0; i < r->n; i++) {
        if (!r->pt[i][0] || !r->pt[i][1])
            continue;
        if (j++ % 4 == 2)
            continue;
        for (int d = 0; d < 2; d++) {
            const mf_pc_point *pt = r->pt[i][d];
            sh[d][n[d]] = pt->s;
            div[d][n[d]] = pt->median_us;
            us[d][n[d]++] = d ? mf_gpu_device_part_raw(p, &pt->s,
                                                       pt->median_us)
                              : pt->median_us;
        }
    }
    mf_pc_model m[2];
    for (int d = 0; d < 2; d++) {
        m[d] = *r->model[d];
        if (mf_model_fit(sh[d], us[d], div[d], n[d], &m[d]) != 0)
            return;
    }
    double sum = 0;
    for (int i = 0, j = 0; i < r->n; i++) {
        if (!r->pt[i][0] || !r->pt[i][1] || j++ % 4 != 2)
            continue;
        mf_op_shape s = r->pt[i][0]->s;
        int gpu = model_total(p, &m[1], &s, 1) < model_total(p, &m[0], &s, 0);
        double c = r->pt[i][0]->median_us, g = r->pt[i][1]->median_us;
        double reg = (gpu ? g : c) / fmin(c, g) - 1;
        r->regret_max = fmax(r->regret_max, reg);
        sum += reg;
        r->regret_n++;
    }
    if (r->regret_n)
        r->regret_mean = sum / r->regret_n;
}

static void build(const mf_placement *p, int have_gpu,
                  const mf_prof_variant *v, vrep *r)
{
    memset(r, 0, sizeof *r);
    r->v = *v;
    for (int i = 0; i < v->n_sizes && r->n < MAXS; i++) {
        mf_op_shape s = mf_prof_shape(v, v->sizes[i]);
        const mf_pc_point *c = mf_placement_find(p, &s, 0);
        const mf_pc_point *g = mf_placement_find(p, &s, 1);
        if (!c && !g)
            continue;
        int k = r->n++;
        r->x[k] = v->sizes[i];
        r->pt[k][0] = c;
        r->pt[k][1] = g;
        for (int d = 0; d < 2; d++) {
            r->model[d] = mf_model_find(p, &s, d);
            r->pred[k][d] = model_total(p, r->model[d], &s, d);
        }
        mf_route_decide(p, have_gpu, &s, &r->dec[k]);
    }
    r->cross_meas = measured_crossover(r);
    r->cross_pred = predicted_crossover(p, r);
    heldout_regret(p, r);
}

/* ------------------------------------------------------------- tables -- */

static void print_num(FILE *out, double v, int w)
{
    if (v < 0)
        fprintf(out, "%*s", w, "-");
    else
        fprintf(out, "%*.*f", w, v < 100 ? 2 : 1, v);
}

static void print_cross(FILE *out, const char *name, int64_t x,
                        const char *axis, int have_both)
{
    fprintf(out, "%s ", name);
    if (!have_both)
        fprintf(out, "n/a (one device)");
    else if (x < 0)
        fprintf(out, "never (the CPU wins at every size)");
    else if (x == 1)
        fprintf(out, "the GPU wins at every size");
    else
        fprintf(out, "GPU from %s=%lld", axis, (long long)x);
}

static void print_model(FILE *out, const char *dev, const mf_pc_model *m)
{
    if (!m)
        return;
    fprintf(out, "  %s model: %.2f us", dev, m->a_us);
    if (m->b_us_per_byte > 0)
        fprintf(out, " + bytes at %.1f GB/s", 1e-3 / m->b_us_per_byte);
    if (m->c_us_per_flop > 0)
        fprintf(out, " + flops at %.1f GFLOP/s", 1e-3 / m->c_us_per_flop);
    fprintf(out, " (%d points", m->n_points);
    if (m->heldout_med_err >= 0)
        fprintf(out, "; held-out error median %.1f%%, max %.1f%%",
                100 * m->heldout_med_err, 100 * m->heldout_max_err);
    fprintf(out, ")\n");
}

static void print_variant(FILE *out, const vrep *r, int have_gpu)
{
    const char *ax = axis_name(r->v.op);
    fprintf(out, "\n%s  %s\n", mf_op_name(r->v.op), r->v.label);
    fprintf(out, "  %5s  %9s %19s %9s", ax, "cpu us", "(p10 - p90)",
            "model");
    if (have_gpu)
        fprintf(out, "  %9s %19s %9s", "gpu us", "(p10 - p90)", "model");
    fprintf(out, "  route\n");
    for (int i = 0; i < r->n; i++) {
        fprintf(out, "  %5lld ", (long long)r->x[i]);
        for (int d = 0; d < (have_gpu ? 2 : 1); d++) {
            const mf_pc_point *pt = r->pt[i][d];
            print_num(out, pt ? pt->median_us : -1, 10);
            if (pt)
                fprintf(out, "  (%7.2f - %7.2f)", pt->p10_us, pt->p90_us);
            else
                fprintf(out, "  %17s", "");
            print_num(out, r->pred[i][d], 10);
            fprintf(out, " ");
        }
        fprintf(out, " %s (%s)\n", DEV[r->dec[i].device],
                mf_route_source_name(r->dec[i].source));
    }
    int both = r->model[0] && r->model[1];
    fprintf(out, "  crossover: ");
    print_cross(out, "measured", r->cross_meas, ax, both);
    fprintf(out, "; ");
    print_cross(out, "predicted", r->cross_pred, ax, both);
    fprintf(out, "\n");
    print_model(out, "cpu", r->model[0]);
    print_model(out, "gpu", r->model[1]);
    if (r->regret_n)
        fprintf(out, "  regret on %d held-out sizes: max %.1f%%, mean %.1f%%\n",
                r->regret_n, 100 * r->regret_max, 100 * r->regret_mean);
}

/* The Qwen3-30B MoE block's chain, q4_0 weights. */
static int layer_chain(int64_t T, mf_op_shape *s)
{
    s[0] = (mf_op_shape){.op = MF_OP_GATING, .T = T, .E = 128, .k = 8,
                         .wtype = MF_TYPE_F32, .mode = MF_GATING_SOFTMAX_TOPK};
    s[1] = (mf_op_shape){.op = MF_OP_MOE_GATE_UP, .T = T, .E = 128, .k = 8,
                         .N = 768, .K = 2048, .wtype = MF_TYPE_Q4_0,
                         .mode = MF_GLU_SWIGLU};
    s[2] = (mf_op_shape){.op = MF_OP_MOE_DOWN, .T = T, .E = 128, .k = 8,
                         .N = 2048, .K = 768, .wtype = MF_TYPE_Q4_0};
    return 3;
}

typedef struct chain_row {
    int64_t T;
    mf_route_plan plan;
} chain_row;

static int chain_rows(const mf_placement *p, int have_gpu, chain_row *rows)
{
    static const int64_t Ts[] = {1, 2, 4, 8, 16, 32, 64, 128};
    int n = 0;
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        mf_op_shape s[3];
        int k = layer_chain(Ts[i], s);
        rows[n].T = Ts[i];
        mf_route_plan_chain(p, have_gpu, s, k, &rows[n].plan);
        if (rows[n].plan.all_cpu_us >= 0)
            n++;
    }
    return n;
}

static void placement_str(const mf_route_plan *pl, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < pl->n && n + 5 < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "," : "",
                              DEV[pl->device[i]]);
}

static double offload32(const chain_row *r)
{
    return r->T >= 32 && r->plan.all_gpu_us >= 0 ? r->plan.all_gpu_us
                                                : r->plan.all_cpu_us;
}

static void print_chains(FILE *out, const chain_row *rows, int n)
{
    if (!n)
        return;
    fprintf(out, "\nMoE block chain (Qwen3-30B q4_0: gating -> moe_gate_up "
                 "-> moe_down_combine), predicted us\n");
    fprintf(out, "  %5s %10s  %-13s %10s %10s %14s\n", "T", "routed",
            "placement", "all-cpu", "all-gpu", "offload T>=32");
    for (int i = 0; i < n; i++) {
        char pl[64];
        placement_str(&rows[i].plan, pl, sizeof pl);
        fprintf(out, "  %5lld ", (long long)rows[i].T);
        print_num(out, rows[i].plan.total_us, 10);
        fprintf(out, "  %-13s", pl);
        print_num(out, rows[i].plan.all_cpu_us, 10);
        fprintf(out, " ");
        print_num(out, rows[i].plan.all_gpu_us, 10);
        fprintf(out, " ");
        print_num(out, offload32(&rows[i]), 14);
        fprintf(out, "\n");
    }
}

/* ---------------------------------------------------------------- SVG -- */

#define W 760
#define PH 340 /* plot area height */
#define ML 70
#define MR 20
#define MB 50

typedef struct axes {
    double x0, x1, y0, y1; /* log2 x, log10 y ranges */
    int mt;                /* top of the plot area (legend above) */
} axes;

static double px(const axes *a, double x)
{
    return ML + (log2(x) - a->x0) / (a->x1 - a->x0) * (W - ML - MR);
}

static double py(const axes *a, double y)
{
    return a->mt + PH - (log10(y) - a->y0) / (a->y1 - a->y0) * PH;
}

static void svg_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else
            fputc(*s, f);
    }
}

static const char *const COLOR[2] = {"#1f6fb4", "#d2461e"};

/* Marker `shape` (0 circle, 1 square, 2 diamond, 3 triangle) at (x, y). */
static void svg_marker(FILE *f, int shape, double x, double y, const char *c)
{
    switch (shape % 4) {
    case 0:
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                x, y, c);
        break;
    case 1:
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" "
                   "fill=\"%s\"/>\n", x - 3.5, y - 3.5, c);
        break;
    case 2:
        fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f "
                   "%.1f,%.1f\" fill=\"%s\"/>\n",
                x, y - 4.5, x + 4.5, y, x, y + 4.5, x - 4.5, y, c);
        break;
    default:
        fprintf(f, "<polygon points=\"%.1f,%.1f %.1f,%.1f %.1f,%.1f\" "
                   "fill=\"%s\"/>\n",
                x, y - 4.5, x + 4.5, y + 3.5, x - 4.5, y + 3.5, c);
    }
}

static void svg_curve(FILE *f, const axes *a, const mf_placement *p,
                      const vrep *r, int d, int shape)
{
    int pts = 0;
    for (int i = 0; i < r->n; i++)
        pts += r->pt[i][d] != NULL;
    if (pts) {
        /* Measured medians, solid, with p10-p90 bars. */
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                   "points=\"", COLOR[d]);
        for (int i = 0; i < r->n; i++)
            if (r->pt[i][d])
                fprintf(f, "%.1f,%.1f ", px(a, (double)r->x[i]),
                        py(a, fmax(r->pt[i][d]->median_us, 1e-3)));
        fprintf(f, "\"/>\n");
        for (int i = 0; i < r->n; i++) {
            const mf_pc_point *pt = r->pt[i][d];
            if (!pt)
                continue;
            double x = px(a, (double)r->x[i]);
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                       "stroke=\"%s\"/>\n",
                    x, py(a, fmax(pt->p10_us, 1e-3)), x,
                    py(a, fmax(pt->p90_us, 1e-3)), COLOR[d]);
            svg_marker(f, shape, x, py(a, fmax(pt->median_us, 1e-3)),
                       COLOR[d]);
        }
    }
    if (r->model[d]) {
        /* The model, dashed, over the whole range. */
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" "
                   "stroke-dasharray=\"5,4\" points=\"", COLOR[d]);
        for (int j = 0; j <= 40; j++) {
            int64_t x = llround(pow(2, a->x0 + (a->x1 - a->x0) * j / 40));
            mf_op_shape s = mf_prof_shape(&r->v, x < 1 ? 1 : x);
            double t = model_total(p, r->model[d], &s, d);
            if (t > 0 && log10(t) >= a->y0 && log10(t) <= a->y1)
                fprintf(f, "%.1f,%.1f ", px(a, (double)x), py(a, t));
        }
        fprintf(f, "\"/>\n");
    }
}

static int svg_op(const char *dir, mf_op_id op, const mf_placement *p,
                  const vrep *reps, int nr)
{
    axes a = {INFINITY, -INFINITY, INFINITY, -INFINITY, 0};
    int any = 0, lines = 0;
    for (int v = 0; v < nr; v++) {
        if (reps[v].v.op != op || !reps[v].n)
            continue;
        lines += 1 + (reps[v].model[0] && reps[v].model[1]);
        for (int i = 0; i < reps[v].n; i++) {
            a.x0 = fmin(a.x0, log2((double)reps[v].x[i]));
            a.x1 = fmax(a.x1, log2((double)reps[v].x[i]));
            for (int d = 0; d < 2; d++) {
                const mf_pc_point *pt = reps[v].pt[i][d];
                double vals[3] = {pt ? pt->p10_us : -1, pt ? pt->p90_us : -1,
                                  reps[v].pred[i][d]};
                for (int j = 0; j < 3; j++)
                    if (vals[j] > 0) {
                        a.y0 = fmin(a.y0, log10(vals[j]));
                        a.y1 = fmax(a.y1, log10(vals[j]));
                        any = 1;
                    }
            }
        }
    }
    if (!any)
        return 0;
    if (a.x1 - a.x0 < 1)
        a.x1 = a.x0 + 1;
    a.y0 = floor(a.y0 * 4) / 4 - 0.1;
    a.y1 = ceil(a.y1 * 4) / 4 + 0.1;
    a.mt = 40 + 16 * lines + 24; /* title, key, legend lines */
    int h = a.mt + PH + MB;
    char path[1024];
    snprintf(path, sizeof path, "%s/profile_%s.svg", dir, mf_op_name(op));
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "moefuse-profile: %s: %s\n", path, strerror(errno));
        return -1;
    }
    const char *ax = axis_name(op);
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, h);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, h);
    fprintf(f, "<text x=\"%d\" y=\"22\" font-size=\"15\">%s: time per call "
               "vs %s (%s), %s</text>\n",
            ML, mf_op_name(op), ax,
            op == MF_OP_DEQUANT ? "experts dequantized" : "tokens",
            p->fp.n_gpus ? "CPU and GPU" : "CPU only (no GPU in the context)");
    int y = 40;
    fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#444\">solid: measured "
               "median (bars: p10 to p90); dashed: fitted model; "
               "<tspan fill=\"%s\">cpu</tspan>, <tspan fill=\"%s\">gpu"
               "</tspan></text>\n", ML, y, COLOR[0], COLOR[1]);
    /* Grid and axes. */
    for (int e = (int)ceil(a.y0); e <= (int)floor(a.y1); e++) {
        double yy = py(&a, pow(10, e));
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" "
                   "stroke=\"#ddd\"/>\n", ML, yy, W - MR, yy);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g us"
                   "</text>\n", ML - 6, yy + 4, pow(10, e));
    }
    for (int e = (int)ceil(a.x0); e <= (int)floor(a.x1); e++) {
        double xx = px(&a, pow(2, e));
        fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" "
                   "stroke=\"#eee\"/>\n", xx, a.mt, xx, a.mt + PH);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g"
                   "</text>\n", xx, a.mt + PH + 16, pow(2, e));
    }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
               "fill=\"none\" stroke=\"#333\"/>\n",
            ML, a.mt, W - ML - MR, PH);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
            (W + ML - MR) / 2, h - 12, ax);
    int vi = 0;
    for (int v = 0; v < nr; v++) {
        const vrep *r = &reps[v];
        if (r->v.op != op || !r->n)
            continue;
        for (int d = 0; d < 2; d++)
            svg_curve(f, &a, p, r, d, vi);
        y += 16;
        svg_marker(f, vi, ML + 4, y - 4, "#444");
        fprintf(f, "<text x=\"%d\" y=\"%d\">", ML + 14, y);
        svg_text(f, r->v.label);
        fprintf(f, "</text>\n");
        if (r->model[0] && r->model[1]) {
            /* The crossover the models predict. */
            char msg[160];
            y += 16;
            if (r->cross_pred > 0) {
                char meas[48] = "not within the measured sizes";
                if (r->cross_meas == 1)
                    snprintf(meas, sizeof meas, "at every size");
                else if (r->cross_meas > 1)
                    snprintf(meas, sizeof meas, "from %s=%lld", ax,
                             (long long)r->cross_meas);
                if (r->cross_pred == 1)
                    snprintf(msg, sizeof msg, "the GPU wins at every size "
                             "(measured: %s)", meas);
                else
                    snprintf(msg, sizeof msg, "the GPU wins from %s=%lld "
                             "(measured: %s)", ax, (long long)r->cross_pred,
                             meas);
                if (log2((double)r->cross_pred) <= a.x1) {
                    double xx = px(&a, (double)r->cross_pred);
                    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" "
                               "y2=\"%d\" stroke=\"#2a2\" stroke-width=\"2\" "
                               "stroke-dasharray=\"2,3\"/>\n",
                            xx, a.mt, xx, a.mt + PH);
                    svg_marker(f, vi, xx, a.mt + 8, "#2a2");
                }
            } else {
                snprintf(msg, sizeof msg, "no crossover: the CPU wins at "
                                          "every size");
            }
            fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#2a2\">", ML + 28, y);
            svg_text(f, msg);
            fprintf(f, "</text>\n");
        }
        vi++;
    }
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "moefuse-profile: %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- JSON -- */

static void jnum_or_null(mf_jw *w, double v)
{
    if (v < 0)
        mf_jw_null(w);
    else
        mf_jw_num(w, v);
}

static void json_model(mf_jw *w, const mf_pc_model *m)
{
    if (!m) {
        mf_jw_null(w);
        return;
    }
    mf_jw_object(w);
    mf_jw_key(w, "pooled");
    mf_jw_bool(w, m->mode < 0);
    mf_jw_key(w, "a_us");
    mf_jw_num(w, m->a_us);
    mf_jw_key(w, "us_per_byte");
    mf_jw_num(w, m->b_us_per_byte);
    mf_jw_key(w, "us_per_flop");
    mf_jw_num(w, m->c_us_per_flop);
    mf_jw_key(w, "points");
    mf_jw_int(w, m->n_points);
    mf_jw_key(w, "heldout_median_err");
    jnum_or_null(w, m->heldout_med_err);
    mf_jw_key(w, "heldout_max_err");
    jnum_or_null(w, m->heldout_max_err);
    mf_jw_end(w);
}

/* The kernel forms measured: per op variant and form, each size's time
 * with the form 1 over the time with 0, and the value kept. */
static void print_forms(FILE *out, const mf_placement *p)
{
    if (!p->n_forms)
        return;
    fprintf(out, "\nGPU kernel forms (the two forms give the same bits): "
                 "time with the form 1 / with 0 per size\n");
    /* sorted by shape then form: a variant's entries are one run over T */
    for (size_t i = 0, j; i < p->n_forms; i = j) {
        mf_op_shape key = p->forms[i].s;
        for (j = i + 1; j < p->n_forms; j++) {
            mf_op_shape a = p->forms[j].s;
            a.T = key.T;
            if (mf_shape_cmp(&a, &key) != 0)
                break;
        }
        for (int f = 0; f < MF_GPU_FORM_COUNT_; f++) {
            int any = 0;
            for (size_t m = i; m < j; m++) {
                const mf_pc_form *g = &p->forms[m];
                if (g->form != f)
                    continue;
                if (!any++)
                    fprintf(out, "  %s %s mode %d E=%lld k=%lld N=%lld "
                                 "K=%lld, %s:",
                            mf_op_name(key.op), mf_type_name(key.wtype),
                            key.mode, (long long)key.E, (long long)key.k,
                            (long long)key.N, (long long)key.K,
                            mf_gpu_form_name(f));
                fprintf(out, " T=%lld %.2f%s", (long long)g->s.T,
                        g->us[1] / g->us[0],
                        g->value == MF_GPU_FORM_AUTO ? ""
                        : g->value                   ? "(1)"
                                                     : "(0)");
            }
            if (any)
                fprintf(out, "\n");
        }
    }
    fprintf(out, "  (1) / (0): that form kept there; unmarked: within "
                 "%.0f%%, the built-in choice kept\n",
            100 * MF_PC_FORM_MARGIN);
}

static int write_json(const char *path, const mf_placement *p, int have_gpu,
                      const vrep *reps, int nr, const chain_row *rows,
                      int nrows, const prof_report_opts *o)
{
    mf_jw w;
    mf_jw_init(&w, 3);
    mf_jw_object(&w);
    mf_jw_key(&w, "tool");
    mf_jw_str(&w, "moefuse-profile");
    mf_jw_key(&w, "library");
    mf_jw_str(&w, mf_version());
    mf_jw_key(&w, "created");
    mf_jw_str(&w, p->created);
    mf_jw_key(&w, "mode");
    mf_jw_str(&w, p->profile_mode);
    mf_jw_key(&w, "seconds");
    mf_jw_num(&w, p->profile_seconds);
    mf_jw_key(&w, "complete");
    mf_jw_bool(&w, p->complete);
    mf_jw_key(&w, "machine");
    mf_jw_object(&w);
    mf_jw_key(&w, "cpu_model");
    mf_jw_str(&w, p->fp.cpu_model);
    mf_jw_key(&w, "isa");
    mf_jw_str(&w, p->fp.isa);
    mf_jw_key(&w, "threads");
    mf_jw_int(&w, p->fp.threads);
    mf_jw_key(&w, "gpu");
    if (p->fp.n_gpus)
        mf_jw_str(&w, p->fp.gpu[0].name);
    else
        mf_jw_null(&w);
    mf_jw_end(&w);
    mf_jw_key(&w, "cache");
    mf_jw_object(&w);
    mf_jw_key(&w, "path");
    if (o->cache_path)
        mf_jw_str(&w, o->cache_path);
    else
        mf_jw_null(&w);
    mf_jw_key(&w, "written");
    mf_jw_bool(&w, o->cache_path && o->cache_written == MF_OK);
    mf_jw_end(&w);
    mf_jw_key(&w, "gpu_fixed_costs");
    mf_jw_object(&w);
    mf_jw_key(&w, "measured");
    mf_jw_bool(&w, p->gpu.measured);
    if (p->gpu.measured) {
        mf_jw_key(&w, "roundtrip_us");
        mf_jw_num(&w, p->gpu.roundtrip_us);
        mf_jw_key(&w, "h2d_us_per_byte");
        mf_jw_num(&w, p->gpu.h2d.b_us_per_byte);
        mf_jw_key(&w, "d2h_us_per_byte");
        mf_jw_num(&w, p->gpu.d2h.b_us_per_byte);
    }
    mf_jw_end(&w);
    mf_jw_key(&w, "variants");
    mf_jw_array(&w);
    for (int v = 0; v < nr; v++) {
        const vrep *r = &reps[v];
        if (!r->n)
            continue;
        mf_jw_object(&w);
        mf_jw_key(&w, "op");
        mf_jw_str(&w, mf_op_name(r->v.op));
        mf_jw_key(&w, "label");
        mf_jw_str(&w, r->v.label);
        mf_jw_key(&w, "axis");
        mf_jw_str(&w, axis_name(r->v.op));
        mf_jw_key(&w, "crossover_measured");
        if (r->cross_meas > 0)
            mf_jw_int(&w, r->cross_meas);
        else
            mf_jw_null(&w);
        mf_jw_key(&w, "crossover_predicted");
        if (r->cross_pred > 0)
            mf_jw_int(&w, r->cross_pred);
        else
            mf_jw_null(&w);
        mf_jw_key(&w, "regret_heldout_max");
        jnum_or_null(&w, r->regret_n ? r->regret_max : -1);
        mf_jw_key(&w, "models");
        mf_jw_object(&w);
        mf_jw_key(&w, "cpu");
        json_model(&w, r->model[0]);
        mf_jw_key(&w, "gpu");
        json_model(&w, r->model[1]);
        mf_jw_end(&w);
        mf_jw_key(&w, "points");
        mf_jw_array(&w);
        for (int i = 0; i < r->n; i++) {
            mf_jw_object(&w);
            mf_jw_key(&w, "x");
            mf_jw_int(&w, r->x[i]);
            for (int d = 0; d < 2; d++) {
                const mf_pc_point *pt = r->pt[i][d];
                char k[32];
                snprintf(k, sizeof k, "%s_median_us", DEV[d]);
                mf_jw_key(&w, k);
                jnum_or_null(&w, pt ? pt->median_us : -1);
                snprintf(k, sizeof k, "%s_p10_us", DEV[d]);
                mf_jw_key(&w, k);
                jnum_or_null(&w, pt ? pt->p10_us : -1);
                snprintf(k, sizeof k, "%s_p90_us", DEV[d]);
                mf_jw_key(&w, k);
                jnum_or_null(&w, pt ? pt->p90_us : -1);
                snprintf(k, sizeof k, "%s_model_us", DEV[d]);
                mf_jw_key(&w, k);
                jnum_or_null(&w, r->pred[i][d]);
            }
            mf_jw_key(&w, "route");
            mf_jw_str(&w, DEV[r->dec[i].device]);
            mf_jw_key(&w, "source");
            mf_jw_str(&w, mf_route_source_name(r->dec[i].source));
            mf_jw_end(&w);
        }
        mf_jw_end(&w);
        mf_jw_end(&w);
    }
    mf_jw_end(&w);
    mf_jw_key(&w, "chain");
    mf_jw_array(&w);
    for (int i = 0; i < nrows; i++) {
        char pl[64];
        placement_str(&rows[i].plan, pl, sizeof pl);
        mf_jw_object(&w);
        mf_jw_key(&w, "T");
        mf_jw_int(&w, rows[i].T);
        mf_jw_key(&w, "placement");
        mf_jw_str(&w, pl);
        mf_jw_key(&w, "routed_us");
        jnum_or_null(&w, rows[i].plan.total_us);
        mf_jw_key(&w, "all_cpu_us");
        jnum_or_null(&w, rows[i].plan.all_cpu_us);
        mf_jw_key(&w, "all_gpu_us");
        jnum_or_null(&w, rows[i].plan.all_gpu_us);
        mf_jw_key(&w, "offload_t32_us");
        jnum_or_null(&w, offload32(&rows[i]));
        mf_jw_end(&w);
    }
    mf_jw_end(&w);
    mf_jw_key(&w, "forms");
    mf_jw_array(&w);
    for (size_t i = 0; i < p->n_forms; i++) {
        const mf_pc_form *f = &p->forms[i];
        mf_jw_object(&w);
        mf_pc_put_shape(&w, &f->s);
        mf_jw_key(&w, "form");
        mf_jw_str(&w, mf_gpu_form_name(f->form));
        mf_jw_key(&w, "us_off");
        mf_jw_num(&w, f->us[0]);
        mf_jw_key(&w, "us_on");
        mf_jw_num(&w, f->us[1]);
        mf_jw_key(&w, "value");
        mf_jw_int(&w, f->value);
        mf_jw_end(&w);
    }
    mf_jw_end(&w);
    mf_jw_key(&w, "have_gpu");
    mf_jw_bool(&w, have_gpu);
    mf_jw_key(&w, "notes");
    mf_jw_str(&w, o->notes ? o->notes : "");
    mf_jw_end(&w);
    mf_jw_raw(&w, "\n", 1);
    int rc = -1;
    if (!w.failed) {
        FILE *f = fopen(path, "w");
        if (f) {
            size_t wr = fwrite(w.buf, 1, w.len, f);
            rc = (fclose(f) == 0 && wr == w.len) ? 0 : -1;
        }
        if (rc)
            fprintf(stderr, "moefuse-profile: %s: %s\n", path,
                    strerror(errno));
    }
    mf_jw_free(&w);
    return rc;
}

int prof_report(FILE *out, const mf_placement *p, int have_gpu,
                const prof_report_opts *o)
{
    mf_prof_variant vars[64];
    int nv = mf_prof_grid(strcmp(p->profile_mode, "full") == 0, vars, 64);
    vrep *reps = calloc((size_t)nv, sizeof *reps);
    if (!reps)
        return -1;
    for (int v = 0; v < nv; v++)
        build(p, have_gpu, &vars[v], &reps[v]);
    fprintf(out, "moefuse-profile: %s, %s x %d threads%s%s; %s profile, "
                 "%.1f s%s\n",
            p->fp.cpu_model, p->fp.isa, p->fp.threads,
            p->fp.n_gpus ? ", GPU " : ", no GPU",
            p->fp.n_gpus ? p->fp.gpu[0].name : "", p->profile_mode,
            p->profile_seconds, p->complete ? "" : " (interrupted)");
    if (p->gpu.measured) {
        fprintf(out, "GPU fixed costs: submit round trip %.1f us; copies of a "
                     "call's host arrays %.1f us", p->gpu.roundtrip_us,
                p->gpu.h2d.a_us + p->gpu.d2h.a_us);
        const mf_pc_curve *c[2] = {&p->gpu.h2d, &p->gpu.d2h};
        for (int d = 0; d < 2; d++) {
            fprintf(out, ", %s ", d ? "device->host" : "+ host->device");
            if (c[d]->b_us_per_byte > 0)
                fprintf(out, "%.2f GB/s", 1e-3 / c[d]->b_us_per_byte);
            else
                fprintf(out, "no per-byte cost seen");
        }
        fprintf(out, "\n");
    }
    for (int v = 0; v < nv; v++)
        if (reps[v].n)
            print_variant(out, &reps[v], have_gpu);
    chain_row rows[8];
    int nrows = chain_rows(p, have_gpu, rows);
    print_chains(out, rows, nrows);
    print_forms(out, p);
    int rc = 0;
    if (o->svg_dir)
        for (int op = 0; op < MF_OP_COUNT_; op++)
            rc |= svg_op(o->svg_dir, (mf_op_id)op, p, reps, nv);
    if (o->json_path)
        rc |= write_json(o->json_path, p, have_gpu, reps, nv, rows, nrows, o);
    free(reps);
    return rc ? -1 : 0;
}
