/* moefuse — tensor descriptors for weights (float or quantized).
 *
 * A descriptor only points at memory; it never owns it. The caller keeps the
 * memory alive and unchanged for the duration of each call that reads it.
 * GPU calls keep a device copy of each tensor they read and reuse it while
 * the same descriptor comes back: from a tensor's first GPU use until it is
 * evicted, its memory must not change (weights.h). */
#ifndef MOEFUSE_TENSOR_H
#define MOEFUSE_TENSOR_H

#include "base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A stack of E matrices of N rows by K columns: shape [E, N, K], K innermost.
 * A single matrix is E = 1.
 *
 *  - type: any mf_type. Float types hold K elements per row; Q4_0/Q8_0 hold
 *    K/32 blocks per row; MLX types hold K*bits/32 uint32 code words per row.
 *  - row_stride: bytes from one row's start to the next (rows of all experts
 *    are consecutive: row r of expert e is row e*N + r). 0 means dense
 *    (mf_tensor_row_bytes). Must be >= the dense row size.
 *  - data: the rows (codes for MLX).
 *  - MLX types only: group_size (32, 64 or 128), scale_type (F16, BF16 or F32),
 *    scales and biases: dense arrays [E*N, K/group_size] of scale_type.
 *    For other types these fields must be 0 / NULL.
 * Alignment: none required. Limits: 1 <= E, N <= 2^24; 1 <= K <= 2^24; the
 * total byte size must fit in size_t. */
typedef struct mf_tensor {
    mf_type type;
    int64_t e, n, k;
    size_t row_stride;
    const void *data;
    int32_t group_size;
    mf_type scale_type;
    const void *scales;
    const void *biases;
} mf_tensor;

/* Convenience constructors (no validation; mf_tensor_check validates). */
mf_tensor mf_tensor_dense(mf_type type, int64_t e, int64_t n, int64_t k,
                          const void *data);
mf_tensor mf_tensor_mlx(mf_type type, int64_t e, int64_t n, int64_t k,
                        int32_t group_size, mf_type scale_type,
                        const void *codes, const void *scales,
                        const void *biases);

/* Dense bytes of one row of K elements of `type` (for MLX: the code words
 * only). 0 if K is not a whole number of blocks/words for the type, or on
 * overflow. */
size_t mf_tensor_row_bytes(mf_type type, int64_t k);

/* Validates a descriptor: MF_OK, MF_ERR_INVALID_ARG (NULL t or data, bad
 * dims, K not a multiple of the block/group, row_stride too small, overflow,
 * MLX fields missing or set on non-MLX types) or MF_ERR_UNSUPPORTED (unknown
 * type, group size, or scale type). */
mf_status mf_tensor_check(const mf_tensor *t);

/* Scalar conversions (round to nearest even; NaN stays NaN). */
uint16_t mf_f32_to_f16(float f);
float mf_f16_to_f32(uint16_t h);
uint16_t mf_f32_to_bf16(float f);
float mf_bf16_to_f32(uint16_t h);

/* Quantizers for making test and benchmark data (not a hot path).
 * Quantize rows [rows, k] of f32 into `type`:
 *  - Q4_0 / Q8_0: dst holds rows*k/32 blocks; d = absmax / -8 (Q4_0, sign of
 *    the max-magnitude element, as ggml) or absmax / 127 (Q8_0).
 *  - MLX_Q4 / MLX_Q8: dst holds the code words; scales/biases
 *    [rows, k/group] of scale_type; per group scale = (max-min)/(2^bits-1),
 *    bias = min (scale 0 when max == min). Scales and biases are rounded to
 *    scale_type first and the codes chosen against the rounded values.
 * Errors: MF_ERR_INVALID_ARG (NULL, k not a multiple of the block/group),
 * MF_ERR_UNSUPPORTED (float type). */
mf_status mf_quantize_rows(mf_type type, const float *src, int64_t rows,
                           int64_t k, void *dst, int32_t group_size,
                           mf_type scale_type, void *scales, void *biases);

#ifdef __cplusplus
}
#endif
#endif
