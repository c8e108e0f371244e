/* The memory a weight tensor reads, for the output-overlap checks of the ops
 * that take one tensor (mf_dequant_act, mf_qmv). Not installed. */
#ifndef MF_DISPATCH_TENSOR_SPAN_H
#define MF_DISPATCH_TENSOR_SPAN_H

#include "internal.h"

/* 1 when [p, p + bytes) intersects the rows of t (the last row counts its
 * dense size only, not the stride padding after it) or, for MLX types, its
 * scales or biases. t must have passed mf_tensor_check. */
static inline int mf_tensor_span_overlaps(const mf_tensor *t, const void *p,
                                          size_t bytes)
{
    size_t rb = mf_tensor_row_bytes(t->type, t->k);
    size_t stride = t->row_stride ? t->row_stride : rb;
    size_t rows = (size_t)t->e * (size_t)t->n;
    if (mf_overlap(p, bytes, t->data, (rows - 1) * stride + rb))
        return 1;
    if (t->type != MF_TYPE_MLX_Q4 && t->type != MF_TYPE_MLX_Q8)
        return 0;
    size_t pb = rows * (size_t)(t->k / t->group_size) *
                (t->scale_type == MF_TYPE_F32 ? 4u : 2u);
    return mf_overlap(p, bytes, t->scales, pb) ||
           mf_overlap(p, bytes, t->biases, pb);
}

/* Bytes one row of t streams: its codes plus, for MLX, its scales and
 * biases. */
static inline size_t mf_tensor_span_row_cost(const mf_tensor *t)
{
    size_t rb = mf_tensor_row_bytes(t->type, t->k);
    if (t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8)
        rb += 2 * (size_t)(t->k / t->group_size) *
              (t->scale_type == MF_TYPE_F32 ? 4u : 2u);
    return rb;
}

#endif
