#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t mft_seed(void)
{
    static uint64_t seed;
    static int done;
    if (!done) {
        const char *e = getenv("MOEFUSE_SEED");
        if (e && *e)
            seed = strtoull(e, NULL, 0);
        else
            seed = (uint64_t)time(NULL) * 1000003ull ^ (uint64_t)getpid();
        done = 1;
        fprintf(stderr, "moefuse tests: MOEFUSE_SEED=%llu\n",
                (unsigned long long)seed);
    }
    return seed;
}

mft_rng mft_rng_make(uint64_t stream)
{
    uint64_t x = mft_seed() ^ (stream * 0xd1b54a32d192ed03ull);
    mft_rng r;
    for (int i = 0; i < 4; i++)
        r.s[i] = splitmix(&x);
    return r;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mft_next(mft_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

float mft_uniform(mft_rng *r, float lo, float hi)
{
    double u = (double)(mft_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

int64_t mft_int(mft_rng *r, int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(mft_next(r) % span);
}

float mft_normal(mft_rng *r)
{
    double u1 = ((double)(mft_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(mft_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void mft_fill_uniform(mft_rng *r, float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = mft_uniform(r, lo, hi);
}

void mft_fill_normal(mft_rng *r, float *x, size_t n, float sigma)
{
    for (size_t i = 0; i < n; i++)
        x[i] = sigma * mft_normal(r);
}

mf_ctx *mft_ctx(void)
{
    static mf_ctx *ctx;
    if (!ctx) {
        mf_ctx_options o = mf_ctx_options_default();
        o.threads = 2;
        o.gpu = MF_GPU_DISABLED;
        if (mf_ctx_create(&o, &ctx) != MF_OK) {
            fprintf(stderr, "moefuse tests: cannot create a context\n");
            abort();
        }
    }
    return ctx;
}

int mft_cpu_impls(mf_impl *out)
{
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    int n = 0;
    out[n++] = MF_IMPL_SCALAR;
    if (ci.isa_available[MF_ISA_AVX2])
        out[n++] = MF_IMPL_AVX2;
    if (ci.isa_available[MF_ISA_AVX512])
        out[n++] = MF_IMPL_AVX512;
    if (ci.isa_available[MF_ISA_NEON])
        out[n++] = MF_IMPL_NEON;
    out[n++] = MF_IMPL_CPU;
    return n;
}

static int32_t ordered(float f)
{
    int32_t i;
    memcpy(&i, &f, 4);
    return i < 0 ? (int32_t)(0x80000000u - (uint32_t)i) : i;
}

uint32_t mft_ulp_diff(float a, float b)
{
    if (isnan(a) || isnan(b))
        return (isnan(a) && isnan(b)) ? 0 : UINT32_MAX;
    if (a == b)
        return 0;
    int64_t d = (int64_t)ordered(a) - (int64_t)ordered(b);
    if (d < 0)
        d = -d;
    return d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
}

int mft_close(float a, float b, uint32_t ulps, float abs_tol)
{
    if (mft_ulp_diff(a, b) <= ulps)
        return 1;
    return fabsf(a - b) <= abs_tol;
}

void *mft_alloc(size_t bytes, size_t offset)
{
    size_t total = bytes + offset + 64 + sizeof(void *);
    unsigned char *raw = malloc(total);
    if (!raw)
        abort();
    uintptr_t base = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    unsigned char *p = (unsigned char *)base + offset;
    memcpy((unsigned char *)base - sizeof(void *), &raw, sizeof raw);
    memset(p, 0xA5, bytes);
    return p;
}

void mft_free(void *p)
{
    if (!p)
        return;
    uintptr_t base = (uintptr_t)p & ~(uintptr_t)63;
    unsigned char *raw;
    memcpy(&raw, (unsigned char *)base - sizeof(void *), sizeof raw);
    free(raw);
}

mft_qtensor mft_qtensor_random(mft_rng *r, mf_type type, int64_t e,
                               int64_t n, int64_t k, int32_t group,
                               mf_type st)
{
    mft_qtensor q;
    memset(&q, 0, sizeof q);
    size_t rows = (size_t)(e * n);
    float *src = malloc(rows * (size_t)k * sizeof(float));
    if (!src)
        abort();
    mft_fill_normal(r, src, rows * (size_t)k, 0.05f);
    size_t rb = mf_tensor_row_bytes(type, k);
    q.data = malloc(rows * rb);
    int mlx = type == MF_TYPE_MLX_Q4 || type == MF_TYPE_MLX_Q8;
    size_t sb = st == MF_TYPE_F32 ? 4 : 2;
    if (mlx) {
        q.scales = malloc(rows * (size_t)(k / group) * sb);
        q.biases = malloc(rows * (size_t)(k / group) * sb);
    }
    if (type == MF_TYPE_F32) {
        memcpy(q.data, src, rows * rb);
    } else if (type == MF_TYPE_F16 || type == MF_TYPE_BF16) {
        uint16_t *h = q.data;
        for (size_t i = 0; i < rows * (size_t)k; i++)
            h[i] = type == MF_TYPE_F16 ? mf_f32_to_f16(src[i])
                                       : mf_f32_to_bf16(src[i]);
    } else if (mf_quantize_rows(type, src, (int64_t)rows, k, q.data,
                                mlx ? group : 0, mlx ? st : MF_TYPE_F32,
                                q.scales, q.biases) != MF_OK) {
        abort();
    }
    free(src);
    q.t = mlx ? mf_tensor_mlx(type, e, n, k, group, st, q.data, q.scales,
                              q.biases)
              : mf_tensor_dense(type, e, n, k, q.data);
    return q;
}

void mft_qtensor_free(mft_qtensor *q)
{
    free(q->data);
    free(q->scales);
    free(q->biases);
    memset(q, 0, sizeof *q);
}

void mft_exe_command(char *buf, size_t cap, const char *path,
                     const char *args)
{
    const char *wrap = getenv("MESON_EXE_WRAPPER");
    int n = snprintf(buf, cap, "%s '%s' %s", wrap ? wrap : "", path, args);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "moefuse tests: command too long: %s %s\n", path,
                args);
        abort();
    }
}
