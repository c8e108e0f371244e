/* Shared by the fused expert ops (op_moe_gate_up.c, op_moe_down.c): the
 * grouping of (token, slot) pairs by expert, call scratch, byte extents of
 * weight tensors for the overlap checks. Not installed. */
#ifndef MF_DISPATCH_MOE_PLAN_H
#define MF_DISPATCH_MOE_PLAN_H

#include "internal.h"

/* Call scratch (expert groups, quantized activations, per-thread blocks)
 * lives in a buffer on the caller's stack up to this many bytes; a larger
 * need takes one malloc per call. One-token decode of every common model
 * fits with up to 16 threads (the largest, Mixtral's INT8 down step, needs
 * 36 KiB: 2 rows of 14336 quantized activations), so decode never
 * allocates. */
#define MF_MOE_STACK_BYTES (48 * 1024)

/* At most this many tokens per kernel call; their x/y pointer arrays and
 * result blocks live on the worker's stack. */
#define MF_MOE_MCHUNK 16

/* Pairs p = t * k + j grouped by expert idx[p]: group g holds expert
 * expert[g] and the pairs pair[start[g] .. start[g + 1]) in ascending order.
 * Experts ascend with g; only experts that occur have a group. */
typedef struct mf_moe_groups {
    int32_t n_groups;
    int32_t *expert; /* [n_groups] */
    int32_t *start;  /* [n_groups + 1] */
    int32_t *pair;   /* [n_pairs] */
} mf_moe_groups;

/* Bytes of memory mf_moe_groups_build needs for n_pairs pairs over E
 * experts (a multiple of 64). */
size_t mf_moe_groups_bytes(int64_t n_pairs, int64_t E);

/* Groups validated indices idx[0 .. n_pairs) (each in [0, E)) into g, using
 * `mem` (mf_moe_groups_bytes of them, 4-byte aligned). Deterministic: the
 * result depends only on idx. */
void mf_moe_groups_build(const int32_t *idx, int64_t n_pairs, int64_t E,
                         void *mem, mf_moe_groups *g);

/* Carves consecutive 64-byte aligned pieces out of one scratch block. Run a
 * first pass with base NULL to add up the size, then a second one on the
 * block. */
typedef struct mf_moe_carve {
    unsigned char *base;
    size_t used;
} mf_moe_carve;

/* Reserves `bytes` (rounded up to 64); returns the piece (NULL when sizing).
 * Sets *ok to 0 on size overflow. */
void *mf_moe_take(mf_moe_carve *c, size_t bytes, int *ok);

/* A 64-byte aligned scratch block of `bytes`: `stack` (MF_MOE_STACK_BYTES,
 * 64-byte aligned) when it fits, else malloc'd, *heap then holding what to
 * release. Returns NULL on allocation failure. Release with
 * mf_moe_scratch_free(*heap) (a no-op for the stack block, *heap NULL). */
void *mf_moe_scratch_get(size_t bytes, unsigned char *stack, void **heap);
void mf_moe_scratch_free(void *heap);

/* 1 when [p, p + bytes) overlaps any memory the tensor reads (rows, MLX
 * scales and biases). t must have passed mf_tensor_check. */
int mf_moe_tensor_overlaps(const mf_tensor *t, const void *p, size_t bytes);

/* Bytes one row of t streams (codes plus MLX scales and biases). */
size_t mf_moe_row_cost(const mf_tensor *t);

/* A run of consecutive rows of a weight tensor. */
typedef struct mf_moe_rows {
    const mf_tensor *w;
    int64_t r0, nr;
} mf_moe_rows;

/* How far ahead of the rows being computed the ops request rows from
 * memory. The kernels stream 16 rows at once, more streams than the
 * hardware prefetchers follow: measured on one thread with Q4_0 weights
 * from DRAM, the requests raise gate/up from 8.5 to 11.5 GB/s and down from
 * 6.0 to 10.0 GB/s (INT8; EXACT likewise). 16 to 64 KiB all do the same. */
#define MF_MOE_PREFETCH_BYTES (32 * 1024)

/* Requests the rows' bytes (codes, MLX scales and biases) toward the
 * cache; returns their count (nr * mf_moe_row_cost). */
size_t mf_moe_prefetch(const mf_moe_rows *r);

/* 1 when every idx[0 .. n) lies in [0, E). */
int mf_moe_idx_valid(const int32_t *idx, int64_t n, int64_t E);

#endif
