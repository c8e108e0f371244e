/* neon element kernels: `act` (in-place activation with vmath.h's
 * functions, arguments formed as the reference forms them) and `store`
 * (f32 -> f32/f16/bf16, round to nearest even, bit-identical to
 * mf_f32_to_f16 / mf_f32_to_bf16). A tail of fewer than 4 values goes
 * through a zero-padded buffer (act) or the scalar conversions (store). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "neon.h"
#include "vmath.h"

#if defined(__aarch64__)

#include <string.h>

static inline __attribute__((always_inline)) float32x4_t act1(mf_act act,
                                                             float32x4_t v)
{
    switch (act) {
    case MF_ACT_SILU: return mfq_silu(v);
    case MF_ACT_GELU: return mfq_gelu_erf(v);
    default: return mfq_gelu_tanh(v);
    }
}

static inline __attribute__((always_inline)) void
act_loop(mf_act act, float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(x + i, act1(act, vld1q_f32(x + i)));
    if (i < n) {
        float b[4] = {0};
        const size_t r = (size_t)(n - i);
        memcpy(b, x + i, r * sizeof(float));
        vst1q_f32(b, act1(act, vld1q_f32(b)));
        memcpy(x + i, b, r * sizeof(float));
    }
}

static void act_neon(mf_act act, float *x, int64_t n)
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
static void store_neon(mf_type t, const float *src, void *dst, int64_t n)
{
    if (t == MF_TYPE_F32) {
        if (dst != (const void *)src)
            memmove(dst, src, (size_t)n * sizeof(float));
        return;
    }
    char *d = dst;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(src + i);
        if (t == MF_TYPE_F16)
            mfq_store_f16(d + 2 * i, v);
        else
            mfq_store_bf16(d + 2 * i, v);
    }
    for (; i < n; i++) {
        uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(src[i]) : mf_f32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

void mf_neon_init_act(mf_kernels *k)
{
    k->act = act_neon;
    k->store = store_neon;
}

#endif
