/* The Vulkan side as seen from the front door. When the build has no Vulkan,
 * src/gpu/gpu_none.c implements these to report MF_ERR_UNSUPPORTED. Each
 * mf_gpu_<op> takes exactly the public op's arguments (already validated)
 * and runs it on the device with host arrays in and out. Not installed. */
#ifndef MF_GPU_GPU_H
#define MF_GPU_GPU_H

#include <moefuse/moefuse.h>

typedef struct mf_gpu mf_gpu;

/* Brings up a device as the options say. MF_ERR_UNSUPPORTED (no Vulkan in
 * this build), MF_ERR_DEVICE (no loader, no device, missing features),
 * MF_ERR_OUT_OF_MEMORY. */
mf_status mf_gpu_create(const mf_ctx_options *opts, mf_gpu **out);
void mf_gpu_destroy(mf_gpu *g);

mf_status mf_gpu_gating(mf_gpu *g, const mf_gating_desc *d,
                        const float *logits, int64_t T, int32_t *idx,
                        float *weights);
mf_status mf_gpu_combine(mf_gpu *g, const mf_combine_desc *d, int64_t T,
                         int32_t k, int64_t D, const float *x, const float *w,
                         const float *residual, float *out);
mf_status mf_gpu_glu(mf_gpu *g, const mf_glu_desc *d, int64_t T, int64_t n,
                     const void *gate, const void *up, void *out);
mf_status mf_gpu_dequant_act(mf_gpu *g, const mf_dequant_desc *d,
                             const mf_tensor *w, void *out);
mf_status mf_gpu_qmv(mf_gpu *g, const mf_qmv_desc *d, const mf_tensor *w,
                     const float *x, int64_t M, float *y);
mf_status mf_gpu_moe_gate_up(mf_gpu *g, const mf_moe_gate_up_desc *d,
                             int64_t T, int32_t k, const float *x,
                             const int32_t *idx, float *h);
mf_status mf_gpu_moe_down_combine(mf_gpu *g, const mf_moe_down_desc *d,
                                  int64_t T, int32_t k, const float *h,
                                  const int32_t *idx, const float *w,
                                  const float *residual, float *y);

/* ---- Weight residency (weights.h; src/gpu/wcache.c). Arguments are
 * validated by the front door. */
mf_status mf_gpu_weights_upload(mf_gpu *g, const mf_tensor *t,
                                mf_progress_fn progress, void *user);
mf_status mf_gpu_weights_evict(mf_gpu *g, const mf_tensor *t);
mf_status mf_gpu_weights_evict_range(mf_gpu *g, const void *p, size_t bytes);
void mf_gpu_weights_stats(const mf_gpu *g, mf_weights_stats *out);
/* Tests: tensors uploaded from now on are split into parts of at most
 * `bytes` (>= 4096) image bytes where the storage binding limit is higher,
 * as MOEFUSE_GPU_PART_BYTES does for a new context; 0: the limit alone.
 * MF_ERR_INVALID_ARG for 1..4095, MF_ERR_OUT_OF_MEMORY on host OOM. */
mf_status mf_gpu_part_bytes_set(mf_gpu *g, uint64_t bytes);

/* ---- The MoE chain (src/gpu/chain.c): router logits (qmv with the f32 or
 * any-type router, or logits given) -> gating -> moe_gate_up ->
 * moe_down_combine recorded into one command buffer with barriers between
 * the dispatches, every intermediate in device memory, replayed without
 * re-recording for a repeated shape. Inputs are host arrays; outputs y
 * [T, H], idx and weights [T, k]. The descs are the ops' (impl and prec are
 * ignored: the math is EXACT), already validated against each other. */
typedef struct mf_gpu_chain_desc {
    const mf_tensor *router;    /* [1, E, H]; NULL: `logits` is the input */
    const float *router_bias;   /* [E] or NULL */
    const mf_gating_desc *gating;
    const mf_moe_gate_up_desc *gate_up;
    const mf_moe_down_desc *down;
} mf_gpu_chain_desc;

/* Per-step device times of the last chain run (timestamps between the
 * dispatches), in microseconds, -1 without timestamps; host_us: submit
 * until the host sees the fence. Steps: router, gating, gate_up, down. */
typedef struct mf_gpu_chain_times {
    double step_us[4];
    double gpu_us;
    double host_us;
} mf_gpu_chain_times;

