/* The Vulkan runtime under the GPU ops: one device and queue, buffers,
 * pipelines built from embedded SPIR-V, recorded command programs that are
 * replayed without re-recording, and a per-op cache of recorded plans.
 * Not installed.
 *
 * How an op uses it (see op_glu.c for a short complete example):
 *   1. Get a pipeline: mf_vk_pipe_get(vk, &desc, &pipe) with the embedded
 *      shader (shaders.h), the number of storage-buffer bindings, the push
 *      constant size and the specialization constants (constant_id 0..n-1).
 *      Pipelines are built once per distinct desc and live until teardown.
 *   2. Look up a plan for the call's shape: mf_vk_plans_get(cache, key,
 *      key_bytes, &plan). On a miss the plan is empty (plan->ready == 0):
 *      create its io buffers (mf_vk_io_create), record its program
 *      (mf_vk_prog_begin, mf_vk_cmd_upload for each input, mf_vk_cmd_dispatch
 *      and mf_vk_cmd_barrier as needed, mf_vk_cmd_download for each output,
 *      mf_vk_prog_end) and set plan->ready = 1. On a hit nothing is
 *      allocated or recorded.
 *   3. Per call: memcpy inputs into io.map, mf_vk_prog_run, memcpy outputs
 *      from io.map.
 * Everything returns mf_status: MF_ERR_DEVICE_OOM for device memory,
 * MF_ERR_OUT_OF_MEMORY for host memory, MF_ERR_DEVICE_LOST once the device
 * is lost (sticky: every later call returns it), MF_ERR_DEVICE otherwise. */
#ifndef MF_GPU_VK_H
#define MF_GPU_VK_H

#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include <moefuse/moefuse.h>

#include "gpu.h"

/* ------------------------------------------------------------- device -- */

/* Injected faults (tests only; see mf_vk_fault_* and gpu.h). */
enum {
    MF_VK_FAULT_NONE = 0,
    MF_VK_FAULT_OOM = 1,  /* the next device allocation fails (DEVICE_OOM) */
    MF_VK_FAULT_LOST = 2  /* the next submit reports the device lost */
};

typedef struct mf_vk_pipe mf_vk_pipe;

typedef struct mf_vk {
    VkInstance inst;
    VkDebugUtilsMessengerEXT messenger; /* with validation only */
    VkPhysicalDevice pdev;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    VkCommandPool cmd_pool;
    VkPipelineCache pcache;
    char *pcache_file; /* where the pipeline cache is saved, or NULL */

    /* What the device offers. */
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties mem;
    uint32_t subgroup_size;
    uint32_t subgroup_ops;     /* VkSubgroupFeatureFlags in compute */
    int subgroup_arith;        /* arithmetic and shuffle ops usable in compute
                                  shaders, power-of-two subgroup size */
    int int_dot;               /* packed 4x8 integer dot products enabled
                                  (VK_KHR_shader_integer_dot_product): the
                                  INT8 precision runs on the device;
                                  MOEFUSE_GPU_NO_INT8=1 turns it off */
    int int_dot_accel;         /* the driver calls the signed and mixed
                                  4x8 packed forms accelerated */
    uint32_t shared_bytes;     /* maxComputeSharedMemorySize */
    uint32_t max_wg_size;      /* maxComputeWorkGroupSize[0] and invocations */
    uint32_t max_groups_x;     /* maxComputeWorkGroupCount[0] */
    uint64_t max_binding;      /* bytes one storage binding may span */
    uint64_t max_alloc;        /* bytes of one allocation */
    int timestamps;            /* the queue writes timestamps */
    double ts_period_ns;       /* ns per timestamp tick */
    uint64_t ts_mask;          /* valid timestamp bits */

    /* Memory types (-1 = none). */
    int mt_device;   /* DEVICE_LOCAL */
    int mt_staging;  /* HOST_VISIBLE | HOST_COHERENT, system memory first */
    int mt_readback; /* HOST_VISIBLE | HOST_COHERENT, HOST_CACHED first */
    int mt_zero;     /* DEVICE_LOCAL | HOST_VISIBLE | HOST_COHERENT */
    int zero_copy;   /* mt_zero exists: inputs are written in place */
    int host_reads_device; /* the CPU may read mt_zero memory at full speed
                              (integrated and CPU devices); never on a
                              discrete GPU, whose BAR reads crawl */
    int out_to_host;       /* op outputs are written by the shaders straight
                              into host memory (readback type, system RAM)
                              instead of a device buffer plus a copy: on
                              GPUs where host_reads_device is 0 */
    int io_copy;           /* op inputs and outputs always go through
                              staging buffers and recorded copies */

    /* Fence wait: busy-poll vkGetFenceStatus this long, then block. */
    int64_t spin_ns;

    mf_vk_pipe *pipes; /* built pipelines (list) */
    int pstats; /* MOEFUSE_GPU_PIPELINE_STATS=1 and the driver offers
                   VK_KHR_pipeline_executable_properties: every pipeline
                   built keeps the driver's statistics (vk_pstats.c) */
    PFN_vkGetPipelineExecutablePropertiesKHR get_exec_props;
    PFN_vkGetPipelineExecutableStatisticsKHR get_exec_stats;

    int fault;  /* MF_VK_FAULT_*, consumed when it fires */
    int fault_skip; /* OOM: device allocations that pass before it fires */
    int lost;   /* the device was lost: everything fails from now on */

    int validation;         /* the validation layer is on */

    /* The kernel forms plans are recorded with (mf_gpu_forms_use). */
    int8_t forms[MF_GPU_FORM_COUNT_];
} mf_vk;

