/* The scalar reference of mf_glu: elements [n0, n1) of one row.
 *
 * Inputs are widened exactly to f32 (f16/bf16 loads through memcpy: no
 * alignment needed), the activation is the one of actf.h, the product with
 * the up value is one f32 multiply, and the result is rounded once to
 * out_type. Per kind:
 *   SWIGLU      silu(g) * u
 *   GEGLU_TANH  gelu_tanh(g) * u
 *   GEGLU_ERF   gelu_erf(g) * u
 *   SWIGLU_OAI  (clamp(u, -L, L) + 1) * (min(g, L) * sigmoid(A * min(g, L)))
 *               with L = limit (0 -> 7.0) and A = alpha (0 -> 1.702). */
#include <string.h>

#include "actf.h"
#include "ref.h"

static float load(mf_type t, const void *p, int64_t i)
{
    const unsigned char *b = p;
    if (t == MF_TYPE_F32) {
        float f;
        memcpy(&f, b + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, b + 2 * i, 2);
    return t == MF_TYPE_F16 ? mf_f16_to_f32(h) : mf_bf16_to_f32(h);
}

static void put(mf_type t, void *p, int64_t i, float v)
{
    unsigned char *b = p;
    if (t == MF_TYPE_F32) {
        memcpy(b + 4 * i, &v, 4);
        return;
    }
    uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(v) : mf_f32_to_bf16(v);
    memcpy(b + 2 * i, &h, 2);
}

static void glu_ref(const mf_glu_desc *d, int64_t n0, int64_t n1,
                    const void *g, const void *u, void *out)
{
    const float limit = d->limit != 0.0f ? d->limit : MF_OAI_LIMIT;
    const float alpha = d->alpha != 0.0f ? d->alpha : MF_OAI_ALPHA;
    const int inter = d->layout == MF_GLU_INTERLEAVED;
    for (int64_t i = n0; i < n1; i++) {
        float gv = load(d->in_type, g, inter ? 2 * i : i);
        float uv = inter ? load(d->in_type, g, 2 * i + 1)
                         : load(d->in_type, u, i);
        float r;
        switch (d->kind) {
        case MF_GLU_GEGLU_TANH: r = mf_ref_gelu_tanh(gv) * uv; break;
        case MF_GLU_GEGLU_ERF: r = mf_ref_gelu_erf(gv) * uv; break;
        case MF_GLU_SWIGLU_OAI:
            r = mf_ref_oai_up(uv, limit) * mf_ref_oai_gate(gv, limit, alpha);
            break;
        default: r = mf_ref_silu(gv) * uv; break;
        }
        put(d->out_type, out, i, r);
    }
}

void mf_ref_init_glu(mf_kernels *k)
{
    k->glu = glu_ref;
}
