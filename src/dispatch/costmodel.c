/* Cost models: op features, NNLS fits, predictions (see costmodel.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "costmodel.h"

double mf_type_bits(mf_type t)
{
    switch (t) {
    case MF_TYPE_F32: return 32;
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return 16;
    case MF_TYPE_Q4_0: return 4.5;
    case MF_TYPE_Q8_0: return 8.5;
    case MF_TYPE_MLX_Q4: return 4.5;
    case MF_TYPE_MLX_Q8: return 8.5;
    default: return 32;
    }
}

static double distinct_experts(double T, double E, double k)
{
    if (E <= 0)
        return 1;
    if (k >= E)
        return E;
    return E * (1.0 - pow(1.0 - k / E, T));
}

mf_op_cost mf_op_features(const mf_op_shape *s)
{
    double T = (double)(s->T < 1 ? 1 : s->T), E = (double)s->E;
    double k = (double)s->k, N = (double)s->N, K = (double)s->K;
    double wb = mf_type_bits(s->wtype) / 8.0;
    mf_op_cost c = {0};
    switch (s->op) {
    case MF_OP_GATING:
        c.in_bytes = T * E * 4;
        c.out_bytes = T * k * 8;
        c.flops = T * E * 8;
        c.bytes = c.in_bytes + c.out_bytes;
        break;
    case MF_OP_COMBINE:
        c.in_bytes = T * k * N * 4 + T * k * 4 + T * N * 4;
        c.out_bytes = T * N * 4;
        c.flops = 2 * T * k * N;
        c.bytes = c.in_bytes + c.out_bytes;
        break;
    case MF_OP_GLU:
        c.in_bytes = T * 2 * N * wb;
        c.out_bytes = T * N * 4;
        c.flops = T * N * 10;
        c.bytes = c.in_bytes + c.out_bytes;
        break;
    case MF_OP_DEQUANT: {
        double n = (E < 1 ? 1 : E) * N * K;
        c.in_bytes = n * wb;
        c.out_bytes = n * 4;
        c.flops = n * 2;
        c.bytes = c.in_bytes + c.out_bytes;
        break;
    }
    case MF_OP_QMV:
        c.in_bytes = T * K * 4;
        c.out_bytes = T * N * 4;
        c.flops = 2 * T * N * K;
        c.bytes = N * K * wb + c.in_bytes + c.out_bytes;
        break;
    case MF_OP_MOE_GATE_UP:
        c.in_bytes = T * K * 4 + T * k * 4;
        c.out_bytes = T * k * N * 4;
        c.flops = 2 * T * k * 2 * N * K;
        c.bytes = distinct_experts(T, E, k) * 2 * N * K * wb + c.in_bytes +
                  c.out_bytes;
        break;
    case MF_OP_MOE_DOWN:
        c.in_bytes = T * k * K * 4 + T * k * 8 + T * N * 4;
        c.out_bytes = T * N * 4;
        c.flops = 2 * T * k * N * K;
        c.bytes = distinct_experts(T, E, k) * N * K * wb + c.in_bytes +
                  c.out_bytes;
        break;
    default:
        break;
    }
    return c;
}

/* Solves the k x k system A x = b in place (partial pivoting); -1 when
 * singular. */
static int solve(double A[3][3], double b[3], int k, double x[3])
{
    for (int c = 0; c < k; c++) {
        int piv = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(A[r][c]) > fabs(A[piv][c]))
                piv = r;
        if (!(fabs(A[piv][c]) > 1e-12))
            return -1;
        if (piv != c) {
            for (int j = 0; j < k; j++) {
                double t = A[c][j];
                A[c][j] = A[piv][j];
                A[piv][j] = t;
            }
            double t = b[c];
            b[c] = b[piv];
            b[piv] = t;
        }
        for (int r = c + 1; r < k; r++) {
            double f = A[r][c] / A[c][c];
            for (int j = c; j < k; j++)
                A[r][j] -= f * A[c][j];
            b[r] -= f * b[c];
        }
    }
    for (int r = k - 1; r >= 0; r--) {
        double s = b[r];
        for (int j = r + 1; j < k; j++)
            s -= A[r][j] * x[j];
        x[r] = s / A[r][r];
    }
    return 0;
}

/* What row i's error is divided by: div[i], or 1 without div. */
static double row_div(const double *div, int i)
{
    return div ? div[i] : 1.0;
}

