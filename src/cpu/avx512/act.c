/* avx512 element kernels: `act` (in-place activation with vmath.h's
 * functions, arguments formed as the reference forms them) and `store`
 * (f32 -> f32/f16/bf16, round to nearest even, bit-identical to
 * mf_f32_to_f16 / mf_f32_to_bf16). Tails use masked loads and stores. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <string.h>

#include "avx512.h"
#include "vmath.h"

static inline __attribute__((always_inline)) __m512 act1(mf_act act, __m512 v)
{
    switch (act) {
    case MF_ACT_SILU: return mf512_silu(v);
    case MF_ACT_GELU: return mf512_gelu_erf(v);
    default: return mf512_gelu_tanh(v);
    }
}

static inline __attribute__((always_inline)) void
act_loop(mf_act act, float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, act1(act, _mm512_loadu_ps(x + i)));
    if (i < n) {
        const __mmask16 m = mf512_head(n - i);
        _mm512_mask_storeu_ps(x + i, m, act1(act, _mm512_maskz_loadu_ps(m, x + i)));
    }
}

static void act_avx512(mf_act act, float *x, int64_t n)
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
static void store_avx512(mf_type t, const float *src, void *dst, int64_t n)
{
    if (t == MF_TYPE_F32) {
        if (dst != (const void *)src)
            memmove(dst, src, (size_t)n * sizeof(float));
        return;
    }
    char *d = dst;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(src + i);
        if (t == MF_TYPE_F16)
            mf512_store_f16(d + 2 * i, v);
        else
            mf512_store_bf16(d + 2 * i, v);
    }
    if (i < n) {
        const __mmask16 m = mf512_head(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, src + i);
        if (t == MF_TYPE_F16)
            mf512_store_f16_m(d + 2 * i, m, v);
        else
            mf512_store_bf16_m(d + 2 * i, m, v);
    }
}

void mf_avx512_init_act(mf_kernels *k)
{
    k->act = act_avx512;
    k->store = store_avx512;
}
