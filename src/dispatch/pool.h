/* A persistent thread pool: workers spin briefly, then sleep on a futex-like
 * condition; the hot path (wake + join) needs no system call while workers
 * are spinning. Not installed. */
#ifndef MF_DISPATCH_POOL_H
#define MF_DISPATCH_POOL_H

#include <moefuse/base.h>

typedef struct mf_pool mf_pool;

/* Creates n_threads - 1 workers (the caller is thread 0). pin: pin each
 * thread to its own core with hwloc when possible. MF_ERR_OUT_OF_MEMORY or
 * MF_ERR_INVALID_ARG (n_threads < 2). */
mf_status mf_pool_create(int n_threads, int pin, mf_pool **out);
void mf_pool_destroy(mf_pool *p);
int mf_pool_threads(const mf_pool *p);

/* Runs fn(arg, i, n) for i in [0, n), n <= mf_pool_threads(p), each task
 * once, on whichever threads claim them (the caller included; a task's
 * index says which share of the work it is, not which thread runs it).
 * Returns when all tasks are done. One run at a time. */
typedef void (*mf_pool_fn)(void *arg, int i, int n);

void mf_pool_run(mf_pool *p, int n, void (*fn)(void *arg, int i, int n),
                 void *arg);

#endif
