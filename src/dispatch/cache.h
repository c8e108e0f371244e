/* The placement cache in memory: machine fingerprint, measurements, fitted
 * cost models, GPU transfer curves and per-shape decisions; its JSON form
 * (docs/placement-cache.md) and atomic file I/O. Not installed. */
#ifndef MF_DISPATCH_CACHE_H
#define MF_DISPATCH_CACHE_H

#include "internal.h"
#include "json.h"

#define MF_PC_FORMAT "moefuse-placement-cache"
#define MF_PC_VERSION 1
#define MF_PC_MAX_FILE ((size_t)32 << 20)
#define MF_PC_MAX_POINTS 200000
#define MF_PC_MAX_MODELS 4096
#define MF_PC_MAX_CURVE 64
#define MF_FP_MAX_GPUS 8

typedef struct mf_fp_gpu {
    uint32_t vendor_id, device_id, driver_version;
    char uuid[33]; /* 32 lowercase hex digits */
    char name[128];
} mf_fp_gpu;

/* What the measurements depend on. Two caches are interchangeable only when
 * every field is equal. */
typedef struct mf_fingerprint {
    char cpu_model[128];
    char arch[16];
    char features[256];   /* CPU feature names present, space-separated */
    int32_t physical_cores, logical_cpus;
    char isa[16];         /* the context's kernel set */
    int32_t threads;      /* the context's thread count */
    int32_t n_gpus;       /* the context's GPU (0 or 1 today) */
    mf_fp_gpu gpu[MF_FP_MAX_GPUS];
    char library[32];     /* mf_version() */
} mf_fingerprint;

/* Fills fp for ctx. MF_ERR_UNSUPPORTED when the context's GPU cannot be
 * identified (no cache may then be trusted for it). */
mf_status mf_fingerprint_make(const mf_ctx *ctx, mf_fingerprint *fp);
int mf_fingerprint_equal(const mf_fingerprint *a, const mf_fingerprint *b);
/* FNV-1a over the canonical fields, for display. */
uint64_t mf_fingerprint_hash(const mf_fingerprint *fp);

/* One measured (shape, device): medians and spread of repeated runs. */
typedef struct mf_pc_point {
    mf_op_shape s;
    int32_t dev;       /* mf_device */
    double median_us;  /* median of `reps` timed runs */
    double p10_us, p90_us; /* 10th and 90th percentiles */
    int32_t reps;
} mf_pc_point;

/* t = a + b * bytes + c * flops (microseconds), fitted by non-negative
 * least squares on relative error. mode/wtype -1: pooled over every variant
 * of the op. For the GPU the fit is of the device part: the measured time
 * less the submit round trip and the host<->device copies. */
typedef struct mf_pc_model {
    int32_t op, mode, wtype, dev;
    double a_us, b_us_per_byte, c_us_per_flop;
    int32_t n_points;
    double heldout_med_err, heldout_max_err; /* relative; -1 = not known */
} mf_pc_model;

/* A copy-time curve: measured (bytes, us) and its fit us = a + b * bytes. */
typedef struct mf_pc_curve {
    int32_t n;
    double bytes[MF_PC_MAX_CURVE], us[MF_PC_MAX_CURVE];
    double a_us, b_us_per_byte;
} mf_pc_curve;

typedef struct mf_pc_gpu {
    int32_t measured;    /* 1 when the fields below were measured */
    double roundtrip_us; /* empty submit + wait */
    mf_pc_curve h2d, d2h;
} mf_pc_gpu;

/* The choice for one measured shape bucket (host inputs and outputs). */
typedef struct mf_pc_decision {
    mf_op_shape s;
    int32_t dev;
    double cpu_us, gpu_us; /* measured medians; gpu_us < 0 when not measured */
} mf_pc_decision;

/* One kernel form measured at one GPU shape bucket (gpu.h: mf_gpu_form_id):
 * the median call time with the form 0 and with it 1, the other forms of
 * the op at the values already chosen for the bucket. */
typedef struct mf_pc_form {
    mf_op_shape s;
    int32_t form;  /* mf_gpu_form_id, of s.op */
    double us[2];
    int32_t value; /* mf_pc_form_pick(us) */
} mf_pc_form;

/* The form value a measurement gives: 0 or 1 where that one is faster
 * than the other by more than MF_PC_FORM_MARGIN of the slower, else
 * MF_GPU_FORM_AUTO (the built-in choice: within the noise, keep it). */
#define MF_PC_FORM_MARGIN 0.03
int mf_pc_form_pick(const double us[2]);

