/* STREAM-style triad, measured by the same program in the same run as the
 * kernels it is the floor for. Each thread works on its own slice of the
 * arrays (first-touched by that thread). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct triad_job {
    float *a, *b, *c;
    size_t lo, hi;
    pthread_barrier_t *bar;
    int reps;
    double *times; /* per rep, written by thread 0 */
} triad_job;

static void *triad_thread(void *p)
{
    triad_job *j = p;
    for (size_t i = j->lo; i < j->hi; i++) {
        j->a[i] = 0.0f;
        j->b[i] = (float)(i & 1023);
        j->c[i] = 0.5f;
    }
    for (int r = 0; r < j->reps; r++) {
        pthread_barrier_wait(j->bar);
        double t0 = bench_now_us();
        float *restrict a = j->a, *restrict b = j->b, *restrict c = j->c;
        for (size_t i = j->lo; i < j->hi; i++)
            a[i] = b[i] + 3.0f * c[i];
        pthread_barrier_wait(j->bar);
        if (j->times)
            j->times[r] = bench_now_us() - t0;
    }
    return NULL;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double bench_triad_gbps(size_t n, int threads, int reps)
{
    if (threads < 1)
        threads = 1;
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
    triad_job *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    double *times = calloc((size_t)reps, sizeof *times);
    double gbps = 0.0;
    if (!a || !b || !c || !jobs || !th || !times)
        goto out;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++) {
        jobs[i] = (triad_job){a, b, c, n * (size_t)i / (size_t)threads,
                              n * (size_t)(i + 1) / (size_t)threads, &bar,
                              reps, i == 0 ? times : NULL};
        if (i)
            pthread_create(&th[i], NULL, triad_thread, &jobs[i]);
    }
    triad_thread(&jobs[0]);
    for (int i = 1; i < threads; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    gbps = 3.0 * 4.0 * (double)n / (times[reps / 2] * 1e3);
out:
    free(a);
    free(b);
    free(c);
    free(jobs);
    free(th);
    free(times);
    return gbps;
}