/* Device choice, copied from mf_ctx_options. */
typedef struct mf_vk_select {
    int index;        /* physical device index, -1 = best */
    const char *name; /* substring of the device name, or NULL */
    const char *uuid; /* 32 hex digits, or NULL */
    const char *cache_dir; /* pipeline cache directory, or NULL = none */
} mf_vk_select;

/* Brings up instance, device, queue, command pool and pipeline cache.
 * MF_ERR_DEVICE when there is no loader/ICD, no matching device, or the
 * device lacks Vulkan 1.1 / a compute queue / storage buffers. On error vk
 * is cleaned up. Reads MOEFUSE_VK_VALIDATION (1 = enable the Khronos
 * validation layer and count its messages) and MOEFUSE_GPU_SPIN_US (fence
 * busy-poll budget, default 2000 us on GPUs, 0 on CPU devices);
 * MOEFUSE_GPU_NO_SUBGROUP=1 makes shaders use their shared-memory
 * reductions even where subgroup arithmetic exists; MOEFUSE_GPU_IO=copy
 * sends op inputs and outputs through staging buffers and recorded copies,
 * MOEFUSE_GPU_IO=host makes shaders write outputs into host memory as on a
 * discrete GPU (tests and measurements cover every path on any device). */
mf_status mf_vk_init(mf_vk *vk, const mf_vk_select *sel);
/* Waits for the device to idle, saves the pipeline cache, destroys all. */
void mf_vk_fini(mf_vk *vk);

/* Validation warnings and errors seen by this process so far. */
int mf_vk_validation_messages(void);

/* Maps a VkResult to mf_status (marks the device lost on
 * VK_ERROR_DEVICE_LOST). */
mf_status mf_vk_status(mf_vk *vk, VkResult r);

/* ------------------------------------------------------------ buffers -- */

typedef enum mf_vk_mem {
    MF_VK_MEM_DEVICE = 0,  /* device-local, not mapped */
    MF_VK_MEM_STAGING,     /* host-visible coherent, mapped; copy source */
    MF_VK_MEM_READBACK,    /* host-visible coherent (cached if any), mapped;
                              copy destination the host reads */
    MF_VK_MEM_ZERO_COPY    /* device-local and host-visible, mapped; only
                              when vk->zero_copy */
} mf_vk_mem;

typedef struct mf_vk_buf {
    VkBuffer buf;
    VkDeviceMemory mem;
    VkDeviceSize size; /* bytes asked for, rounded up to 4 */
    void *map;         /* persistent mapping, or NULL */
} mf_vk_buf;

/* The memory type for `kind` among memoryTypeBits `bits`, or -1. */
int mf_vk_mem_type(const mf_vk *vk, uint32_t bits, mf_vk_mem kind);

/* A zero size is rounded up to 4 bytes. Storage + transfer src/dst usage. */
mf_status mf_vk_buf_create(mf_vk *vk, size_t bytes, mf_vk_mem kind,
                           mf_vk_buf *out);
/* Safe on a zeroed or already destroyed buffer. */
void mf_vk_buf_destroy(mf_vk *vk, mf_vk_buf *b);

/* An op input or output as the host sees it: `dev` is what shaders bind,
 * `map` where the host writes the input or reads the output. Inputs live in
 * zero-copy memory when the device has it (the host only writes there).
 * Outputs live in zero-copy memory only where the CPU may read device
 * memory (host_reads_device); on other GPUs the shaders write them into
 * host memory (out_to_host) or, failing that, into a device buffer that a
 * recorded copy brings to a readback buffer. The CPU never reads
 * device-local memory of a discrete GPU. */
typedef enum mf_vk_dir { MF_VK_IN = 0, MF_VK_OUT = 1 } mf_vk_dir;

