/* The embedded SPIR-V modules (the shaders/ sources, compiled at build time). */
#ifndef MF_GPU_SHADERS_H
#define MF_GPU_SHADERS_H

#include "vk.h"

extern const mf_vk_shader mf_shader_empty;
extern const mf_vk_shader mf_shader_copy;
extern const mf_vk_shader mf_shader_prefetch;
extern const mf_vk_shader mf_shader_gating_sg; /* subgroup arithmetic */
extern const mf_vk_shader mf_shader_gating_sh; /* shared-memory reduction */
extern const mf_vk_shader mf_shader_combine;
extern const mf_vk_shader mf_shader_glu;
extern const mf_vk_shader mf_shader_dequant;
extern const mf_vk_shader mf_shader_qmv_sg;         /* subgroup shuffles */
extern const mf_vk_shader mf_shader_qmv_sh;         /* shared memory */
extern const mf_vk_shader mf_shader_moe_gate_up_sg;
extern const mf_vk_shader mf_shader_moe_gate_up_sh;
extern const mf_vk_shader mf_shader_moe_down_sg;
extern const mf_vk_shader mf_shader_moe_down_sh;
/* MF_PREC_INT8 variants (-DINT8: packed 4x8 integer dot products; only on
 * devices with vk->int_dot) */
extern const mf_vk_shader mf_shader_qmv_i8_sg;
extern const mf_vk_shader mf_shader_qmv_i8_sh;
extern const mf_vk_shader mf_shader_moe_gate_up_i8_sg;
extern const mf_vk_shader mf_shader_moe_gate_up_i8_sh;
extern const mf_vk_shader mf_shader_moe_down_i8_sg;
extern const mf_vk_shader mf_shader_moe_down_i8_sh;
extern const mf_vk_shader mf_shader_i8quant;

#endif
