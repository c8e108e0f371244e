/* Persistent thread pool. Workers spin on a generation counter for a short
 * while after each run (no system call to wake them while they spin), then
 * sleep on a condition variable. Tasks are claimed, not assigned: the caller
 * and every worker that sees the run take the next unclaimed task index
 * until none is left, and the caller spins until all n are done. A worker
 * that is descheduled (its core taken by another thread: a driver thread, a
 * second process) before it claims anything holds nothing up; its share
 * runs on the threads that are there. Assigned tasks cost ~0.5 ms stalls
 * (a scheduler slice) on a 16-core host.
 *
 * A run is published like a seqlock: gen turns odd, the run's fields are
 * stored, gen turns even. A worker takes a run only when it read the fields
 * between two equal even loads of gen, so a worker that wakes late never
 * mixes one run's fields with another's or runs a task twice. */
#include "pool.h"

#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* ~50-100 us of spinning before a worker sleeps. */
#define SPIN_ITERS 20000

typedef struct worker {
    mf_pool *pool;
    int index;
    pthread_t thread;
} worker;

struct mf_pool {
    int n_threads;
    worker *workers;
    hwloc_topology_t topo;
    int have_topo;
    int pin;

    _Atomic unsigned gen;      /* odd while a run is published, +2 per run */
    _Atomic int done;          /* worker tasks finished in this run */
    _Atomic int sleepers;      /* workers blocked on cond */
    _Atomic int quit;
    /* the run's fields (atomics: a late worker may read them while the
     * next run stores them; gen tells it to retry) */
    _Atomic(mf_pool_fn) fn;
    _Atomic(void *) arg;
    _Atomic int n_tasks;
    /* the run's gen (high 32 bits) and its next unclaimed task (low 32): a
     * claim succeeds only for the run whose fields the claimer read */
    _Atomic uint64_t claim;
    pthread_t caller;   /* the thread last pinned to core 0 */
    int caller_pinned;

    pthread_mutex_t mu;
    pthread_cond_t cond;
};

static void pin_self(mf_pool *p, int index)
{
    if (!p->have_topo || !p->pin)
        return;
    int cores = hwloc_get_nbobjs_by_type(p->topo, HWLOC_OBJ_CORE);
    if (cores < 1)
        return;
    hwloc_obj_t core = hwloc_get_obj_by_type(p->topo, HWLOC_OBJ_CORE,
                                             (unsigned)(index % cores));
    if (!core || !core->cpuset)
        return;
    hwloc_bitmap_t set = hwloc_bitmap_dup(core->cpuset);
    if (!set)
        return;
    hwloc_bitmap_singlify(set);
    hwloc_set_cpubind(p->topo, set, HWLOC_CPUBIND_THREAD); /* best effort */
    hwloc_bitmap_free(set);
}

/* Runs tasks of run g (fields fn, arg, n) while unclaimed ones remain. */
static void claim_tasks(mf_pool *p, unsigned g, mf_pool_fn fn, void *arg,
                        int n)
{
    uint64_t v = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        if ((unsigned)(v >> 32) != g || (uint32_t)v >= (uint32_t)n)
            return;
        if (atomic_compare_exchange_weak_explicit(&p->claim, &v, v + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_acquire)) {
            fn(arg, (int)(uint32_t)v, n);
            atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
            v = atomic_load_explicit(&p->claim, memory_order_acquire);
        }
    }
}

static void *worker_main(void *a)
{
    worker *w = a;
    mf_pool *p = w->pool;
    pin_self(p, w->index);
    /* gen is 0 at creation; a run may bump it before this thread starts,
     * so the starting value is not re-read here */
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen ||
               (g & 1u)) {
            if (atomic_load_explicit(&p->quit, memory_order_relaxed))
                return NULL;
            if (++spins < SPIN_ITERS) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->cond, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load_explicit(&p->quit, memory_order_relaxed))
            return NULL;
        mf_pool_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
        int n = atomic_load_explicit(&p->n_tasks, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&p->gen, memory_order_relaxed) != g)
            continue; /* a newer run was published meanwhile: take that one */
        seen = g;
        /* a claimed task keeps the caller waiting, so the run stays
         * published while it runs */
        claim_tasks(p, g, fn, arg, n);
    }
}

mf_status mf_pool_create(int n_threads, int pin, mf_pool **out)
{
    if (!out || n_threads < 2)
        return MF_ERR_INVALID_ARG;
    mf_pool *p = calloc(1, sizeof *p);
    if (!p)
        return MF_ERR_OUT_OF_MEMORY;
    p->n_threads = n_threads;
    p->pin = pin;
    p->workers = calloc((size_t)n_threads, sizeof *p->workers);
    if (!p->workers) {
        free(p);
        return MF_ERR_OUT_OF_MEMORY;
    }
    if (pin && hwloc_topology_init(&p->topo) == 0) {
        if (hwloc_topology_load(p->topo) == 0)
            p->have_topo = 1;
        else
            hwloc_topology_destroy(p->topo);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    int started = 1;
    for (int i = 1; i < n_threads; i++) {
        p->workers[i].pool = p;
        p->workers[i].index = i;
        if (pthread_create(&p->workers[i].thread, NULL, worker_main,
                           &p->workers[i]) != 0)
            break;
        started++;
    }
    if (started != n_threads) {
        p->n_threads = started; /* destroy joins the ones that started */
        mf_pool_destroy(p);
        return MF_ERR_OUT_OF_MEMORY;
    }
    *out = p;
    return MF_OK;
}

void mf_pool_destroy(mf_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    atomic_fetch_add(&p->gen, 2);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    if (p->have_topo)
        hwloc_topology_destroy(p->topo);
    free(p->workers);
    free(p);
}

int mf_pool_threads(const mf_pool *p) { return p ? p->n_threads : 1; }

void mf_pool_run(mf_pool *p, int n, void (*fn)(void *arg, int i, int n),
                 void *arg)
{
    if (n > p->n_threads)
        n = p->n_threads;
    if (n <= 1) {
        fn(arg, 0, 1);
        return;
    }
    /* Workers own cores 1..n-1; the calling thread (task 0) is pinned to
     * core 0 the first time it runs work, so the scheduler never stacks it
     * onto a spinning worker's core (that cost ~0.5 ms per op on a 16-core
     * host). Re-pinned when another thread calls. */
    if (p->pin && (!p->caller_pinned || !pthread_equal(p->caller, pthread_self()))) {
        pin_self(p, 0);
        p->caller = pthread_self();
        p->caller_pinned = 1;
    }
    /* publish: gen odd, the fields, gen even (seq_cst: ordered before the
     * sleepers load) */
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed);
    atomic_store_explicit(&p->gen, g + 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->n_tasks, n, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)(g + 2u) << 32,
                          memory_order_relaxed);
    atomic_store(&p->gen, g + 2u);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->mu);
    }
    claim_tasks(p, g + 2u, fn, arg, n);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n)
        cpu_relax();
}
