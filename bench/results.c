/* Results: collection, the shared JSON results file, the human table. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

void bench_results_add(bench_results *r, const char *op, const char *shape,
                       const char *impl, const bench_stats *st, double bytes)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 64;
        bench_record *p = realloc(r->rec, (size_t)cap * sizeof *p);
        if (!p)
            return;
        r->rec = p;
        r->cap = cap;
    }
    bench_record *rec = &r->rec[r->n++];
    memset(rec, 0, sizeof *rec);
    snprintf(rec->op, sizeof rec->op, "%s", op);
    snprintf(rec->shape, sizeof rec->shape, "%s", shape);
    snprintf(rec->impl, sizeof rec->impl, "%s", impl);
    rec->st = *st;
    rec->bytes = bytes;
    rec->gbps = bytes > 0 && st->median_us > 0 ? bytes / (st->median_us * 1e3) : 0;
    rec->gpu_us = rec->call_us = rec->empty_us = -1;
    /* the floor the record is printed against: the 1-thread triad for ref,
     * the device copy for GPU records, else the triad measured last */
    rec->floor_gbps = bytes <= 0                  ? 0
                      : !strcmp(impl, "ref")      ? r->triad1_gbps
                      : !strncmp(impl, "gpu", 3)  ? (r->device_copy_gbps > 0 ? r->device_copy_gbps : 0)
                                                  : bench_floor_now(r);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_floor_now(const bench_results *r)
{
    return r->n_triad ? r->triad_samples[r->n_triad - 1] : r->triad_gbps;
}

double bench_floor_refresh(bench_results *r)
{
    int th = r->triad_threads > 0 ? r->triad_threads : 1;
    double g = bench_triad_gbps((size_t)1 << 26, th, r->triad_quick ? 5 : 9);
    const int cap = (int)(sizeof r->triad_samples / sizeof r->triad_samples[0]);
    if (r->n_triad == cap) { /* keep the latest cap samples */
        memmove(r->triad_samples, r->triad_samples + 1,
                (size_t)(cap - 1) * sizeof r->triad_samples[0]);
        r->n_triad--;
    }
    r->triad_samples[r->n_triad++] = g;
    double s[64];
    memcpy(s, r->triad_samples, (size_t)r->n_triad * sizeof s[0]);
    qsort(s, (size_t)r->n_triad, sizeof s[0], cmp_d);
    r->triad_gbps = r->n_triad % 2 ? s[r->n_triad / 2]
                                   : 0.5 * (s[r->n_triad / 2 - 1] + s[r->n_triad / 2]);
    return g;
}

void bench_results_free(bench_results *r)
{
    free(r->rec);
    memset(r, 0, sizeof *r);
}

int bench_results_write_json(const bench_results *r, const mf_ctx *ctx,
                             int threads, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fprintf(f, "{\n  \"machine\": ");
    bench_write_machine_json(f, ctx, threads);
    fprintf(f, ",\n  \"floor\": {\"triad_gbps\": %.2f, \"triad_1t_gbps\": %.2f",
            r->triad_gbps, r->triad1_gbps);
    if (r->n_triad > 0) {
        fprintf(f, ", \"triad_samples_gbps\": [");
        for (int i = 0; i < r->n_triad; i++)
            fprintf(f, "%s%.2f", i ? ", " : "", r->triad_samples[i]);
        fprintf(f, "]");
    }
    if (r->empty_dispatch_us >= 0)
        fprintf(f, ", \"empty_dispatch_us\": %.2f", r->empty_dispatch_us);
    if (r->device_copy_gbps >= 0)
        fprintf(f, ", \"device_copy_gbps\": %.2f", r->device_copy_gbps);
    if (r->device_read_gbps > 0)
        fprintf(f, ", \"device_read_gbps\": %.2f", r->device_read_gbps);
    if (r->chain_step_us > 0)
        fprintf(f, ", \"chain_step_us\": %.3f", r->chain_step_us);
    fprintf(f, "},\n  \"results\": [\n");
    for (int i = 0; i < r->n; i++) {
        const bench_record *x = &r->rec[i];
        fprintf(f,
                "    {\"op\": \"%s\", \"shape\": \"%s\", \"impl\": \"%s\", "
                "\"median_us\": %.4f, \"p10_us\": %.4f, \"p90_us\": %.4f, "
                "\"runs\": %d",
                x->op, x->shape, x->impl, x->st.median_us, x->st.p10_us,
                x->st.p90_us, x->st.runs);
        if (x->bytes > 0)
            fprintf(f, ", \"bytes\": %.0f, \"gbps\": %.3f", x->bytes, x->gbps);
        if (x->bytes > 0 && x->floor_gbps > 0)
            fprintf(f, ", \"floor_gbps\": %.2f", x->floor_gbps);
        if (x->gpu_us >= 0)
            fprintf(f, ", \"gpu_us\": %.3f", x->gpu_us);
        if (x->call_us >= 0)
            fprintf(f, ", \"call_us\": %.3f", x->call_us);
        if (x->empty_us >= 0)
            fprintf(f, ", \"empty_dispatch_us\": %.3f", x->empty_us);
        fprintf(f, "}%s\n", i + 1 < r->n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

void bench_print_record(FILE *f, const bench_record *rec, double floor_gbps)
{
    fprintf(f, "  %-8s %10.3f us  [p10 %9.3f  p90 %9.3f]  runs %5d",
            rec->impl, rec->st.median_us, rec->st.p10_us, rec->st.p90_us,
            rec->st.runs);
    if (rec->bytes > 0)
        fprintf(f, "  %7.2f GB/s  %5.1f%% of floor", rec->gbps,
                floor_gbps > 0 ? 100.0 * rec->gbps / floor_gbps : 0.0);
    if (rec->gpu_us >= 0)
        fprintf(f, "  gpu %8.3f us", rec->gpu_us);
    if (rec->call_us >= 0)
        fprintf(f, "  call %9.3f us", rec->call_us);
    fputc('\n', f);
}
