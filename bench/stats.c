#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

double bench_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *sorted, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)pos;
    double f = pos - i;
    return i + 1 < n ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

void bench_stats_of(double *t, int n, bench_stats *out)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    out->median_us = quantile(t, n, 0.5);
    out->p10_us = quantile(t, n, 0.1);
    out->p90_us = quantile(t, n, 0.9);
    out->runs = n;
}

int bench_measure(bench_fn fn, void *arg, int warmup, int batch, int min_runs,
                  int max_runs, double budget_us, bench_stats *out)
{
    int rc, call = 0;
    if (batch < 1)
        batch = 1;
    for (int i = 0; i < warmup; i++)
        if ((rc = fn(arg, call++)) != 0)
            return rc;
    double *t = malloc((size_t)max_runs * sizeof *t);
    if (!t)
        return -1;
    int n = 0;
    double start = bench_now_us();
    while (n < max_runs && (n < min_runs || bench_now_us() - start < budget_us)) {
        double t0 = bench_now_us();
        for (int b = 0; b < batch; b++) {
            if ((rc = fn(arg, call++)) != 0) {
                free(t);
                return rc;
            }
        }
        t[n++] = (bench_now_us() - t0) / batch;
    }
    bench_stats_of(t, n, out);
    free(t);
    return 0;
}

int bench_measure_pair(bench_fn fa, void *a, bench_fn fb, void *b, int warmup,
                       int min_runs, int max_runs, double budget_us,
                       bench_stats *out_a, bench_stats *out_b)
{
    int rc, call = 0;
    for (int i = 0; i < warmup; i++)
        if ((rc = fa(a, call)) != 0 || (rc = fb(b, call++)) != 0)
            return rc;
    double *t = malloc(2 * (size_t)max_runs * sizeof *t);
    if (!t)
        return -1;
    double *ta = t, *tb = t + max_runs;
    int n = 0;
    double start = bench_now_us();
    while (n < max_runs && (n < min_runs || bench_now_us() - start < budget_us)) {
        /* a b, then b a: neither always runs right after the other */
        for (int k = 0; k < 2; k++) {
            int is_a = (k == 0) == (n % 2 == 0); /* this call is fa */
            double t0 = bench_now_us();
            rc = is_a ? fa(a, call) : fb(b, call);
            double t1 = bench_now_us();
            if (rc) {
                free(t);
                return rc;
            }
            (is_a ? ta : tb)[n] = t1 - t0;
        }
        call++;
        n++;
    }
    bench_stats_of(ta, n, out_a);
    bench_stats_of(tb, n, out_b);
    free(t);
    return 0;
}
