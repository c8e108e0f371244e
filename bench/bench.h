/* moefuse-bench internals: timing, statistics, results, metadata, data. */
#ifndef MF_BENCH_H
#define MF_BENCH_H

#include <moefuse/moefuse.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- timing ------------------------------------------------------------- */
double bench_now_us(void);

typedef struct bench_stats {
    double median_us, p10_us, p90_us;
    int runs;
} bench_stats;

/* Runs fn(arg, i) with i = 0, 1, 2, ... : `warmup` untimed calls, then timed
 * samples until both min_runs samples and budget_us have passed (or
 * max_runs). A sample times `batch` consecutive calls and counts their mean
 * (batch > 1 for sub-microsecond ops, where one clock read costs as much as
 * the op). fn returns non-zero on failure, which stops the measurement and
 * is returned. */
typedef int (*bench_fn)(void *arg, int i);
int bench_measure(bench_fn fn, void *arg, int warmup, int batch, int min_runs,
                  int max_runs, double budget_us, bench_stats *out);

/* Median, p10 and p90 of n samples (sorted in place), runs = n. */
void bench_stats_of(double *t, int n, bench_stats *out);

/* Two measurements interleaved: samples of fa and fb alternate (in the
 * order a b b a a b ...) so that both see the same machine state. A ratio
 * of two host round trips on a GPU drifts by 2-3x over a run (clocks and
 * power states ramp), and only samples taken side by side compare. Same
 * arguments as bench_measure, one sample per call; min_runs and max_runs
 * count pairs. */
int bench_measure_pair(bench_fn fa, void *a, bench_fn fb, void *b, int warmup,
                       int min_runs, int max_runs, double budget_us,
                       bench_stats *out_a, bench_stats *out_b);

/* ---- STREAM-style triad a = b + s*c over arrays of n floats ----------- */
/* Median GB/s (3 * n * 4 bytes per pass) with `threads` threads. */
double bench_triad_gbps(size_t n, int threads, int reps);

/* ---- results -------------------------------------------------------------- */
typedef struct bench_record {
    char op[32];
    char shape[128];
    char impl[16];
    bench_stats st;
    double bytes; /* 0 when not memory-bound */
    double gbps;
    double floor_gbps; /* what the record is set against: ref the 1-thread
                        * triad, GPU records the device copy, others the
                        * triad measured last before it; 0 none */
    double gpu_us;  /* GPU runs: device time between timestamps; < 0 none */
    double call_us; /* GPU runs: the whole public call from host arrays */
    double empty_us; /* GPU replays: the empty-dispatch round trip measured
                      * interleaved with this record's samples; < 0 none */
} bench_record;

typedef struct bench_results {
    bench_record *rec;
    int n, cap;
    double triad_gbps, triad1_gbps; /* triad_gbps: median of the samples */
    /* The many-thread triad, measured again before each memory-bound block
     * (this machine's bandwidth drifts by tens of percent over minutes, so
     * every record is set against the triad measured just before it). */
    double triad_samples[64];
    int n_triad;
    int triad_threads, triad_quick;
    double empty_dispatch_us, device_copy_gbps; /* GPU runs; < 0 if none */
    double device_read_gbps;                    /* GPU runs; < 0 if none */
    double chain_step_us;                       /* GPU runs; < 0 if none */
} bench_results;

void bench_results_add(bench_results *r, const char *op, const char *shape,
                       const char *impl, const bench_stats *st, double bytes);
void bench_results_free(bench_results *r);
/* Measures the many-thread triad now: appends a sample, updates triad_gbps
 * (median of the samples) and returns the new sample. */
double bench_floor_refresh(bench_results *r);
/* The latest triad sample (what the next records are set against). */
double bench_floor_now(const bench_results *r);
/* Writes the results file (the format every benchmark tool shares). */
int bench_results_write_json(const bench_results *r, const mf_ctx *ctx,
                             int threads, const char *path);
/* One human line per record, grouped under op/shape headers. */
void bench_print_record(FILE *f, const bench_record *rec, double floor_gbps);

/* ---- metadata -------------------------------------------------------------- */
void bench_write_machine_json(FILE *f, const mf_ctx *ctx, int threads);
const char *bench_git_sha(void);

#include "../tools/synth.h"

#endif