int mf_nnls_w(const double *X, const double *y, const double *div, int n,
              int m, double *coef)
{
    if (n <= 0 || m < 1 || m > 3)
        return -1;
    /* Rows scaled by their weight, columns by their largest value
     * (conditioning). */
    double scale[3] = {0, 0, 0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++)
            scale[j] =
                fmax(scale[j], fabs(X[i * m + j] / row_div(div, i)));
    double best = INFINITY, bestc[3] = {0, 0, 0};
    for (int mask = 1; mask < (1 << m); mask++) {
        int cols[3], k = 0;
        for (int j = 0; j < m; j++)
            if ((mask >> j) & 1) {
                if (scale[j] == 0)
                    goto next;
                cols[k++] = j;
            }
        double A[3][3] = {{0}}, b[3] = {0}, x[3] = {0};
        for (int i = 0; i < n; i++) {
            double r[3];
            double wi = row_div(div, i);
            for (int a = 0; a < k; a++)
                r[a] = X[i * m + cols[a]] / wi / scale[cols[a]];
            for (int a = 0; a < k; a++) {
                b[a] += r[a] * (y[i] / wi);
                for (int c = 0; c < k; c++)
                    A[a][c] += r[a] * r[c];
            }
        }
        if (solve(A, b, k, x))
            continue;
        double c[3] = {0, 0, 0};
        for (int a = 0; a < k; a++) {
            if (!(x[a] >= 0))
                goto next;
            c[cols[a]] = x[a] / scale[cols[a]];
        }
        double res = 0;
        for (int i = 0; i < n; i++) {
            double p = 0;
            for (int j = 0; j < m; j++)
                p += X[i * m + j] * c[j];
            double e = (p - y[i]) / row_div(div, i);
            res += e * e;
        }
        if (res < best) {
            best = res;
            memcpy(bestc, c, sizeof bestc);
        }
    next:;
    }
    memcpy(coef, bestc, (size_t)m * sizeof *coef);
    return 0;
}

int mf_nnls(const double *X, const double *y, int n, int m, double *coef)
{
    return mf_nnls_w(X, y, y, n, m, coef);
}

static void model_row(const mf_op_shape *s, double *row)
{
    mf_op_cost c = mf_op_features(s);
    row[0] = 1;
    row[1] = c.bytes;
    row[2] = c.flops;
}

double mf_model_eval(const mf_pc_model *m, const mf_op_shape *s)
{
    double r[3];
    model_row(s, r);
    return m->a_us + m->b_us_per_byte * r[1] + m->c_us_per_flop * r[2];
}

typedef struct fit_pt {
    double row[3], y, div;
} fit_pt;

