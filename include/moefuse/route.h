/* moefuse — placement: where an MF_IMPL_AUTO op call runs, and why.
 *
 * A context with a GPU sends each MF_IMPL_AUTO call to the device predicted
 * to finish it first, counting the copies of its inputs and outputs between
 * host memory and the GPU. The predictions come from the placement cache that
 * the profiler (moefuse-profile) writes for this machine: a measured time when
 * the call's shape was measured (its exact shape bucket), else fitted cost
 * models. Without a usable cache the built-in rule applies: everything runs on
 * the CPU (a GPU is used only once it has been measured to win here). The
 * functions below expose those decisions for logging and tests; they never
 * run an op. See docs/placement-cache.md. */
#ifndef MOEFUSE_ROUTE_H
#define MOEFUSE_ROUTE_H

#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mf_device {
    MF_DEVICE_CPU = 0,
    MF_DEVICE_GPU = 1,
    MF_DEVICE_COUNT_
} mf_device;

/* The ops, as the router names them. */
typedef enum mf_route_op {
    MF_ROUTE_GATING = 0,
    MF_ROUTE_COMBINE = 1,
    MF_ROUTE_GLU = 2,
    MF_ROUTE_DEQUANT_ACT = 3,
    MF_ROUTE_QMV = 4,
    MF_ROUTE_MOE_GATE_UP = 5,
    MF_ROUTE_MOE_DOWN_COMBINE = 6,
    MF_ROUTE_OP_COUNT_
} mf_route_op;

/* "gating", "combine", "glu", "dequant_act", "qmv", "moe_gate_up",
 * "moe_down_combine"; "?" for an unknown value. */
const char *mf_route_op_name(mf_route_op op);

/* The shape of one op call. Fields an op does not use must be 0.
 *   op               T          E          k      N        K      wtype    mode
 *   GATING           tokens     n_experts  k      0        0      F32      gating mode
 *   COMBINE          tokens     0          k      D        0      F32      exact (0/1)
 *   GLU              tokens     0          0      n        0      in_type  glu kind
 *   DEQUANT_ACT      0 or 1     w->e       0      w->n     w->k   w->type  act
 *   QMV              M          1          0      w->n     w->k   w->type  prec
 *   MOE_GATE_UP      tokens     w->e       k      F        H      w->type  glu kind
 *   MOE_DOWN_COMBINE tokens     w->e       k      H        F      w->type  0
 * (F is one expert's intermediate width: w_gate->n for SEPARATE, half of it
 * otherwise.) These are the shapes the ops' front doors route by. Limits
 * are those of ops.h; T = 0 counts as 1. */
typedef struct mf_route_shape {
    mf_route_op op;
    int64_t T, E, k, N, K;
    mf_type wtype;
    int32_t mode;
} mf_route_shape;

/* Where a prediction came from. */
typedef enum mf_route_source {
    MF_ROUTE_SRC_NO_GPU = 0,   /* the context has no GPU: the CPU */
    MF_ROUTE_SRC_BUILTIN = 1,  /* no usable placement cache: the CPU */
    MF_ROUTE_SRC_MEASURED = 2, /* this shape bucket was measured */
    MF_ROUTE_SRC_MODEL = 3,    /* the fitted cost models */
    MF_ROUTE_SRC_COUNT_
} mf_route_source;

/* "no-gpu", "builtin", "measured", "model"; "?" otherwise. */
const char *mf_route_source_name(mf_route_source s);

/* A decision for one call with its inputs and outputs in host memory.
 * Times in microseconds; a negative time means "no prediction". */
typedef struct mf_route_decision {
    mf_device device;
    mf_route_source source;
    double cpu_us;          /* the op on the CPU */
    double gpu_us;          /* the op on the GPU: one submit + the kernels */
    double gpu_transfer_us; /* copies host -> GPU of the inputs and GPU ->
                               host of the outputs */
} mf_route_decision;

/* The decision an MF_IMPL_AUTO call of shape s takes on ctx. Errors:
 * MF_ERR_INVALID_ARG (NULL argument, op or wtype out of range, a dimension
 * negative or over its limit); *out is untouched on error. */
mf_status mf_route_explain(const mf_ctx *ctx, const mf_route_shape *s,
                           mf_route_decision *out);

/* A chain of op calls in which the output of call i is the main input of
 * call i+1; the chain's first input and last output live in host memory. */
#define MF_ROUTE_CHAIN_MAX 64

typedef struct mf_route_plan {
    int32_t n;
    mf_device device[MF_ROUTE_CHAIN_MAX]; /* where each call runs */
    /* GPU submit group of each call (consecutive GPU calls share one
     * submit), numbered from 0; -1 for CPU calls. */
    int32_t group[MF_ROUTE_CHAIN_MAX];
    int32_t n_groups;
    mf_route_source source;
    double total_us;   /* predicted time of this plan */
    double all_cpu_us; /* every call on the CPU */
    double all_gpu_us; /* every call on the GPU, one submit; < 0 without GPU */
} mf_route_plan;

/* Places a chain of n (1..MF_ROUTE_CHAIN_MAX) calls as a whole: the device
 * of every call is chosen to minimize the sum of the calls' predicted times,
 * the copies between host and GPU wherever consecutive calls run on
 * different devices (and at the chain's ends), and one launch per GPU submit
 * group. Errors: MF_ERR_INVALID_ARG (NULL, n out of range, a bad shape);
 * *out untouched on error. */
mf_status mf_route_chain(const mf_ctx *ctx, const mf_route_shape *ops,
                         int32_t n, mf_route_plan *out);

#ifdef __cplusplus
}
#endif
#endif
