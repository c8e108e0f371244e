/* moefuse — version, status codes, element types.
 *
 * Everything here is plain data: no function in this header allocates, and
 * every function is thread-safe. */
#ifndef MOEFUSE_BASE_H
#define MOEFUSE_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MF_VERSION_MAJOR 0
#define MF_VERSION_MINOR 1
#define MF_VERSION_PATCH 0
#define MF_VERSION_STRING "0.1.0"
/* Encoded as major * 10000 + minor * 100 + patch. */
#define MF_VERSION_NUMBER \
    (MF_VERSION_MAJOR * 10000 + MF_VERSION_MINOR * 100 + MF_VERSION_PATCH)

/* The version of the linked library, "MAJOR.MINOR.PATCH". Static storage. */
const char *mf_version(void);

/* Every fallible function returns one of these. MF_OK is 0; every error is
 * positive. A function that returns an error leaves its outputs and any state
 * it was given exactly as they were, unless its documentation says otherwise. */
typedef enum mf_status {
    MF_OK = 0,
    MF_ERR_INVALID_ARG = 1,  /* NULL pointer, zero/negative/oversized dimension,
                                k > E, size overflow, index out of range ... */
    MF_ERR_UNSUPPORTED = 2,  /* valid request this build or machine cannot do:
                                an ISA the CPU lacks, a type/format pair the op
                                does not take, GPU asked for but absent */
    MF_ERR_OUT_OF_MEMORY = 3,/* host allocation failed */
    MF_ERR_DEVICE = 4,       /* a Vulkan call failed (no loader, no device,
                                pipeline or submit error) */
    MF_ERR_DEVICE_LOST = 5,  /* the GPU was lost; the context runs on the CPU */
    MF_ERR_DEVICE_OOM = 6,   /* device memory exhausted */
    MF_ERR_IO = 7,           /* a file could not be read or written */
    MF_ERR_CACHE_FORMAT = 8, /* placement cache corrupt, truncated, wrong version */
    MF_ERR_CACHE_MISMATCH = 9,/* placement cache from another machine/library */
    MF_ERR_FILE_FORMAT = 10, /* a weight file is malformed */
    MF_STATUS_COUNT_
} mf_status;

/* A short English description ("invalid argument"). Never NULL: unknown values
 * give "unknown status". Static storage. */
const char *mf_status_str(mf_status s);

/* Element types and quantized weight formats.
 *
 * Float types hold one value per element (IEEE binary32, binary16, bfloat16).
 *
 * Quantized formats (weights only; rows are quantized along their last
 * dimension K):
 *  - MF_TYPE_Q4_0: ggml blocks of 32: { f16 d; uint8 qs[16]; } 18 bytes.
 *    Element j (0..15) = low nibble of qs[j], element j+16 = high nibble;
 *    w = d * (q - 8). K must be a multiple of 32.
 *  - MF_TYPE_Q8_0: ggml blocks of 32: { f16 d; int8 qs[32]; } 34 bytes;
 *    w = d * q. K must be a multiple of 32.
 *  - MF_TYPE_MLX_Q4 / MF_TYPE_MLX_Q8: MLX affine. Codes packed in uint32
 *    words, lowest bits first (element 0 = bits 0..3 of word 0 for 4-bit,
 *    bits 0..7 for 8-bit). One scale and one bias per group of `group_size`
 *    (32, 64 or 128) consecutive elements of a row, stored in separate arrays
 *    of `scale_type` (F16, BF16 or F32); w = scale * q + bias.
 *    K must be a multiple of group_size. */
typedef enum mf_type {
    MF_TYPE_F32 = 0,
    MF_TYPE_F16 = 1,
    MF_TYPE_BF16 = 2,
    MF_TYPE_Q4_0 = 3,
    MF_TYPE_Q8_0 = 4,
    MF_TYPE_MLX_Q4 = 5,
    MF_TYPE_MLX_Q8 = 6,
    MF_TYPE_COUNT_
} mf_type;

/* "f32", "q4_0", "mlx_q4" ...; "?" for an unknown value. Static storage. */
const char *mf_type_name(mf_type t);

/* Fused activations applied element-wise. GELU is the erf form. */
typedef enum mf_act {
    MF_ACT_NONE = 0,
    MF_ACT_SILU = 1,      /* x * sigmoid(x) */
    MF_ACT_GELU = 2,      /* 0.5 x (1 + erf(x / sqrt 2)) */
    MF_ACT_GELU_TANH = 3, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    MF_ACT_COUNT_
} mf_act;

/* Which implementation runs an op. MF_IMPL_AUTO lets the context decide (the
 * best CPU kernel set, or the GPU when the placement router says so). The
 * others force one, for tests and benchmarks; forcing one that this build or
 * machine does not have returns MF_ERR_UNSUPPORTED.
 *  - MF_IMPL_REF: the portable scalar reference, single-threaded.
 *  - MF_IMPL_UNFUSED: the unfused baseline a plain C engine runs (separate
 *    passes, full dequantization + OpenBLAS). Same function, other rounding.
 *  - MF_IMPL_CPU: the context's CPU kernel set (its ISA and threads).
 *  - MF_IMPL_SCALAR / AVX2 / AVX512 / NEON: that kernel set, on the
 *    context's threads. SCALAR is the reference kernels run threaded.
 *  - MF_IMPL_GPU: the context's Vulkan device. */
typedef enum mf_impl {
    MF_IMPL_AUTO = 0,
    MF_IMPL_REF = 1,
    MF_IMPL_UNFUSED = 2,
    MF_IMPL_CPU = 3,
    MF_IMPL_SCALAR = 4,
    MF_IMPL_AVX2 = 5,
    MF_IMPL_AVX512 = 6,
    MF_IMPL_NEON = 7,
    MF_IMPL_GPU = 8,
    MF_IMPL_COUNT_
} mf_impl;

/* "auto", "ref", "unfused", "cpu", "scalar", "avx2", "avx512", "neon", "gpu". */
const char *mf_impl_name(mf_impl i);

#ifdef __cplusplus
}
#endif
#endif