typedef struct mf_vk_io {
    mf_vk_buf dev;
    mf_vk_buf host; /* staging or readback; buf is VK_NULL_HANDLE if direct */
    void *map;
    size_t bytes;
    mf_vk_dir dir;
} mf_vk_io;

mf_status mf_vk_io_create(mf_vk *vk, size_t bytes, mf_vk_dir dir,
                          mf_vk_io *out);
void mf_vk_io_destroy(mf_vk *vk, mf_vk_io *io);

/* One-shot transfers through a temporary staging buffer (not for hot
 * paths: allocates, records and waits). For weights and bench setup. */
mf_status mf_vk_upload(mf_vk *vk, const mf_vk_buf *dst, size_t offset,
                       const void *src, size_t bytes);
mf_status mf_vk_download(mf_vk *vk, const mf_vk_buf *src, size_t offset,
                         void *dst, size_t bytes);

/* ---------------------------------------------------------- pipelines -- */

/* An embedded SPIR-V module (shaders.h lists them). */
typedef struct mf_vk_shader {
    const char *name;
    const uint32_t *code;
    size_t bytes;
} mf_vk_shader;

#define MF_VK_MAX_BINDINGS 8
#define MF_VK_MAX_SPEC 10
#define MF_VK_MAX_PUSH 128

typedef struct mf_vk_pipe_desc {
    const mf_vk_shader *shader;
    uint32_t n_bindings;  /* storage buffers at set 0, bindings 0..n-1 */
    uint32_t push_bytes;  /* push constant block size, multiple of 4 */
    uint32_t n_spec;      /* 32-bit constants, constant_id 0..n_spec-1 */
    uint32_t spec[MF_VK_MAX_SPEC];
} mf_vk_pipe_desc;

#define MF_VK_PSTATS 8
typedef struct mf_vk_pstat {
    char name[40];
    double value;
} mf_vk_pstat;

struct mf_vk_pipe {
    mf_vk_pipe_desc desc;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout layout;
    VkPipeline pipe;
    mf_vk_pstat stats[MF_VK_PSTATS]; /* with vk->pstats */
    uint32_t n_stats;
    mf_vk_pipe *next;
};

/* Whether the physical device lists extension `name`. */
int mf_vk_has_device_ext(mf_vk *vk, const char *name);

/* Pipeline statistics (vk_pstats.c): whether the physical device reports
 * them (extension and feature; checked before the device is made, which
 * then enables both), the entry points once it exists (vk->pstats stays 0
 * where they are missing), and the capture after a pipeline is built. */
int mf_vk_pstats_offered(mf_vk *vk);
void mf_vk_pstats_load(mf_vk *vk);
void mf_vk_pstats_capture(mf_vk *vk, mf_vk_pipe *p);

/* The pipeline for desc: built once (through the pipeline cache), then
 * found again by value. Owned by vk. */
mf_status mf_vk_pipe_get(mf_vk *vk, const mf_vk_pipe_desc *desc,
                         const mf_vk_pipe **out);

/* ----------------------------------------------------------- programs -- */

/* A recorded command buffer with its fence, descriptor sets and two
 * timestamps around the work. Record once, run many times. */
typedef struct mf_vk_prog {
    VkCommandBuffer cb;
    VkFence fence;
    VkDescriptorPool dpool;
    VkQueryPool qpool;     /* VK_NULL_HANDLE without timestamps */
    uint32_t max_sets, used_sets;
    mf_status err;         /* first recording error */
    int recorded;          /* ended without error: runnable */
    int uploaded;          /* copies await the transfer->compute barrier */
    int dispatched;        /* dispatches await the compute->transfer one */
} mf_vk_prog;

/* A buffer range bound to one binding. range 0 = to the end. */
typedef struct mf_vk_bind {
    const mf_vk_buf *buf;
    VkDeviceSize offset, range;
} mf_vk_bind;

/* Allocates the command buffer, fence, room for max_dispatches descriptor
 * sets and the query pool. */
mf_status mf_vk_prog_init(mf_vk *vk, mf_vk_prog *p, uint32_t max_dispatches);
void mf_vk_prog_free(mf_vk *vk, mf_vk_prog *p);

/* Starts recording (resets any earlier recording and its sets) and writes
 * the start timestamp. */
mf_status mf_vk_prog_begin(mf_vk *vk, mf_vk_prog *p);
/* Copies an input's staging buffer to its device buffer (nothing when the
 * input is direct). Call for every input, then dispatch: the first dispatch
 * after uploads gets the transfer->compute barrier. */
void mf_vk_cmd_upload(mf_vk *vk, mf_vk_prog *p, const mf_vk_io *io);
/* Binds the buffers (pipe->desc.n_bindings of them), pushes `push`
 * (pipe->desc.push_bytes) and dispatches gx*gy*gz workgroups. */
