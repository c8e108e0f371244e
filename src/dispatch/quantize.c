/* Quantizers that make test and benchmark data in every weight format. */
#include <math.h>
#include <string.h>

#include "internal.h"

static void put_scale(mf_type st, void *arr, size_t i, float v)
{
    if (st == MF_TYPE_F32)
        ((float *)arr)[i] = v;
    else if (st == MF_TYPE_F16)
        ((uint16_t *)arr)[i] = mf_f32_to_f16(v);
    else
        ((uint16_t *)arr)[i] = mf_f32_to_bf16(v);
}

static float get_scale(mf_type st, const void *arr, size_t i)
{
    if (st == MF_TYPE_F32)
        return ((const float *)arr)[i];
    if (st == MF_TYPE_F16)
        return mf_f16_to_f32(((const uint16_t *)arr)[i]);
    return mf_bf16_to_f32(((const uint16_t *)arr)[i]);
}

static void q4_0_block(const float *x, unsigned char *dst)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    float d = max / -8.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = mf_f32_to_f16(d);
    memcpy(dst, &dh, 2);
    for (int j = 0; j < 16; j++) {
        int a = (int)(x[j] * id + 8.5f), b = (int)(x[j + 16] * id + 8.5f);
        a = a < 0 ? 0 : a > 15 ? 15 : a;
        b = b < 0 ? 0 : b > 15 ? 15 : b;
        dst[2 + j] = (unsigned char)(a | (b << 4));
    }
}

static void q8_0_block(const float *x, unsigned char *dst)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = mf_f32_to_f16(d);
    memcpy(dst, &dh, 2);
    for (int j = 0; j < 32; j++) {
        float v = roundf(x[j] * id);
        v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
        dst[2 + j] = (unsigned char)(int8_t)v;
    }
}

static void mlx_row(const float *x, int64_t k, int bits, int32_t g,
                    mf_type st, uint32_t *codes, void *scales, void *biases,
                    size_t gi0)
{
    int per_word = 32 / bits;
    unsigned qmax = (1u << bits) - 1u;
    memset(codes, 0, (size_t)(k / per_word) * 4);
    for (int64_t g0 = 0; g0 < k; g0 += g) {
        float mn = x[g0], mx = x[g0];
        for (int64_t j = g0; j < g0 + g; j++) {
            mn = fminf(mn, x[j]);
            mx = fmaxf(mx, x[j]);
        }
        size_t gi = gi0 + (size_t)(g0 / g);
        put_scale(st, scales, gi, (mx - mn) / (float)qmax);
        put_scale(st, biases, gi, mn);
        float s = get_scale(st, scales, gi), b = get_scale(st, biases, gi);
        for (int64_t j = g0; j < g0 + g; j++) {
            float v = s != 0.0f ? roundf((x[j] - b) / s) : 0.0f;
            unsigned q = v < 0.0f ? 0u : v > (float)qmax ? qmax : (unsigned)v;
            codes[j / per_word] |= q << (bits * (int)(j % per_word));
        }
    }
}

mf_status mf_quantize_rows(mf_type type, const float *src, int64_t rows,
                           int64_t k, void *dst, int32_t group_size,
                           mf_type scale_type, void *scales, void *biases)
{
    if (!src || !dst || rows < 1 || k < 1 || k > MF_MAX_DIM ||
        rows > (int64_t)MF_MAX_DIM * MF_MAX_DIM)
        return MF_ERR_INVALID_ARG;
    if ((unsigned)type >= MF_TYPE_COUNT_ || type <= MF_TYPE_BF16)
        return MF_ERR_UNSUPPORTED;
    size_t rb = mf_tensor_row_bytes(type, k);
    if (!rb)
        return MF_ERR_INVALID_ARG;
    if (type == MF_TYPE_Q4_0 || type == MF_TYPE_Q8_0) {
        for (int64_t r = 0; r < rows; r++) {
            unsigned char *row = (unsigned char *)dst + (size_t)r * rb;
            for (int64_t b = 0; b < k / 32; b++) {
                const float *x = src + r * k + b * 32;
                if (type == MF_TYPE_Q4_0)
                    q4_0_block(x, row + b * 18);
                else
                    q8_0_block(x, row + b * 34);
            }
        }
        return MF_OK;
    }
    if (group_size != 32 && group_size != 64 && group_size != 128)
        return MF_ERR_UNSUPPORTED;
    if (scale_type != MF_TYPE_F32 && scale_type != MF_TYPE_F16 &&
        scale_type != MF_TYPE_BF16)
        return MF_ERR_UNSUPPORTED;
    if (k % group_size || !scales || !biases)
        return MF_ERR_INVALID_ARG;
    int bits = type == MF_TYPE_MLX_Q4 ? 4 : 8;
    for (int64_t r = 0; r < rows; r++)
        mlx_row(src + r * k, k, bits, group_size, scale_type,
                (uint32_t *)((unsigned char *)dst + (size_t)r * rb), scales,
                biases, (size_t)r * (size_t)(k / group_size));
    return MF_OK;
}
