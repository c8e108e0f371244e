/* Cost models: what an op call of a given shape moves and computes, linear
 * time models fitted to measurements by non-negative least squares, and the
 * predictions the router compares. Not installed. */
#ifndef MF_DISPATCH_COSTMODEL_H
#define MF_DISPATCH_COSTMODEL_H

#include "cache.h"

/* What one call of shape s moves and computes:
 *  bytes:     memory traffic of the op (weights it reads + activations in
 *             + outputs), the bandwidth term;
 *  flops:     arithmetic (multiply-adds count 2), the compute term;
 *  in_bytes:  activations the caller passes in (weights excluded: a GPU
 *             keeps them resident; dequant_act's weights are its input);
 *  out_bytes: what the call writes back.
 * Expert ops assume uniformly random routing: T tokens x k slots touch
 * E (1 - (1 - k/E)^T) distinct experts on average. */
typedef struct mf_op_cost {
    double bytes, flops, in_bytes, out_bytes;
} mf_op_cost;

mf_op_cost mf_op_features(const mf_op_shape *s);

/* Bits per weight including scales (MLX counted with groups of 64 and f16
 * scales and biases). */
double mf_type_bits(mf_type t);

/* Non-negative least squares: finds coef[0..m-1] >= 0 minimizing
 * sum_i ((X[i] . coef - y[i]) / div[i])^2 over n rows of m <= 3 columns
 * (row-major X), exactly (every subset of active columns is solved and the
 * best feasible one kept). div NULL: absolute error (div = 1); div > 0.
 * mf_nnls: relative error (div = y, y > 0). Returns 0, or -1 when no fit
 * exists (n == 0). */
int mf_nnls_w(const double *X, const double *y, const double *div, int n,
              int m, double *coef);
int mf_nnls(const double *X, const double *y, int n, int m, double *coef);

/* Fits t = a + b * bytes + c * flops to the n (shape, us) pairs, each
 * error relative to div[i] (NULL: to us[i]; a GPU's device parts are
 * fitted relative to the whole measured calls, so that a device part lost
 * in the noise of the fixed costs does not dominate). Held-out error: when
 * n >= 4, the points are ordered by bytes, every fourth one (from the
 * third) is held out, the model fitted on the rest, and the median and
 * largest relative error on the held-out points stored; otherwise both are
 * -1. The returned model is then fitted on all points. The caller fills op,
 * mode, wtype and dev. -1 when n == 0. */
int mf_model_fit(const mf_op_shape *shapes, const double *us,
                 const double *div, int n, mf_pc_model *out);
double mf_model_eval(const mf_pc_model *m, const mf_op_shape *s);

/* Fits a copy-time curve's a and b (non-negative) to its points. */
void mf_curve_fit(mf_pc_curve *c);
/* Predicted copy time for `bytes` (0 for 0 bytes). */
double mf_curve_eval(const mf_pc_curve *c, double bytes);

/* The model for (op, mode, wtype, dev) of shape s: the exact variant's if
 * fitted, else the op's pooled one, else NULL. */
const mf_pc_model *mf_model_find(const mf_placement *p, const mf_op_shape *s,
                                 int dev);

/* Predictions for one call with host inputs and outputs. Times < 0 mean "no
 * prediction". gpu_dev_us is the GPU's device part (kernels only);
 * gpu_launch_us the submit round trip; gpu_in_us / gpu_out_us the copies. */
typedef struct mf_op_pred {
    double cpu_us;
    double gpu_dev_us, gpu_launch_us, gpu_in_us, gpu_out_us;
    int measured; /* both devices' times come from the exact bucket */
} mf_op_pred;

/* have_gpu 0: GPU fields are -1. */
mf_op_pred mf_op_predict(const mf_placement *p, const mf_op_shape *s,
                         int have_gpu);

/* The router's decision for a call of shape s (host inputs and outputs)
 * given placement p (NULL: none) and whether a GPU is present (route.c). */
void mf_route_decide(const mf_placement *p, int have_gpu,
                     const mf_op_shape *s, mf_route_decision *d);
/* The router's plan for a chain of n (1..MF_ROUTE_CHAIN_MAX) valid shapes
 * (route.c). */
void mf_route_plan_chain(const mf_placement *p, int have_gpu,
                         const mf_op_shape *s, int n, mf_route_plan *out);

/* For a caller that runs a chain of n valid shapes either as ONE GPU submit
 * or op by op, each call routed on its own (every GPU call then pays its
 * own submit and copies; mf_moe_layer does this): 1 when the one submit is
 * predicted faster than the op-by-op calls (ties: the submit), else 0; -1
 * when a prediction is missing (no GPU, no cache, an unknown cost). The two
 * predictions go to *submit_us and *ops_us when not NULL (-1 when unknown).
 * (mf_route_plan_chain's best plan may group GPU calls that an op-by-op
 * caller cannot group.) (route.c) */
int mf_route_one_submit(const mf_placement *p, int have_gpu,
                        const mf_op_shape *s, int n, double *submit_us,
                        double *ops_us);

/* Converts a measured GPU time of a host-in/host-out call to its device
 * part: the round trip and the copies removed; never below 0 unless raw
 * (for fitting, where noise must average out rather than be clipped). */
double mf_gpu_device_part(const mf_placement *p, const mf_op_shape *s,
                          double measured_us);
double mf_gpu_device_part_raw(const mf_placement *p, const mf_op_shape *s,
                              double measured_us);

#endif
