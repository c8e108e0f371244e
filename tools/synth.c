#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t synth_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float unit(uint64_t *s) /* uniform [-0.5, 0.5) */
{
    return (float)(synth_rand(s) >> 40) * (1.0f / 16777216.0f) - 0.5f;
}

void synth_fill(float *x, size_t n, uint64_t *s, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = scale * unit(s);
}

static int is_mlx(mf_type t) { return t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8; }

double synth_row_bytes(mf_type type, int64_t k)
{
    double b = (double)mf_tensor_row_bytes(type, k);
    if (is_mlx(type))
        b += 4.0 * (double)(k / 64);
    return b;
}

int synth_tensor_make(synth_tensor *w, mf_type type, int64_t e, int64_t n,
                      int64_t k, float sigma, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    size_t rows = (size_t)(e * n), rb = mf_tensor_row_bytes(type, k);
    size_t total = rows * rb;
    if (!rb || !(w->data = malloc(total)))
        return -1;
    uint64_t s = seed;
    unsigned char *p = w->data;
    size_t i = 0;
    for (; i + 8 <= total; i += 8) {
        uint64_t r = synth_rand(&s);
        memcpy(p + i, &r, 8);
    }
    for (; i < total; i++)
        p[i] = (unsigned char)synth_rand(&s);
    /* uniform codes: Q4_0 (q-8) has sd ~4.6, Q8_0 q ~74, MLX q4 ~4.6 */
    if (type == MF_TYPE_Q4_0 || type == MF_TYPE_Q8_0) {
        size_t bs = type == MF_TYPE_Q4_0 ? 18 : 34;
        float d = sigma / (type == MF_TYPE_Q4_0 ? 4.6f : 74.0f);
        for (size_t b = 0; b < total / bs; b++) {
            uint16_t h = mf_f32_to_f16(d * (0.75f + 0.5f * (unit(&s) + 0.5f)));
            memcpy(p + b * bs, &h, 2);
        }
    } else if (type == MF_TYPE_F32) {
        synth_fill((float *)w->data, rows * (size_t)k, &s, sigma * 3.46f);
    } else if (type == MF_TYPE_F16 || type == MF_TYPE_BF16) {
        uint16_t *h = w->data;
        for (size_t j = 0; j < rows * (size_t)k; j++) {
            float v = sigma * 3.46f * unit(&s);
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
        float qsd = type == MF_TYPE_MLX_Q4 ? 4.6f : 74.0f;
        float qmid = type == MF_TYPE_MLX_Q4 ? 7.5f : 127.5f;
        for (size_t g = 0; g < groups; g++) {
            float scale = sigma / qsd * (0.75f + 0.5f * (unit(&s) + 0.5f));
            sc[g] = mf_f32_to_bf16(scale);
            bi[g] = mf_f32_to_bf16(-scale * qmid);
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

void synth_tensor_free(synth_tensor *w)
{
    free(w->data);
    free(w->scales);
    free(w->biases);
    memset(w, 0, sizeof *w);
}

static float *vec(size_t n, uint64_t *s, float scale)
{
    float *v = malloc(n * sizeof *v);
    if (v)
        synth_fill(v, n, s, scale);
    return v;
}

int synth_layer_make(synth_layer *l, const mf_moe_config *c, mf_type type,
                     uint64_t seed)
{
    memset(l, 0, sizeof *l);
    uint64_t s = seed;
    int64_t H = c->hidden, F = c->expert_ffn, E = c->n_experts;
    int sep = c->gate_up_layout == MF_GLU_SEPARATE;
    /* weight scales keep activations O(1) through the block */
    float sig_in = 1.0f / sqrtf((float)H), sig_dn = 1.0f / sqrtf((float)F);
    int bad = synth_tensor_make(&l->router, MF_TYPE_F32, 1, E, H, 3.0f * sig_in, s++) ||
              synth_tensor_make(&l->gate, type, E, sep ? F : 2 * F, H, sig_in, s++) ||
              (sep && synth_tensor_make(&l->up, type, E, F, H, sig_in, s++)) ||
              synth_tensor_make(&l->down, type, E, H, F, sig_dn, s++);
    if (!bad && c->n_shared) {
        int64_t Fs = c->shared_ffn;
        bad = synth_tensor_make(&l->sgate, type, 1, Fs, H, sig_in, s++) ||
              synth_tensor_make(&l->sup, type, 1, Fs, H, sig_in, s++) ||
              synth_tensor_make(&l->sdown, type, 1, H, Fs, 1.0f / sqrtf((float)Fs), s++);
    }
    if (!bad && c->router_bias)
        bad = !(l->router_bias = vec((size_t)E, &s, 0.5f));
    if (!bad && c->correction_bias)
        bad = !(l->corr_bias = vec((size_t)E, &s, 0.05f));
    if (!bad && c->expert_bias) {
        size_t gb = (size_t)E * (size_t)(sep ? F : 2 * F);
        bad = !(l->gate_bias = vec(gb, &s, 0.1f)) ||
              (sep && !(l->up_bias = vec((size_t)(E * F), &s, 0.1f))) ||
              !(l->down_bias = vec((size_t)(E * H), &s, 0.1f));
    }
    if (bad) {
        synth_layer_free(l);
        return -1;
    }
    mf_moe_weights *w = &l->w;
    w->router = l->router.t;
    w->router_bias = l->router_bias;
    w->correction_bias = l->corr_bias;
    w->gate = l->gate.t;
    if (sep)
        w->up = l->up.t;
    w->down = l->down.t;
    w->gate_bias = l->gate_bias;
    w->up_bias = l->up_bias;
    w->down_bias = l->down_bias;
    if (c->n_shared) {
        w->shared_gate = l->sgate.t;
        w->shared_up = l->sup.t;
        w->shared_down = l->sdown.t;
    }
    return 0;
}

void synth_layer_free(synth_layer *l)
{
    synth_tensor_free(&l->router);
    synth_tensor_free(&l->gate);
    synth_tensor_free(&l->up);
    synth_tensor_free(&l->down);
    synth_tensor_free(&l->sgate);
    synth_tensor_free(&l->sup);
    synth_tensor_free(&l->sdown);
    free(l->router_bias);
    free(l->corr_bias);
    free(l->gate_bias);
    free(l->up_bias);
    free(l->down_bias);
    memset(l, 0, sizeof *l);
}
