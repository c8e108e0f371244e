/* Benchmark data: random weights written directly in each format. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

uint64_t bench_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void bench_fill(float *x, size_t n, uint64_t *s, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * ((float)(bench_rand(s) >> 40) * (1.0f / 16777216.0f) - 0.5f);
}

static int is_mlx(mf_type t) { return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8; }

double bench_row_bytes(mf_type type, int64_t k)
{
    double b = (double)mf_tensor_row_bytes(type, k);
    if (is_mlx(type))
        b += 2.0 * 2.0 * (double)(k / 64); /* bf16 scale + bias per group */
    return b;
}

int bench_weights_make(bench_weights *w, mf_type type, int64_t e, int64_t n,
                       int64_t k, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    size_t rows = (size_t)(e * n), rb = mf_tensor_row_bytes(type, k);
    w->data = malloc(rows * rb);
    if (!w->data)
        return -1;
    uint64_t s = seed;
    unsigned char *p = w->data;
    size_t total = rows * rb, i = 0;
    for (; i + 8 <= total; i += 8) {
        uint64_t r = bench_rand(&s);
        memcpy(p + i, &r, 8);
    }
    for (; i < total; i++)
        p[i] = (unsigned char)bench_rand(&s);
    /* sane block scales: f16 around 0.01 */
    if (type == MF_TYPE_Q4_0 || type == MF_TYPE_Q8_0) {
        size_t bs = type == MF_TYPE_Q4_0 ? 18 : 34;
        for (size_t b = 0; b < total / bs; b++) {
            uint16_t d = mf_f32_to_f16(0.005f + 0.01f * (float)(b % 7));
            memcpy(p + b * bs, &d, 2);
        }
    } else if (type == MF_TYPE_F32) {
        bench_fill((float *)w->data, rows * (size_t)k, &s, 0.1f);
    } else if (type == MF_TYPE_F16 || type == MF_TYPE_BF16) {
        uint16_t *h = w->data;
        for (size_t j = 0; j < rows * (size_t)k; j++) {
            float v = 0.1f * ((float)(bench_rand(&s) >> 40) / 16777216.0f - 0.5f);
            h[j] = type == MF_TYPE_F16 ? mf_f32_to_f16(v) : mf_f32_to_bf16(v);
        }
    }
    w->bytes = total;
    if (is_mlx(type)) {
        size_t groups = rows * (size_t)(k / 64);
        uint16_t *sc = malloc(groups * 2), *bi = malloc(groups * 2);
        if (!sc || !bi) {
            free(sc);
            free(bi);
            free(w->data);
            w->data = NULL;
            return -1;
        }
        for (size_t g = 0; g < groups; g++) {
            sc[g] = mf_f32_to_bf16(0.001f * (float)(1 + g % 5));
            bi[g] = mf_f32_to_bf16(-0.01f * (float)(1 + g % 3));
        }
        w->scales = sc;
        w->biases = bi;
        w->bytes += groups * 4;
        w->t = mf_tensor_mlx(type, e, n, k, 64, MF_TYPE_BF16, w->data, sc, bi);
    } else {
        w->t = mf_tensor_dense(type, e, n, k, w->data);
    }
    return 0;
}

void bench_weights_free(bench_weights *w)
{
    free(w->data);
    free(w->scales);
    free(w->biases);
    memset(w, 0, sizeof *w);
}