/* Runs the chain. logits is read only when d->router is NULL. times may be
 * NULL. Errors: device statuses; MF_ERR_UNSUPPORTED for shapes the chain
 * does not take (the caller then runs op by op). In the sigmoid gating
 * mode, rows whose selection the device cannot prove are recomputed on the
 * host, and the expert steps rerun for them (see chain.c). */
mf_status mf_gpu_moe_chain(mf_gpu *g, const mf_gpu_chain_desc *d,
                           const float *x, const float *logits, int64_t T,
                           const float *residual, float *y, int32_t *idx,
                           float *weights, mf_gpu_chain_times *times);

/* Replays the chain plan of the last mf_gpu_moe_chain call (no copies, no
 * re-recording) and measures it (bench). MF_ERR_INVALID_ARG when there is
 * none. */
mf_status mf_gpu_bench_chain(mf_gpu *g, mf_gpu_chain_times *t);

/* 1 while the device works; 0 after a loss (or for NULL). */
int mf_gpu_usable(const mf_gpu *g);

/* The device description behind mf_ctx_gpu_info. MF_ERR_INVALID_ARG for
 * NULL, MF_ERR_DEVICE_LOST after a loss. */
mf_status mf_gpu_info_get(const mf_gpu *g, mf_gpu_info *out);

/* ---- Kernel forms. Some ops have alternative shader forms that compute
 * the same bits (the tests compare them) and differ only in speed; which
 * one wins differs per device, so moefuse-profile measures both forms at
 * each shape it profiles and the placement cache records the winner. A
 * form value is 0 or 1, or MF_GPU_FORM_AUTO for the built-in choice. The
 * environment overrides (MOEFUSE_GPU_GATING_RANK, ...) win over both. */
typedef enum mf_gpu_form_id {
    MF_GPU_FORM_GATING_RANK = 0, /* gating: selection by rank (1) or by
                                    arg-max rounds (0) */
    MF_GPU_FORM_GU_XSTAGE,       /* moe_gate_up EXACT: activations staged in
                                    shared memory (1) or loaded per lane;
                                    built-in: not staged */
    MF_GPU_FORM_GU_GROUP,        /* moe_gate_up: pairs of one expert share a
                                    pass (1, 4 a pass) or one pair a pass */
    MF_GPU_FORM_DN_SLOTS,        /* moe_down_combine: slot groups (1) or
                                    per token (0) */
    MF_GPU_FORM_DN_XSTAGE,       /* moe_down_combine EXACT: h rows staged
                                    (1); built-in: not */
    MF_GPU_FORM_QMV_XSTAGE,      /* qmv EXACT, one activation row a pass:
                                    the row staged (1); built-in: not */
    MF_GPU_FORM_COUNT_
} mf_gpu_form_id;

#define MF_GPU_FORM_AUTO (-1)

typedef struct mf_gpu_forms {
    int8_t v[MF_GPU_FORM_COUNT_]; /* 0, 1 or MF_GPU_FORM_AUTO */
} mf_gpu_forms;

/* Every form MF_GPU_FORM_AUTO. */
void mf_gpu_forms_auto(mf_gpu_forms *f);
/* "gating_rank", "gu_xstage", ...; NULL out of range. Parse: -1 unknown. */
const char *mf_gpu_form_name(int id);
int mf_gpu_form_parse(const char *name);
/* The route op (mf_route_op) whose shader a form belongs to. */
int mf_gpu_form_op(int id);
/* The environment's override of a form (the variables above, read now):
 * 0, 1 or MF_GPU_FORM_AUTO when unset. */
int mf_gpu_form_env(int id);
/* The forms the plans recorded from now on use (NULL: all automatic).
 * Plans key on the forms they were recorded with. No-op without Vulkan. */
void mf_gpu_forms_use(mf_gpu *g, const mf_gpu_forms *f);

/* ---- Ops (plan caches), for the benchmark replay. */
typedef enum mf_gpu_op {
    MF_GPU_OP_GATING = 0,
    MF_GPU_OP_COMBINE,
    MF_GPU_OP_GLU,
    MF_GPU_OP_DEQUANT,
    MF_GPU_OP_QMV,
    MF_GPU_OP_MOE_GATE_UP,
    MF_GPU_OP_MOE_DOWN,
    MF_GPU_OP_COUNT_
} mf_gpu_op;

/* ---- Benchmark helpers (moefuse-bench gpu). Each call measures one run;
 * the caller repeats and takes medians. host_us: submit until the host sees
 * the fence signalled (busy-poll wait, as the ops wait); gpu_us: between
 * the timestamps around the recorded work, -1 when the queue has none.
 * Errors: MF_ERR_INVALID_ARG (NULL, bytes 0), device statuses. */
