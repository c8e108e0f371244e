/* Synthetic weights for the tools and benchmarks: random codes written
 * directly in each format with sane scales (fast: no quantization pass), and
 * whole MoE layers for a configuration. Not installed. */
#ifndef MF_TOOLS_SYNTH_H
#define MF_TOOLS_SYNTH_H

#include <moefuse/moefuse.h>

uint64_t synth_rand(uint64_t *s);
/* n floats uniform in [-scale/2, scale/2). */
void synth_fill(float *x, size_t n, uint64_t *s, float scale);

/* A random [e, n, k] stack of `type` (MLX: group 64, bf16 scales). The
 * values have a standard deviation of about `sigma`. */
typedef struct synth_tensor {
    mf_tensor t;
    void *data, *scales, *biases;
    size_t bytes; /* codes + scales + biases */
} synth_tensor;
int synth_tensor_make(synth_tensor *w, mf_type type, int64_t e, int64_t n,
                      int64_t k, float sigma, uint64_t seed);
void synth_tensor_free(synth_tensor *w);
/* Bytes one row of K elements occupies in type, scales included (MLX g64
 * bf16). */
double synth_row_bytes(mf_type type, int64_t k);

/* A whole layer for cfg with expert weights of `type` and an f32 router. */
typedef struct synth_layer {
    mf_moe_weights w;
    synth_tensor router, gate, up, down, sgate, sup, sdown;
    float *router_bias, *corr_bias, *gate_bias, *up_bias, *down_bias;
} synth_layer;
int synth_layer_make(synth_layer *l, const mf_moe_config *cfg, mf_type type,
                     uint64_t seed);
void synth_layer_free(synth_layer *l);

#endif