static int cmp_bytes(const void *a, const void *b)
{
    const fit_pt *x = a, *y = b;
    return (x->row[1] > y->row[1]) - (x->row[1] < y->row[1]);
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fit_rows(const fit_pt *pts, int n, int skip_mod, double *coef)
{
    double *X = malloc((size_t)n * 3 * sizeof *X);
    double *y = malloc((size_t)n * sizeof *y);
    double *d = malloc((size_t)n * sizeof *d);
    int m = 0;
    if (X && y && d) {
        for (int i = 0; i < n; i++) {
            if (skip_mod && i % 4 == 2)
                continue;
            memcpy(&X[m * 3], pts[i].row, sizeof pts[i].row);
            d[m] = pts[i].div;
            y[m++] = pts[i].y;
        }
    }
    if (m == 0 || mf_nnls_w(X, y, d, m, 3, coef) != 0)
        coef[0] = coef[1] = coef[2] = 0;
    free(X);
    free(y);
    free(d);
}

int mf_model_fit(const mf_op_shape *shapes, const double *us,
                 const double *div, int n, mf_pc_model *out)
{
    if (n <= 0)
        return -1;
    fit_pt *pts = malloc((size_t)n * sizeof *pts);
    if (!pts)
        return -1;
    for (int i = 0; i < n; i++) {
        model_row(&shapes[i], pts[i].row);
        pts[i].y = us[i];
        pts[i].div = div ? div[i] : us[i];
        if (!(pts[i].div > 1e-3))
            pts[i].div = 1e-3;
    }
    qsort(pts, (size_t)n, sizeof *pts, cmp_bytes);
    double coef[3];
    out->heldout_med_err = out->heldout_max_err = -1;
    if (n >= 4) {
        fit_rows(pts, n, 1, coef);
        double errs[64];
        int ne = 0;
        double mx = 0;
        for (int i = 2; i < n; i += 4) {
            double p = coef[0] + coef[1] * pts[i].row[1] +
                       coef[2] * pts[i].row[2];
            double e = fabs(p - pts[i].y) / pts[i].div;
            mx = fmax(mx, e);
            if (ne < 64)
                errs[ne++] = e;
        }
        qsort(errs, (size_t)ne, sizeof *errs, cmp_dbl);
        out->heldout_med_err = errs[ne / 2];
        out->heldout_max_err = mx;
    }
    fit_rows(pts, n, 0, coef);
    out->a_us = coef[0];
    out->b_us_per_byte = coef[1];
    out->c_us_per_flop = coef[2];
    out->n_points = n;
    free(pts);
    return 0;
}

void mf_curve_fit(mf_pc_curve *c)
{
    double X[MF_PC_MAX_CURVE * 2], y[MF_PC_MAX_CURVE], coef[2] = {0, 0};
    int m = 0;
    for (int i = 0; i < c->n && i < MF_PC_MAX_CURVE; i++) {
        X[m * 2] = 1;
        X[m * 2 + 1] = c->bytes[i];
        y[m++] = c->us[i];
    }
    if (m && mf_nnls_w(X, y, NULL, m, 2, coef) == 0) {
        c->a_us = coef[0];
        c->b_us_per_byte = coef[1];
    }
}

double mf_curve_eval(const mf_pc_curve *c, double bytes)
{
    return bytes > 0 ? c->a_us + c->b_us_per_byte * bytes : 0;
}

const mf_pc_model *mf_model_find(const mf_placement *p, const mf_op_shape *s,
                                 int dev)
{
    if (!p)
        return NULL;
    const mf_pc_model *pooled = NULL;
    for (size_t i = 0; i < p->n_models; i++) {
        const mf_pc_model *m = &p->models[i];
        if (m->op != (int32_t)s->op || m->dev != dev)
            continue;
        if (m->mode == s->mode && m->wtype == (int32_t)s->wtype)
            return m;
        if (m->mode < 0)
            pooled = m;
    }
    return pooled;
}

double mf_gpu_device_part_raw(const mf_placement *p, const mf_op_shape *s,
                              double measured_us)
{
    if (!p->gpu.measured)
        return measured_us;
    mf_op_cost c = mf_op_features(s);
    return measured_us - p->gpu.roundtrip_us -
           mf_curve_eval(&p->gpu.h2d, c.in_bytes) -
           mf_curve_eval(&p->gpu.d2h, c.out_bytes);
}

double mf_gpu_device_part(const mf_placement *p, const mf_op_shape *s,
                          double measured_us)
{
    double d = mf_gpu_device_part_raw(p, s, measured_us);
    return d > 0 ? d : 0;
}

mf_op_pred mf_op_predict(const mf_placement *p, const mf_op_shape *s,
                         int have_gpu)
{
    mf_op_pred r = {-1, -1, -1, -1, -1, 0};
    if (!p)
        return r;
    mf_op_shape b = mf_shape_bucket(s);
    const mf_pc_point *pc = mf_placement_find(p, &b, MF_DEVICE_CPU);
    const mf_pc_model *mc = mf_model_find(p, &b, MF_DEVICE_CPU);
    if (pc)
        r.cpu_us = pc->median_us;
    else if (mc)
        r.cpu_us = mf_model_eval(mc, s);
    if (!have_gpu)
        return r;
    mf_op_cost c = mf_op_features(s);
    r.gpu_launch_us = p->gpu.measured ? p->gpu.roundtrip_us : 0;
    r.gpu_in_us = p->gpu.measured ? mf_curve_eval(&p->gpu.h2d, c.in_bytes) : 0;
    r.gpu_out_us =
        p->gpu.measured ? mf_curve_eval(&p->gpu.d2h, c.out_bytes) : 0;
    const mf_pc_point *pg = mf_placement_find(p, &b, MF_DEVICE_GPU);
    const mf_pc_model *mg = mf_model_find(p, &b, MF_DEVICE_GPU);
    if (pg)
        r.gpu_dev_us = mf_gpu_device_part(p, &b, pg->median_us);
    else if (mg)
        r.gpu_dev_us = mf_model_eval(mg, s);
    r.measured = pc && pg;
    return r;
}
