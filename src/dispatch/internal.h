/* Internals shared by the front door (src/dispatch/): the context, impl
 * resolution, the thread pool. Not installed. */
#ifndef MF_DISPATCH_INTERNAL_H
#define MF_DISPATCH_INTERNAL_H

#include <moefuse/moefuse.h>

#include "../cpu/kernels.h"
#include "../gpu/gpu.h"
#include "pool.h"

struct mf_ctx {
    mf_isa isa;              /* the context's kernel set (never AUTO) */
    const mf_kernels *kern;  /* its table */
    int threads;             /* >= 1 */
    mf_pool *pool;           /* NULL when threads == 1 */
    mf_gpu *gpu;             /* NULL when CPU-only */
    mf_status gpu_status;    /* why gpu is NULL (MF_OK when it is not) */
    char *cache_path;        /* owned */
    struct mf_placement *placement; /* placement cache in use, or NULL
                                       (cache.h) */
    mf_status cache_status;  /* mf_ctx_cache_status */
    uint64_t placement_gen;  /* bumped whenever placement is attached or
                                detached (memoized decisions check it) */
    int forms_forced;        /* 1: GPU calls use `forms`, not the cache's
                                (the profiler, while it measures forms) */
    mf_gpu_forms forms;
};

/* How a CPU op call runs, resolved from its mf_impl. */
typedef struct mf_exec {
    const mf_kernels *kern; /* kernel table */
    int threads;            /* 1 for MF_IMPL_REF */
    mf_pool *pool;          /* NULL when threads == 1 */
} mf_exec;

/* Resolves impl for a CPU run: AUTO and CPU -> the context's set and
 * threads; REF -> reference kernels, one thread; SCALAR/AVX2/AVX512/NEON ->
 * that set on the context's threads if this build and CPU have it, else
 * MF_ERR_UNSUPPORTED. UNFUSED and GPU are not CPU kernel sets: the caller
 * handles them before calling this (it returns MF_ERR_INVALID_ARG for
 * them, and for values out of range). */
mf_status mf_exec_resolve(const mf_ctx *ctx, mf_impl impl, mf_exec *out);

/* The probed CPU description (static storage; probes once, thread-safe). */
const mf_cpu_info *mf_cpu_info_cached(void);

/* Runs fn(arg, i, n) for i in [0, n) where n = min(ex->threads, max_tasks)
 * (at least 1), the caller being task 0, and returns when all are done.
 * With max_tasks <= 1 or one thread it is a plain call. */
void mf_exec_parallel(const mf_exec *ex, int max_tasks,
                      void (*fn)(void *arg, int i, int n), void *arg);

/* Splits [0, total) into n nearly equal parts, rounding part edges to a
 * multiple of `align` (except the end); part i is [*lo, *hi). */
void mf_split(int64_t total, int n, int i, int64_t align, int64_t *lo,
              int64_t *hi);

/* Checked size arithmetic: 0 on overflow (and *out untouched), 1 on ok. */
int mf_mul_size(size_t a, size_t b, size_t *out);

/* 1 if the byte ranges [a, a+na) and [b, b+nb) intersect. */
int mf_overlap(const void *a, size_t na, const void *b, size_t nb);

/* Placement: which device an MF_IMPL_AUTO call runs on. */
typedef enum mf_op_id {
    MF_OP_GATING = 0,
    MF_OP_COMBINE,
    MF_OP_GLU,
    MF_OP_DEQUANT,
    MF_OP_QMV,
    MF_OP_MOE_GATE_UP,
    MF_OP_MOE_DOWN,
    MF_OP_COUNT_
} mf_op_id;

/* The shape of one op call as the router sees it: T tokens/rows, E experts,
 * k slots, N output width, K reduction width, weight type. Unused fields 0. */
typedef struct mf_op_shape {
    mf_op_id op;
    int64_t T, E, k, N, K;
    mf_type wtype;
    int mode; /* op-specific variant (gating mode, glu kind, ...) */
} mf_op_shape;

/* 1 when an MF_IMPL_AUTO call of this shape should run on the context's GPU
 * (never when it has none), 0 for the CPU. Implemented in route.c. */
int mf_route_gpu(const mf_ctx *ctx, const mf_op_shape *s);

/* Before a GPU call of shape s (gating, moe_gate_up, moe_down_combine):
 * hands the GPU the kernel forms to record its plan with, those the
 * placement cache measured fastest for the shape's bucket (or the forced
 * ones), the built-in choice for the rest. No-op without a GPU. forms.c. */
void mf_ctx_gpu_forms(mf_ctx *ctx, const mf_op_shape *s);
/* The same for a chain: the forms of every shape, each op's own (n = 0:
 * the built-in choice for all, unless forced). The profiler measures forms
 * with EXACT math: MF_PREC_INT8 calls of the expert ops (other shaders)
 * pass n = 0. */
void mf_ctx_gpu_forms_n(mf_ctx *ctx, const mf_op_shape *s, int n);

/* Op limits (ops.h). */
#define MF_MAX_T 65536
#define MF_MAX_E 4096
#define MF_MAX_DIM (1 << 24)

#endif
