/* Weight tensors for the quantized-weight tests (test_dequant, test_qmv):
 * random codes and scales in every format, optional row padding and odd
 * byte offsets, and an oracle that decodes the formats from their
 * definitions (FACTS.md section 2) without calling library code. */
#ifndef MFT_QDATA_H
#define MFT_QDATA_H

#include "common.h"

/* One weight format: type, MLX group size and scale type (0 / F32 for the
 * non-MLX types). */
typedef struct qd_variant {
    mf_type type;
    int32_t group;
    mf_type st;
} qd_variant;

/* Every format the library reads: F32, F16, BF16, Q4_0, Q8_0, and MLX_Q4 /
 * MLX_Q8 with each group size and scale type. Returns the count. */
int qd_variants(qd_variant *out, int cap);
/* "mlx_q4/g64/bf16" style name. Static storage, overwritten per call. */
const char *qd_name(const qd_variant *v);
/* 1 when K is a legal width for the variant. */
int qd_k_legal(const qd_variant *v, int64_t K);

typedef struct qd_tensor {
    mf_tensor t;
    void *data, *scales, *biases; /* mft_alloc'd */
} qd_tensor;

/* A random [e, n, k] tensor of variant v: uniformly random codes (every
 * code value occurs), random finite scales (sign included for ggml d), for
 * MLX biases in [-0.1, 0]; float types hold N(0, 0.05) values. Rows are
 * `pad` bytes longer than dense (row_stride set when pad > 0); the data and
 * the MLX arrays start `offset` bytes past a 64-byte boundary. */
qd_tensor qd_make(mft_rng *r, const qd_variant *v, int64_t e, int64_t n,
                  int64_t k, size_t pad, size_t offset);
void qd_free(qd_tensor *q);

/* The value of element k of row r (absolute row of the [E*N, K] stack) as
 * the format defines it in f32, decoded here independently:
 * Q4_0 d*(q-8), Q8_0 d*q, MLX round(round(scale*q) + bias). */
double qd_weight(const mf_tensor *t, int64_t r, int64_t k);
/* The magnitude of what the format adds up to make element k of row r:
 * |scale * q| + |bias| for MLX (the f32 rounding of each is relative to
 * these, not to the sum), |w| for the other types. */
double qd_weight_mag(const mf_tensor *t, int64_t r, int64_t k);
/* binary16 bits to a double, decoded from the IEEE definition. */
double qd_f16(uint16_t h);

#endif