typedef struct mf_gpu_timing {
    double host_us;
    double gpu_us;
} mf_gpu_timing;

/* One empty one-workgroup dispatch, pre-recorded. */
mf_status mf_gpu_bench_empty(mf_gpu *g, mf_gpu_timing *t);
/* MF_GPU_BENCH_STEPS empty one-workgroup dispatches in one submit, with
 * the barrier a chain puts between its steps: gpu_us / MF_GPU_BENCH_STEPS
 * is what one step of a chain costs the device before any work. */
#define MF_GPU_BENCH_STEPS 16
mf_status mf_gpu_bench_steps(mf_gpu *g, mf_gpu_timing *t);
/* Device bandwidth floors over `bytes` of device-local memory (buffers and
 * recordings kept while bytes repeats): */
typedef enum mf_gpu_copy_kind {
    MF_GPU_COPY_ENGINE = 0, /* vkCmdCopyBuffer to a second buffer */
    MF_GPU_COPY_SHADER = 1, /* a compute shader copying 16-byte words */
    MF_GPU_COPY_READ = 2,   /* a compute shader that only reads */
    MF_GPU_COPY_KINDS_
} mf_gpu_copy_kind;
mf_status mf_gpu_bench_copy(mf_gpu *g, mf_gpu_copy_kind kind, size_t bytes,
                            mf_gpu_timing *t);
/* Replays the op's most recently run plan (the shape of its last call)
 * without copying inputs or outputs and without re-recording.
 * MF_ERR_INVALID_ARG if the op has not run since its plan was dropped. */
mf_status mf_gpu_bench_replay(mf_gpu *g, mf_gpu_op op, mf_gpu_timing *t);

/* ---- Tests only. */

/* Arms one fault: the next device allocation fails (OOM) or the next
 * submit reports the device lost (LOST). The environment variable
 * MOEFUSE_GPU_FAULT=create|oom|lost does the same at mf_gpu_create
 * ("create" makes it fail with MF_ERR_DEVICE). */
typedef enum mf_gpu_fault {
    MF_GPU_FAULT_NONE = 0,
    MF_GPU_FAULT_OOM = 1,
    MF_GPU_FAULT_LOST = 2
} mf_gpu_fault;
void mf_gpu_inject_fault(mf_gpu *g, mf_gpu_fault f);
/* The same, OOM firing only after `skip` device allocations have passed
 * (a failure partway through a multi-buffer upload). */
void mf_gpu_inject_fault_after(mf_gpu *g, mf_gpu_fault f, int skip);

/* Since creation: gating rows the device ran, and how many of them the
 * host then recomputed with the reference because the device could not
 * prove its sigmoid-mode selection (plus rows of shapes it does not take). */
void mf_gpu_gating_rows(const mf_gpu *g, int64_t *device_rows,
                        int64_t *host_rows);

/* The forms the next recorded plan takes, as resolved (environment
 * overrides, then those of the last mf_gpu_forms_use); all
 * MF_GPU_FORM_AUTO without Vulkan. */
void mf_gpu_forms_current(const mf_gpu *g, mf_gpu_forms *out);

/* The driver's statistics of one built pipeline (register count, shared
 * memory, spills, ...: the names and units are the driver's). */
#define MF_GPU_PIPE_STATS 8
typedef struct mf_gpu_pipe_info {
    const char *shader;    /* embedded module name, e.g. "moe_gate_up_sg" */
    const uint32_t *spec;  /* its specialization constants, in id order */
    uint32_t n_spec;
    uint32_t n_stats;
    struct {
        const char *name;
        double value;
    } stats[MF_GPU_PIPE_STATS];
} mf_gpu_pipe_info;

/* Calls fn for every pipeline built so far (newest first) and returns how
 * many; -1 when statistics are not captured: MOEFUSE_GPU_PIPELINE_STATS=1
 * was not set when the context was created, the driver lacks
 * VK_KHR_pipeline_executable_properties, or no Vulkan. */
int mf_gpu_pipeline_stats(const mf_gpu *g,
                          void (*fn)(void *user, const mf_gpu_pipe_info *p),
                          void *user);

/* Vulkan validation warnings and errors this process has seen (with
 * MOEFUSE_VK_VALIDATION=1; 0 without Vulkan). */
int mf_gpu_validation_messages(void);

#endif
