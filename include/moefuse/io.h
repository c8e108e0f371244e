/* moefuse — reading one MoE layer's weights from model files: GGUF (as
 * llama.cpp writes it; f32/f16/bf16/Q4_0/Q8_0 tensors) and safetensors
 * (MLX affine-quantized expert stacks: uint32 codes + scales + biases).
 *
 * Files are mapped read-only; tensors are descriptors into the mapping, valid
 * until mf_model_file_close. Every offset, size and count read from a file
 * is bounds-checked: a malformed, truncated or hostile file gives
 * MF_ERR_FILE_FORMAT, never a read outside the file. A safetensors JSON
 * header may be up to 64 MiB, nest up to 32 deep and hold up to
 * max(2^20, header bytes / 8) JSON values (a tensor entry is 7-9 values
 * in ~100 bytes): no other cap on the tensor count. Opening takes time
 * O(n log n) in the tensor count, lookups by name O(log n).
 * Thread-safety: an open file may be read from several threads. */
#ifndef MOEFUSE_IO_H
#define MOEFUSE_IO_H

#include "layer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mf_model_file mf_model_file;

/* Opens and parses a file; the format is told by its first bytes ("GGUF"
 * magic, else an 8-byte little-endian header length and a JSON header).
 * Errors: MF_ERR_INVALID_ARG (NULLs), MF_ERR_IO (cannot open/map),
 * MF_ERR_FILE_FORMAT (not a valid file of either format),
 * MF_ERR_OUT_OF_MEMORY. */
mf_status mf_model_file_open(const char *path, mf_model_file **out);

/* The same from memory the caller keeps alive and unchanged until close
 * (the bytes are not copied). */
mf_status mf_model_file_open_memory(const void *data, size_t size,
                                    mf_model_file **out);

void mf_model_file_close(mf_model_file *f);

/* "gguf" or "safetensors". */
const char *mf_model_file_format(const mf_model_file *f);

/* Number of tensors, and the name of tensor i (NULL out of range). */
int64_t mf_model_file_count(const mf_model_file *f);
const char *mf_model_file_name(const mf_model_file *f, int64_t i);

/* A tensor by name as an [E, N, K] descriptor (the file's innermost
 * dimension is K; 2-D tensors get E = 1; 1-D tensors N = E = 1).
 * Safetensors MLX stacks: pass the base name ("...gate_proj"); the codes
 * come from "<base>.weight", the scales and biases from "<base>.scales" and
 * "<base>.biases"; `k_hint` is the unpacked K (needed to tell bits from the
 * code width; 0 for float tensors). Errors: MF_ERR_INVALID_ARG (NULLs, no such
 * tensor), MF_ERR_UNSUPPORTED (a tensor type moefuse does not read),
 * MF_ERR_FILE_FORMAT (inconsistent shapes). */
mf_status mf_model_file_tensor(const mf_model_file *f, const char *name,
                               int64_t k_hint, mf_tensor *out);

/* One MoE layer's weights, by the tensor names of the format:
 *  GGUF (llama.cpp): blk.L.ffn_gate_inp.weight (+ .bias), blk.L.exp_probs_b.bias,
 *    blk.L.ffn_{gate,up,down}_exps.weight (+ .bias),
 *    blk.L.ffn_{gate,up,down}_shexp.weight;
 *  safetensors (MLX): model.layers.L.mlp.gate (+ .bias),
 *    model.layers.L.mlp.switch_mlp.{gate,up,down}_proj (+ .bias),
 *    model.layers.L.mlp.gate.e_score_correction_bias,
 *    model.layers.L.mlp.shared_experts.{gate,up,down}_proj.
 * Checked against cfg (shapes, biases present exactly when cfg says; f32
 * biases 4-byte aligned). Gate/up are SEPARATE in both formats: cfg must say
 * so. Errors: MF_ERR_INVALID_ARG (NULLs, layer < 0, a tensor missing,
 * cfg mismatch), MF_ERR_UNSUPPORTED, MF_ERR_FILE_FORMAT. *out untouched on
 * error. */
mf_status mf_moe_weights_load(const mf_model_file *f, int layer,
                              const mf_moe_config *cfg, mf_moe_weights *out);

#ifdef __cplusplus
}
#endif
#endif
