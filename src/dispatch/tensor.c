/* Tensor descriptors: constructors, sizes, validation. */
#include "internal.h"

mf_tensor mf_tensor_dense(mf_type type, int64_t e, int64_t n, int64_t k,
                          const void *data)
{
    return (mf_tensor){.type = type, .e = e, .n = n, .k = k, .data = data};
}

mf_tensor mf_tensor_mlx(mf_type type, int64_t e, int64_t n, int64_t k,
                        int32_t group_size, mf_type scale_type,
                        const void *codes, const void *scales,
                        const void *biases)
{
    return (mf_tensor){.type = type, .e = e, .n = n, .k = k, .data = codes,
                       .group_size = group_size, .scale_type = scale_type,
                       .scales = scales, .biases = biases};
}

size_t mf_tensor_row_bytes(mf_type type, int64_t k)
{
    if (k < 1 || k > MF_MAX_DIM)
        return 0;
    switch (type) {
    case MF_TYPE_F32: return (size_t)k * 4;
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return (size_t)k * 2;
    case MF_TYPE_Q4_0: return (k % 32) ? 0 : (size_t)(k / 32) * 18;
    case MF_TYPE_Q8_0: return (k % 32) ? 0 : (size_t)(k / 32) * 34;
    case MF_TYPE_MLX_Q4: return (k % 8) ? 0 : (size_t)(k / 8) * 4;
    case MF_TYPE_MLX_Q8: return (k % 4) ? 0 : (size_t)(k / 4) * 4;
    default: return 0;
    }
}

static int is_float_type(mf_type t)
{
    return t == MF_TYPE_F32 || t == MF_TYPE_F16 || t == MF_TYPE_BF16;
}

mf_status mf_tensor_check(const mf_tensor *t)
{
    if (!t || !t->data)
        return MF_ERR_INVALID_ARG;
    if ((unsigned)t->type >= MF_TYPE_COUNT_)
        return MF_ERR_UNSUPPORTED;
    if (t->e < 1 || t->e > MF_MAX_DIM || t->n < 1 || t->n > MF_MAX_DIM ||
        t->k < 1 || t->k > MF_MAX_DIM)
        return MF_ERR_INVALID_ARG;
    size_t rb = mf_tensor_row_bytes(t->type, t->k);
    if (rb == 0)
        return MF_ERR_INVALID_ARG;
    size_t stride = t->row_stride ? t->row_stride : rb;
    if (stride < rb)
        return MF_ERR_INVALID_ARG;
    size_t rows, total;
    if (!mf_mul_size((size_t)t->e, (size_t)t->n, &rows) ||
        !mf_mul_size(rows, stride, &total))
        return MF_ERR_INVALID_ARG;
    int mlx = t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8;
    if (!mlx) {
        if (t->group_size || t->scales || t->biases ||
            t->scale_type != MF_TYPE_F32)
            return MF_ERR_INVALID_ARG;
        return MF_OK;
    }
    if (t->group_size != 32 && t->group_size != 64 && t->group_size != 128)
        return MF_ERR_UNSUPPORTED;
    if (!is_float_type(t->scale_type))
        return MF_ERR_UNSUPPORTED;
    if (t->k % t->group_size)
        return MF_ERR_INVALID_ARG;
    if (!t->scales || !t->biases)
        return MF_ERR_INVALID_ARG;
    size_t groups;
    if (!mf_mul_size(rows, (size_t)(t->k / t->group_size), &groups) ||
        !mf_mul_size(groups, 4, &total))
        return MF_ERR_INVALID_ARG;
    return MF_OK;
}