typedef struct mf_placement {
    mf_fingerprint fp;
    char created[32];      /* UTC, ISO 8601 */
    char profile_mode[16]; /* "quick", "full", "test" ... */
    double profile_seconds;
    int32_t complete;      /* 0 when the profile was interrupted */
    mf_pc_point *pts;      /* sorted by (shape, dev), unique */
    size_t n_pts, cap_pts;
    mf_pc_model *models;
    size_t n_models;
    mf_pc_decision *dec;   /* sorted by shape, unique */
    size_t n_dec;
    mf_pc_gpu gpu;
    mf_pc_form *forms;     /* sorted by (shape, form), unique */
    size_t n_forms, cap_forms;
    /* The router's last decision per op (route.c); not part of the file. */
    mf_op_shape memo[MF_OP_COUNT_];
    int memo_gpu[MF_OP_COUNT_], memo_ok[MF_OP_COUNT_];
} mf_placement;

/* Shape order: op, mode, wtype, E, k, N, K, T. */
int mf_shape_cmp(const mf_op_shape *a, const mf_op_shape *b);
/* The bucket a shape is measured and looked up in: T <= 32 exact, larger T
 * rounded up to a power of two; T < 1 counts as 1. */
mf_op_shape mf_shape_bucket(const mf_op_shape *s);
/* Name of an op id ("qmv"), "?" if out of range; parse: -1 if unknown. */
const char *mf_op_name(int op);
int mf_op_parse(const char *name);

/* Sorts the points, drops duplicates (the last one added wins) and derives
 * the decisions from them. MF_ERR_OUT_OF_MEMORY. */
mf_status mf_placement_finish(mf_placement *p);
/* Adds a point (copies; grows the array). */
mf_status mf_placement_add_point(mf_placement *p, const mf_pc_point *pt);
/* The point for (bucketed shape, dev), or NULL. */
const mf_pc_point *mf_placement_find(const mf_placement *p,
                                     const mf_op_shape *s, int dev);
const mf_pc_decision *mf_placement_decision(const mf_placement *p,
                                            const mf_op_shape *s);
void mf_placement_free(mf_placement *p);

/* Adds a form measurement (copies, its shape bucketed; value derived).
 * mf_placement_finish sorts them and drops duplicates (the last added
 * wins). MF_ERR_INVALID_ARG for a form of another op, MF_ERR_OUT_OF_MEMORY. */
mf_status mf_placement_add_form(mf_placement *p, const mf_pc_form *f);
/* out: every form MF_GPU_FORM_AUTO but those measured for s's bucket. */
void mf_placement_forms(const mf_placement *p, const mf_op_shape *s,
                        mf_gpu_forms *out);
/* Sorts the forms and drops duplicates (mf_placement_finish calls it). */
void mf_placement_forms_finish(mf_placement *p);

/* The members op, mode, wtype, T, E, k, N, K of a shape, as the cache
 * writes them (into the object w has open). */
void mf_pc_put_shape(mf_jw *w, const mf_op_shape *s);

/* The JSON text of p, with its checksum; NULL when out of memory. Caller
 * frees. */
char *mf_placement_to_json(const mf_placement *p, size_t *len);
/* Parses and validates a cache text. expect (or NULL to skip) is the
 * fingerprint it must carry. MF_OK (*out owns a new placement),
 * MF_ERR_CACHE_FORMAT, MF_ERR_CACHE_MISMATCH, MF_ERR_OUT_OF_MEMORY. */
mf_status mf_placement_parse(const char *text, size_t len,
                             const mf_fingerprint *expect,
                             mf_placement **out);

/* Reads a cache file (MF_ERR_IO when absent or unreadable; larger than
 * MF_PC_MAX_FILE: MF_ERR_CACHE_FORMAT) then as mf_placement_parse. */
mf_status mf_placement_load(const char *path, const mf_fingerprint *expect,
                            mf_placement **out);
/* Writes atomically: a temporary file in the same directory, fsync, rename
 * over path, fsync of the directory. Creates the directory (one level, and
 * its parent) when missing. MF_ERR_IO, MF_ERR_OUT_OF_MEMORY. */
mf_status mf_placement_save(const mf_placement *p, const char *path);

/* The default path: $XDG_CACHE_HOME/moefuse/placement.json when that is an
 * absolute path, else $HOME/.cache/moefuse/placement.json; NULL when
 * neither exists or out of memory. Caller frees. */
char *mf_placement_default_path(void);

/* Called by mf_ctx_create once the context is complete: resolves
 * ctx->cache_path, loads the cache into ctx->placement and sets
 * ctx->cache_status. Never fails the context. */
void mf_ctx_cache_attach(mf_ctx *ctx);
/* Frees what mf_ctx_cache_attach attached. */
void mf_ctx_cache_detach(mf_ctx *ctx);

#endif
