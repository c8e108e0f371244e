/* moefuse — the context: CPU kernel set, thread pool, optional Vulkan device,
 * placement cache.
 *
 * Thread-safety: a context may be used by one thread at a time (its thread
 * pool serves one op at a time). Use one context per calling thread; distinct
 * contexts are independent. mf_ctx_create/destroy are thread-safe. */
#ifndef MOEFUSE_CTX_H
#define MOEFUSE_CTX_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mf_ctx mf_ctx;

/* CPU kernel sets. */
typedef enum mf_isa {
    MF_ISA_AUTO = 0,   /* the best set this CPU and build support */
    MF_ISA_SCALAR = 1, /* portable C, any machine */
    MF_ISA_AVX2 = 2,   /* x86-64 AVX2 + FMA + F16C */
    MF_ISA_AVX512 = 3, /* x86-64 AVX-512 F/BW/VL/DQ + VNNI (Ice Lake, Zen 4 and later) */
    MF_ISA_NEON = 4,   /* aarch64 Advanced SIMD (+dotprod when present) */
    MF_ISA_COUNT_
} mf_isa;

/* "auto", "scalar", "avx2", "avx512", "neon". */
const char *mf_isa_name(mf_isa isa);
/* Parses the names above; MF_ERR_INVALID_ARG for anything else. */
mf_status mf_isa_parse(const char *name, mf_isa *out);

/* Vulkan use. */
typedef enum mf_gpu_mode {
    MF_GPU_AUTO = 0,     /* use a device if one comes up; otherwise CPU-only */
    MF_GPU_DISABLED = 1, /* never touch Vulkan */
    MF_GPU_REQUIRED = 2  /* mf_ctx_create fails (MF_ERR_DEVICE) without one */
} mf_gpu_mode;

/* Options for mf_ctx_create. Start from mf_ctx_options_default(). Strings are
 * copied; the caller keeps ownership. */
typedef struct mf_ctx_options {
    int threads;            /* worker threads incl. the caller; 0 = one per
                               physical core (hwloc) */
    mf_isa isa;             /* MF_ISA_AUTO picks; the environment variable
                               MOEFUSE_ISA=scalar|avx2|avx512|neon overrides
                               AUTO (not an explicit choice) */
    int pin_threads;        /* 1 = pin workers to cores 1..n-1 with hwloc and
                               the thread that calls ops to core 0 (default);
                               0 = leave placement to the OS */
    mf_gpu_mode gpu;        /* default MF_GPU_AUTO */
    int gpu_index;          /* Vulkan physical device index; -1 = first
                               discrete, else first integrated, else any */
    const char *gpu_name;   /* substring of the device name, or NULL */
    const char *gpu_uuid;   /* 32 hex digits of the device UUID, or NULL */
    const char *cache_path; /* placement cache file; NULL = the default,
                               $XDG_CACHE_HOME/moefuse/placement.json */
} mf_ctx_options;

/* Defaults: threads 0, isa AUTO, pin 1, gpu AUTO, gpu_index -1, NULLs. */
mf_ctx_options mf_ctx_options_default(void);

/* Creates a context. opts NULL = defaults. On success *out owns a new context
 * (free it with mf_ctx_destroy). Errors: MF_ERR_INVALID_ARG (out NULL,
 * threads < 0 or > 1024, bad enum, MOEFUSE_ISA unparsable), MF_ERR_UNSUPPORTED
 * (an ISA this CPU or build lacks), MF_ERR_OUT_OF_MEMORY, MF_ERR_DEVICE (only
 * with MF_GPU_REQUIRED). With MF_GPU_AUTO a missing or unusable GPU is not an
 * error: the context is CPU-only and mf_ctx_gpu_status says why. On error
 * *out is left untouched. */
mf_status mf_ctx_create(const mf_ctx_options *opts, mf_ctx **out);

/* Frees everything the context owns. NULL is a no-op. */
void mf_ctx_destroy(mf_ctx *ctx);

/* The kernel set in use (never AUTO). NULL ctx gives MF_ISA_SCALAR. */
mf_isa mf_ctx_isa(const mf_ctx *ctx);
/* Number of threads ops use (>= 1). NULL ctx gives 1. */
int mf_ctx_threads(const mf_ctx *ctx);
/* MF_OK when a GPU is in use; otherwise why not (MF_ERR_UNSUPPORTED when the
 * build has no Vulkan or gpu was DISABLED, MF_ERR_DEVICE when none came up,
 * MF_ERR_DEVICE_LOST after a loss). */
mf_status mf_ctx_gpu_status(const mf_ctx *ctx);

