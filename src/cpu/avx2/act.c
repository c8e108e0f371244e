/* avx2 element kernels: `act` (in-place activation with vmath.h's
 * functions, arguments formed as the reference forms them) and `store`
 * (f32 -> f32/f16/bf16, round to nearest even, bit-identical to
 * mf_f32_to_f16 / mf_f32_to_bf16). A tail of fewer than 8 values goes
 * through a zero-padded buffer (act) or the scalar conversions (store). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <string.h>

#include "avx2.h"
#include "vmath.h"

static inline __attribute__((always_inline)) __m256 act1(mf_act act, __m256 v)
{
    switch (act) {
    case MF_ACT_SILU: return mf256_silu(v);
    case MF_ACT_GELU: return mf256_gelu_erf(v);
    default: return mf256_gelu_tanh(v);
    }
}

static inline __attribute__((always_inline)) void
act_loop(mf_act act, float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, act1(act, _mm256_loadu_ps(x + i)));
    if (i < n) {
        float b[8] = {0};
        const size_t r = (size_t)(n - i);
        memcpy(b, x + i, r * sizeof(float));
        _mm256_storeu_ps(b, act1(act, _mm256_loadu_ps(b)));
        memcpy(x + i, b, r * sizeof(float));
    }
}

static void act_avx2(mf_act act, float *x, int64_t n)
{
    switch (act) {
    case MF_ACT_SILU: act_loop(MF_ACT_SILU, x, n); break;
    case MF_ACT_GELU: act_loop(MF_ACT_GELU, x, n); break;
    case MF_ACT_GELU_TANH: act_loop(MF_ACT_GELU_TANH, x, n); break;
    default: break;
    }
}

/* Forward conversion: dst may be src (output i's bytes belong to input
 * i/2 or earlier, loaded before they are overwritten). */
static void store_avx2(mf_type t, const float *src, void *dst, int64_t n)
{
    if (t == MF_TYPE_F32) {
        if (dst != (const void *)src)
            memmove(dst, src, (size_t)n * sizeof(float));
        return;
    }
    char *d = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        if (t == MF_TYPE_F16)
            mf256_store_f16(d + 2 * i, v);
        else
            mf256_store_bf16(d + 2 * i, v);
    }
    for (; i < n; i++) {
        uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(src[i]) : mf_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

void mf_avx2_init_act(mf_kernels *k)
{
    k->act = act_avx2;
    k->store = store_avx2;
}
