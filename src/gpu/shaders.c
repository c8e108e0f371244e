/* The SPIR-V of every shader, as words. Adding a shader: one line in
 * shaders/meson.build, one block here, one declaration in shaders.h. */
#include "shaders.h"

#define MF_SHADER(var, name) \
    const mf_vk_shader var = {name, spv_##var, sizeof spv_##var}

static const uint32_t spv_mf_shader_empty[] =
#include "src/gpu/shaders/empty.spv.inc"
    ;
MF_SHADER(mf_shader_empty, "empty");

static const uint32_t spv_mf_shader_copy[] =
#include "src/gpu/shaders/copy.spv.inc"
    ;
MF_SHADER(mf_shader_copy, "copy");

static const uint32_t spv_mf_shader_prefetch[] =
#include "src/gpu/shaders/prefetch.spv.inc"
    ;
MF_SHADER(mf_shader_prefetch, "prefetch");

static const uint32_t spv_mf_shader_gating_sg[] =
#include "src/gpu/shaders/gating_sg.spv.inc"
    ;
MF_SHADER(mf_shader_gating_sg, "gating_sg");

static const uint32_t spv_mf_shader_gating_sh[] =
#include "src/gpu/shaders/gating_sh.spv.inc"
    ;
MF_SHADER(mf_shader_gating_sh, "gating_sh");

static const uint32_t spv_mf_shader_combine[] =
#include "src/gpu/shaders/combine.spv.inc"
    ;
MF_SHADER(mf_shader_combine, "combine");

static const uint32_t spv_mf_shader_glu[] =
#include "src/gpu/shaders/glu.spv.inc"
    ;
MF_SHADER(mf_shader_glu, "glu");

static const uint32_t spv_mf_shader_dequant[] =
#include "src/gpu/shaders/dequant.spv.inc"
    ;
MF_SHADER(mf_shader_dequant, "dequant");

static const uint32_t spv_mf_shader_qmv_sg[] =
#include "src/gpu/shaders/qmv_sg.spv.inc"
    ;
MF_SHADER(mf_shader_qmv_sg, "qmv_sg");

static const uint32_t spv_mf_shader_qmv_sh[] =
#include "src/gpu/shaders/qmv_sh.spv.inc"
    ;
MF_SHADER(mf_shader_qmv_sh, "qmv_sh");

static const uint32_t spv_mf_shader_moe_gate_up_sg[] =
#include "src/gpu/shaders/moe_gate_up_sg.spv.inc"
    ;
MF_SHADER(mf_shader_moe_gate_up_sg, "moe_gate_up_sg");

static const uint32_t spv_mf_shader_moe_gate_up_sh[] =
#include "src/gpu/shaders/moe_gate_up_sh.spv.inc"
    ;
MF_SHADER(mf_shader_moe_gate_up_sh, "moe_gate_up_sh");

static const uint32_t spv_mf_shader_moe_down_sg[] =
#include "src/gpu/shaders/moe_down_sg.spv.inc"
    ;
MF_SHADER(mf_shader_moe_down_sg, "moe_down_sg");

static const uint32_t spv_mf_shader_moe_down_sh[] =
#include "src/gpu/shaders/moe_down_sh.spv.inc"
    ;
MF_SHADER(mf_shader_moe_down_sh, "moe_down_sh");

static const uint32_t spv_mf_shader_qmv_i8_sg[] =
#include "src/gpu/shaders/qmv_i8_sg.spv.inc"
    ;
MF_SHADER(mf_shader_qmv_i8_sg, "qmv_i8_sg");

static const uint32_t spv_mf_shader_qmv_i8_sh[] =
#include "src/gpu/shaders/qmv_i8_sh.spv.inc"
    ;
MF_SHADER(mf_shader_qmv_i8_sh, "qmv_i8_sh");

static const uint32_t spv_mf_shader_moe_gate_up_i8_sg[] =
#include "src/gpu/shaders/moe_gate_up_i8_sg.spv.inc"
    ;
MF_SHADER(mf_shader_moe_gate_up_i8_sg, "moe_gate_up_i8_sg");

static const uint32_t spv_mf_shader_moe_gate_up_i8_sh[] =
#include "src/gpu/shaders/moe_gate_up_i8_sh.spv.inc"
    ;
MF_SHADER(mf_shader_moe_gate_up_i8_sh, "moe_gate_up_i8_sh");

static const uint32_t spv_mf_shader_moe_down_i8_sg[] =
#include "src/gpu/shaders/moe_down_i8_sg.spv.inc"
    ;
MF_SHADER(mf_shader_moe_down_i8_sg, "moe_down_i8_sg");

static const uint32_t spv_mf_shader_moe_down_i8_sh[] =
#include "src/gpu/shaders/moe_down_i8_sh.spv.inc"
    ;
MF_SHADER(mf_shader_moe_down_i8_sh, "moe_down_i8_sh");

static const uint32_t spv_mf_shader_i8quant[] =
#include "src/gpu/shaders/i8quant.spv.inc"
    ;
MF_SHADER(mf_shader_i8quant, "i8quant");
