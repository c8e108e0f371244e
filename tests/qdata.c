#include "qdata.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int qd_variants(qd_variant *out, int cap)
{
    static const mf_type plain[] = {MF_TYPE_F32, MF_TYPE_F16, MF_TYPE_BF16,
                                    MF_TYPE_Q4_0, MF_TYPE_Q8_0};
    static const int32_t groups[] = {32, 64, 128};
    static const mf_type sts[] = {MF_TYPE_F16, MF_TYPE_BF16, MF_TYPE_F32};
    int n = 0;
    for (int i = 0; i < 5 && n < cap; i++)
        out[n++] = (qd_variant){plain[i], 0, MF_TYPE_F32};
    for (int t = 0; t < 2; t++)
        for (int g = 0; g < 3; g++)
            for (int s = 0; s < 3 && n < cap; s++)
                out[n++] = (qd_variant){t ? MF_TYPE_MLX_Q8 : MF_TYPE_MLX_Q4,
                                        groups[g], sts[s]};
    return n;
}

const char *qd_name(const qd_variant *v)
{
    static char buf[64];
    if (v->type == MF_TYPE_MLX_Q4 || v->type == MF_TYPE_MLX_Q8)
        snprintf(buf, sizeof buf, "%s/g%d/%s", mf_type_name(v->type),
                 (int)v->group, mf_type_name(v->st));
    else
        snprintf(buf, sizeof buf, "%s", mf_type_name(v->type));
    return buf;
}

int qd_k_legal(const qd_variant *v, int64_t K)
{
    switch (v->type) {
    case MF_TYPE_F32:
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return K >= 1;
    case MF_TYPE_Q4_0:
    case MF_TYPE_Q8_0: return K >= 32 && K % 32 == 0;
    default: return K >= v->group && K % v->group == 0;
    }
}

static size_t dense_row_bytes(mf_type t, int64_t k)
{
    switch (t) {
    case MF_TYPE_F32: return (size_t)k * 4;
    case MF_TYPE_F16:
    case MF_TYPE_BF16: return (size_t)k * 2;
    case MF_TYPE_Q4_0: return (size_t)(k / 32) * 18;
    case MF_TYPE_Q8_0: return (size_t)(k / 32) * 34;
    case MF_TYPE_MLX_Q4: return (size_t)k / 2;
    default: return (size_t)k;
    }
}

static void put_param(mf_type st, void *arr, size_t i, float v)
{
    unsigned char *p = arr;
    if (st == MF_TYPE_F32) {
        memcpy(p + 4 * i, &v, 4);
    } else {
        uint16_t h = st == MF_TYPE_F16 ? mf_f32_to_f16(v) : mf_f32_to_bf16(v);
        memcpy(p + 2 * i, &h, 2);
    }
}

qd_tensor qd_make(mft_rng *r, const qd_variant *v, int64_t e, int64_t n,
                  int64_t k, size_t pad, size_t offset)
{
    qd_tensor q;
    memset(&q, 0, sizeof q);
    size_t rows = (size_t)(e * n), rb = dense_row_bytes(v->type, k);
    size_t stride = rb + pad;
    q.data = mft_alloc(rows * stride, offset);
    unsigned char *d = q.data;
    for (size_t i = 0; i < rows * stride; i++)
        d[i] = (unsigned char)mft_next(r);
    for (size_t row = 0; row < rows; row++) {
        unsigned char *p = d + row * stride;
        for (int64_t j = 0; j < k; j++) {
            float f = 0.05f * mft_normal(r);
            if (v->type == MF_TYPE_F32) {
                memcpy(p + 4 * j, &f, 4);
            } else if (v->type == MF_TYPE_F16 || v->type == MF_TYPE_BF16) {
                uint16_t h = v->type == MF_TYPE_F16 ? mf_f32_to_f16(f)
                                                    : mf_f32_to_bf16(f);
                memcpy(p + 2 * j, &h, 2);
            }
        }
        if (v->type == MF_TYPE_Q4_0 || v->type == MF_TYPE_Q8_0) {
            size_t bs = v->type == MF_TYPE_Q4_0 ? 18 : 34;
            for (int64_t b = 0; b < k / 32; b++) {
                float s = mft_uniform(r, 0.001f, 0.02f);
                if (mft_next(r) & 1)
                    s = -s;
                uint16_t h = mf_f32_to_f16(s);
                memcpy(p + b * bs, &h, 2);
            }
        }
    }
    if (v->type == MF_TYPE_MLX_Q4 || v->type == MF_TYPE_MLX_Q8) {
        size_t ng = rows * (size_t)(k / v->group);
        size_t sb = v->st == MF_TYPE_F32 ? 4 : 2;
        q.scales = mft_alloc(ng * sb, offset);
        q.biases = mft_alloc(ng * sb, offset);
        for (size_t i = 0; i < ng; i++) {
            put_param(v->st, q.scales, i, mft_uniform(r, 0.001f, 0.01f));
            put_param(v->st, q.biases, i, mft_uniform(r, -0.1f, 0.0f));
        }
        q.t = mf_tensor_mlx(v->type, e, n, k, v->group, v->st, q.data,
                            q.scales, q.biases);
    } else {
        q.t = mf_tensor_dense(v->type, e, n, k, q.data);
    }
    q.t.row_stride = pad ? stride : 0;
    return q;
}

