/* Unfused baselines: the op sequences a plain C engine runs (separate passes,
 * full sorts, whole-matrix dequantization + OpenBLAS). Same functions as the
 * fused ops, other rounding; benchmarks compare against them and tests check
 * fused == unfused within tolerance. Single-threaded except where OpenBLAS
 * threads itself. Arguments arrive validated by the front door. One file per
 * op; each declares its entry here. */
#ifndef MF_CPU_UNFUSED_H
#define MF_CPU_UNFUSED_H

#include <moefuse/moefuse.h>

/* mf_gating: per row, softmax/sigmoid pass, full qsort, gather, normalize
 * and scale passes (gating.c). Bit-identical to the reference. */
mf_status mf_unfused_gating(const mf_gating_desc *d, const float *logits,
                            int64_t T, int32_t *idx, float *weights);

/* mf_qmv: whole-matrix dequantization, sgemv per activation row, bias pass,
 * activation pass (qmv.c). MF_ERR_OUT_OF_MEMORY when the f32 matrix cannot
 * be allocated. */
mf_status mf_unfused_qmv(const mf_qmv_desc *d, const mf_tensor *w,
                         const float *x, int64_t M, float *y);
/* mf_dequant_act: dequantization pass, activation pass, conversion pass
 * (dequant_act.c). */
mf_status mf_unfused_dequant_act(const mf_dequant_desc *d, const mf_tensor *w,
                                 void *out);

/* mf_moe_gate_up / mf_moe_down_combine: pairs grouped by expert, whole
 * expert dequantization once per expert (per chunk of tokens), sgemv for one
 * pair or sgemm for several, then separate bias, activation, multiply
 * (gate/up) or bias, scale, sum, residual (down) passes (moe.c).
 * MF_ERR_OUT_OF_MEMORY when the f32 matrices cannot be allocated. */
/* Floats of gathered activations and outputs one chunk of an expert call
 * holds (default 256 Mi: 1 GiB); tests lower it to take the chunked path. */
extern size_t mf_unfused_moe_chunk_floats;
mf_status mf_unfused_moe_gate_up(const mf_moe_gate_up_desc *d, int64_t T,
                                 int32_t k, const float *x,
                                 const int32_t *idx, float *h);
mf_status mf_unfused_moe_down_combine(const mf_moe_down_desc *d, int64_t T,
                                      int32_t k, const float *h,
                                      const int32_t *idx, const float *w,
                                      const float *residual, float *y);

/* mf_combine (both variants): scale pass per slot into a temporary, sum
 * pass, residual add pass (combine.c). Bit-identical to the exact sequence.
 * MF_ERR_OUT_OF_MEMORY when the (k + 1) * D temporary cannot be allocated. */
mf_status mf_unfused_combine(int64_t T, int32_t k, int64_t D, const float *x,
                             const float *w, const float *residual,
                             float *out);

/* mf_glu: widening passes, activation pass over the gate into a temporary,
 * multiply pass, conversion pass (glu.c). Bit-identical to the reference.
 * MF_ERR_OUT_OF_MEMORY when the 3 * n temporary cannot be allocated. */
mf_status mf_unfused_glu(const mf_glu_desc *d, int64_t T, int64_t n,
                         const void *gate, const void *up, void *out);

#endif
