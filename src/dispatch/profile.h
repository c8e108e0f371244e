/* The device-scheduling profiler behind moefuse-profile: times every op
 * variant of a grid of decode shapes on each device of a context through the
 * public API with the implementation forced, measures the GPU's fixed costs,
 * and fits the cost models, producing a placement cache. Not installed. */
#ifndef MF_DISPATCH_PROFILE_H
#define MF_DISPATCH_PROFILE_H

#include <signal.h>
#include <stdio.h>

#include "cache.h"

/* One op variant of the grid: everything fixed but the size axis (T, or E
 * for dequant_act). */
typedef struct mf_prof_variant {
    mf_op_id op;
    char label[96];     /* "q4_0 N=2048 K=768", for reports */
    mf_op_shape base;   /* the shape key with the size axis at 1 */
    int n_sizes;
    int64_t sizes[16];  /* the size axis values measured */
} mf_prof_variant;

/* The grid: --quick covers the main variants of each op at decode sizes
 * T = 1..32 (1, 2, 3, 4, 6, 8, 12, 16, 24, 32); --full adds formats and
 * model shapes, and T = 64, 128. */
int mf_prof_grid(int full, mf_prof_variant *out, int cap);

/* The shape of variant v at size x (T, or E for dequant_act). */
mf_op_shape mf_prof_shape(const mf_prof_variant *v, int64_t x);

/* Progress, called before each measured point and once at the end
 * (done == total). */
typedef void (*mf_prof_progress_fn)(void *user, int done, int total,
                                    double elapsed_s, double eta_s,
                                    const char *what);

typedef struct mf_prof_opts {
    int full;               /* 0: --quick, 1: --full */
    double budget_s;        /* whole run; 0 = 90 s quick, 900 s full */
    const char *only_op;    /* op name to restrict to, or NULL */
    volatile sig_atomic_t *stop; /* set (e.g. by SIGINT) to stop early */
    mf_prof_progress_fn progress;
    void *progress_user;
    FILE *notes;            /* remarks (skipped parts and why), or NULL */
} mf_prof_opts;

/* Profiles ctx. On MF_OK *out owns a finished placement (decisions
 * derived, models fitted) with complete = 0 when stopped early; what was
 * measured before the stop is kept. Errors: MF_ERR_INVALID_ARG,
 * MF_ERR_OUT_OF_MEMORY, MF_ERR_UNSUPPORTED (the context's GPU cannot be
 * identified). */
mf_status mf_profile_run(mf_ctx *ctx, const mf_prof_opts *o,
                         mf_placement **out);

/* Fits every model of p from its points: per (op, mode, wtype, dev) and
 * pooled per (op, dev); replaces p->models. */
mf_status mf_profile_fit(mf_placement *p);

/* ------------------------------------------------------- op instances -- */

/* Inputs and outputs for timing one variant at sizes up to xmax, with the
 * weights in enough copies that rotating through them defeats the caches
 * (decode reads weights from DRAM). */
typedef struct mf_prof_inst mf_prof_inst;

mf_status mf_prof_inst_create(const mf_prof_variant *v, int64_t xmax,
                              size_t cold_bytes, mf_prof_inst **out);
/* One call of the variant at size x through the public API with impl
 * forced; rotate = 1 uses the next weight copy. */
mf_status mf_prof_inst_run(mf_prof_inst *in, mf_ctx *ctx, int64_t x,
                           mf_impl impl, int rotate);
void mf_prof_inst_free(mf_prof_inst *in);

#endif