void qd_free(qd_tensor *q)
{
    mft_free(q->data);
    mft_free(q->scales);
    mft_free(q->biases);
    memset(q, 0, sizeof *q);
}

double qd_f16(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp((double)(1024 + m), e - 25);
    return sign ? -v : v;
}

static double bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t u16_at(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static double param(mf_type st, const void *arr, size_t i)
{
    const unsigned char *p = arr;
    if (st == MF_TYPE_F32) {
        uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                     (uint32_t)p[4 * i + 2] << 16 |
                     (uint32_t)p[4 * i + 3] << 24;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    uint16_t h = u16_at(p + 2 * i);
    return st == MF_TYPE_F16 ? qd_f16(h) : bf16(h);
}

double qd_weight(const mf_tensor *t, int64_t r, int64_t k)
{
    size_t stride = t->row_stride ? t->row_stride
                                  : dense_row_bytes(t->type, t->k);
    const unsigned char *row = (const unsigned char *)t->data + (size_t)r * stride;
    switch (t->type) {
    case MF_TYPE_F32: {
        float f;
        memcpy(&f, row + 4 * k, 4);
        return f;
    }
    case MF_TYPE_F16: return qd_f16(u16_at(row + 2 * k));
    case MF_TYPE_BF16: return bf16(u16_at(row + 2 * k));
    case MF_TYPE_Q4_0: {
        const unsigned char *b = row + (k / 32) * 18;
        int j = (int)(k % 32);
        int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return (float)(qd_f16(u16_at(b)) * (q - 8));
    }
    case MF_TYPE_Q8_0: {
        const unsigned char *b = row + (k / 32) * 34;
        int q = b[2 + k % 32];
        q = q >= 128 ? q - 256 : q;
        return (float)(qd_f16(u16_at(b)) * q);
    }
    default: {
        int bits = t->type == MF_TYPE_MLX_Q4 ? 4 : 8;
        int64_t per = 32 / bits;
        const unsigned char *wp = row + (k / per) * 4;
        uint32_t word = (uint32_t)wp[0] | (uint32_t)wp[1] << 8 |
                        (uint32_t)wp[2] << 16 | (uint32_t)wp[3] << 24;
        unsigned q = (word >> (bits * (k % per))) & ((1u << bits) - 1u);
        size_t gi = (size_t)r * (size_t)(t->k / t->group_size) +
                    (size_t)(k / t->group_size);
        double s = param(t->scale_type, t->scales, gi);
        double b = param(t->scale_type, t->biases, gi);
        /* f32 product, then f32 sum: double holds each exactly before the
         * single rounding to f32 (53 >= 2 * 24 + 2, no double rounding) */
        float p = (float)(s * q);
        return (float)((double)p + b);
    }
    }
}

double qd_weight_mag(const mf_tensor *t, int64_t r, int64_t k)
{
    if (t->type != MF_TYPE_MLX_Q4 && t->type != MF_TYPE_MLX_Q8)
        return fabs(qd_weight(t, r, k));
    int bits = t->type == MF_TYPE_MLX_Q4 ? 4 : 8;
    int64_t per = 32 / bits;
    const unsigned char *wp = (const unsigned char *)t->data +
                              (size_t)r * (t->row_stride ? t->row_stride
                                                         : dense_row_bytes(t->type, t->k)) +
                              (k / per) * 4;
    uint32_t word = (uint32_t)wp[0] | (uint32_t)wp[1] << 8 |
                    (uint32_t)wp[2] << 16 | (uint32_t)wp[3] << 24;
    unsigned q = (word >> (bits * (k % per))) & ((1u << bits) - 1u);
    size_t gi = (size_t)r * (size_t)(t->k / t->group_size) +
                (size_t)(k / t->group_size);
    return fabs(param(t->scale_type, t->scales, gi) * q) +
           fabs(param(t->scale_type, t->biases, gi));
}
