/* The scalar reference of the element kernels `act` (in-place activation,
 * the functions of actf.h) and `store` (f32 -> f32/f16/bf16, round to
 * nearest even through mf_f32_to_f16 / mf_f32_to_bf16). */
#include <string.h>

#include "actf.h"
#include "ref.h"

static void act_ref(mf_act act, float *x, int64_t n)
{
    if (act == MF_ACT_NONE)
        return;
    for (int64_t i = 0; i < n; i++)
        x[i] = mf_ref_act(act, x[i]);
}

static void store_ref(mf_type t, const float *src, void *dst, int64_t n)
{
    if (t == MF_TYPE_F32) {
        if (dst != (const void *)src)
            memmove(dst, src, (size_t)n * sizeof(float));
        return;
    }
    /* dst needs no alignment: 16-bit stores through memcpy. Converting
     * forward, dst may even be src: the bytes output i writes belong to
     * input i/2, already read. */
    unsigned char *o = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(src[i])
                                      : mf_f32_to_bf16(src[i]);
        memcpy(o + 2 * i, &h, 2);
    }
}

void mf_ref_init_act(mf_kernels *k)
{
    k->act = act_ref;
    k->store = store_ref;
}