void mf_vk_cmd_dispatch(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                        const mf_vk_bind *binds, const void *push,
                        uint32_t gx, uint32_t gy, uint32_t gz);
/* Makes the writes of earlier dispatches visible to later dispatches. */
void mf_vk_cmd_barrier(mf_vk_prog *p);
/* Makes dispatch writes visible and copies an output's device buffer to its
 * readback buffer (barrier only when direct). */
void mf_vk_cmd_download(mf_vk *vk, mf_vk_prog *p, const mf_vk_io *io);
/* A device buffer to device buffer copy (bench, staging of weights). */
void mf_vk_cmd_copy(mf_vk_prog *p, const mf_vk_buf *src, const mf_vk_buf *dst,
                    VkDeviceSize bytes);
/* Writes the end timestamp, makes every write visible to the host and ends
 * recording. Returns the first error of the recording. */
mf_status mf_vk_prog_end(mf_vk *vk, mf_vk_prog *p);

/* Submits the recorded program and waits for it (busy-poll, then block). */
mf_status mf_vk_prog_run(mf_vk *vk, mf_vk_prog *p);
/* Nanoseconds between the two timestamps of the last run; -1 without
 * timestamps or when unavailable. */
double mf_vk_prog_gpu_ns(mf_vk *vk, const mf_vk_prog *p);

/* -------------------------------------------------------------- plans -- */

#define MF_VK_PLAN_KEY 64  /* bytes of shape key */
#define MF_VK_PLAN_IO 6    /* io buffers per plan */

/* A recorded program for one op shape with its io buffers. */
typedef struct mf_vk_plan {
    unsigned char key[MF_VK_PLAN_KEY];
    size_t key_bytes;
    uint64_t last_use;
    int ready;             /* recorded; reusable */
    mf_vk_prog prog;
    mf_vk_io io[MF_VK_PLAN_IO];
    int n_io;
    mf_vk_buf scratch;     /* device memory of the program alone, or none */
    size_t bytes;          /* device bytes held (for the cache budget) */
} mf_vk_plan;

/* LRU cache of plans for one op. */
#define MF_VK_PLANS 8
typedef struct mf_vk_plans {
    mf_vk_plan slot[MF_VK_PLANS];
    int used[MF_VK_PLANS];
    uint64_t clock;
    size_t budget;         /* device bytes kept across calls */
    mf_vk_plan *last;      /* most recently run plan (bench replays it) */
} mf_vk_plans;

/* Finds the plan for key (key_bytes <= MF_VK_PLAN_KEY; zero-pad keys so
 * equal shapes give equal bytes). On a miss evicts the least recently used
 * slot and returns it empty (ready = 0, key set) for the caller to fill. */
mf_vk_plan *mf_vk_plans_get(mf_vk *vk, mf_vk_plans *c, const void *key,
                            size_t key_bytes);
/* Adds an io buffer to a plan being built; returns its index or -1 with
 * *st set on error. */
int mf_vk_plan_io(mf_vk *vk, mf_vk_plan *pl, size_t bytes, mf_vk_dir dir,
                  mf_status *st);
/* Gives a plan being built its scratch buffer: device-local memory only
 * its program reads and writes (intermediates between dispatches). */
mf_status mf_vk_plan_scratch(mf_vk *vk, mf_vk_plan *pl, size_t bytes);
/* Frees a plan's resources and empties it (its slot stays taken). */
void mf_vk_plan_clear(mf_vk *vk, mf_vk_plan *pl);
/* Frees a plan and gives its slot back (after a failed build). */
void mf_vk_plans_drop(mf_vk *vk, mf_vk_plans *c, mf_vk_plan *pl);
/* After a run: drops plans over the cache budget so big one-off shapes do
 * not pin device memory. Keeps `keep` unless it alone exceeds the budget. */
void mf_vk_plans_trim(mf_vk *vk, mf_vk_plans *c, mf_vk_plan *keep);
void mf_vk_plans_free(mf_vk *vk, mf_vk_plans *c);

/* Runs a ready plan: submit + wait, then records it as c->last. On error
 * the plan is cleared (it may be half-written by a failed submit). */
mf_status mf_vk_plan_run(mf_vk *vk, mf_vk_plans *c, mf_vk_plan *pl);

/* ------------------------------------------------------- pipeline cache -- */

/* Loads the on-disk pipeline cache for this device (missing or corrupt
 * files are ignored) and creates vk->pcache. */
void mf_vk_pcache_load(mf_vk *vk, const char *dir);
/* Saves vk->pcache to vk->pcache_file (errors ignored: the cache is an
 * optimization). */
void mf_vk_pcache_save(mf_vk *vk);

/* Monotonic clock in ns. */
int64_t mf_vk_now_ns(void);

#endif