/* Vulkan physical device kinds (VkPhysicalDeviceType). */
typedef enum mf_gpu_type {
    MF_GPU_TYPE_OTHER = 0,
    MF_GPU_TYPE_INTEGRATED = 1,
    MF_GPU_TYPE_DISCRETE = 2,
    MF_GPU_TYPE_VIRTUAL = 3,
    MF_GPU_TYPE_CPU = 4 /* a software rasterizer such as lavapipe */
} mf_gpu_type;

/* The context's Vulkan device. */
typedef struct mf_gpu_info {
    char name[256];          /* VkPhysicalDeviceProperties::deviceName */
    uint32_t vendor_id, device_id;
    uint32_t driver_version; /* vendor-encoded, as Vulkan reports it */
    uint32_t api_version;    /* VK_MAKE_API_VERSION encoding */
    char uuid[33];           /* deviceUUID as 32 lowercase hex digits (the
                                form mf_ctx_options.gpu_uuid takes) */
    mf_gpu_type type;
    int zero_copy;           /* 1: a memory type is both device-local and
                                host-visible; op inputs are written in place
                                (outputs too on integrated/CPU devices; a
                                discrete GPU's outputs always come back
                                through a staging copy) */
    int subgroup_size;       /* reported subgroup size */
    int subgroup_arithmetic; /* 1: reductions use subgroup operations,
                                0: shared-memory trees */
    int timestamps;          /* 1: the compute queue writes timestamps */
    int int8_dot;            /* 1: MF_PREC_INT8 runs on the device (packed
                                4x8 integer dot products,
                                VK_KHR_shader_integer_dot_product); 0: GPU
                                calls with MF_PREC_INT8 compute EXACT */
    int int8_dot_accelerated; /* 1: the driver reports the signed and
                                 mixed-sign packed forms accelerated */
    uint32_t shared_memory_bytes; /* per workgroup */
    uint64_t device_local_bytes;  /* sum of the device-local heaps */
    uint64_t max_binding_bytes;   /* the most one storage binding spans
                                     (maxStorageBufferRange, at most one
                                     allocation): larger weight tensors are
                                     split over buffers (weights.h) */
} mf_gpu_info;

/* Fills *out with the context's GPU. Errors: MF_ERR_INVALID_ARG (NULL
 * argument); otherwise, when the context has no usable GPU, the status
 * mf_ctx_gpu_status gives (MF_ERR_UNSUPPORTED, MF_ERR_DEVICE,
 * MF_ERR_DEVICE_LOST). *out is untouched on error. */
mf_status mf_ctx_gpu_info(const mf_ctx *ctx, mf_gpu_info *out);
/* The placement cache read at mf_ctx_create (from opts.cache_path, else
 * $XDG_CACHE_HOME/moefuse/placement.json, else ~/.cache/moefuse/placement.json):
 * MF_OK when it was loaded and is used by the router; MF_ERR_IO when there is
 * none (the machine is unprofiled: run moefuse-profile) or it could not be
 * read; MF_ERR_CACHE_FORMAT when it is corrupt, truncated, malformed or of
 * another format version; MF_ERR_CACHE_MISMATCH when it was made on another
 * machine, for another CPU kernel set or thread count, another GPU or driver,
 * or by another library version. Any status but MF_OK means the cache is
 * ignored and the built-in rule places ops (see route.h). NULL ctx gives
 * MF_ERR_INVALID_ARG. */
mf_status mf_ctx_cache_status(const mf_ctx *ctx);
/* The placement cache path the context uses (static for the context's
 * lifetime), or NULL when none could be formed (no $XDG_CACHE_HOME or $HOME
 * and no opts.cache_path) or ctx is NULL. */
const char *mf_ctx_cache_path(const mf_ctx *ctx);

/* What this CPU offers, found by CPUID (x86) or HWCAP (aarch64) and hwloc. */
typedef struct mf_cpu_info {
    char model[128];     /* brand string, or "unknown" */
    char arch[16];       /* "x86_64", "aarch64", ... */
    int physical_cores;  /* hwloc; >= 1 */
    int logical_cpus;    /* hwloc; >= 1 */
    int64_t l1d_bytes, l2_bytes, l3_bytes; /* per core / shared; 0 unknown */
    /* feature flags, 1 = present (and usable by the OS) */
    int sse42, avx, avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq,
        avx512vnni, avx512bf16, avxvnni;
    int neon, asimddp, asimdhp, sve;
    /* kernel sets this build can run here, indexed by mf_isa */
    int isa_available[MF_ISA_COUNT_];
    mf_isa isa_best;
} mf_cpu_info;

/* Fills *out (MF_ERR_INVALID_ARG if NULL). Probes once, then cached;
 * thread-safe. */
mf_status mf_cpu_info_get(mf_cpu_info *out);

#ifdef __cplusplus
}
#endif
#endif
