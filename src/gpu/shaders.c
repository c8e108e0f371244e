/* The SPIR-V of every shader, as words. Adding a shader: one line in
 * shaders/meson.build, one block here, one declaration in shaders.h. */
#include "shaders.h"

#define MF_SHADER(var, name) \
    const mf_vk_shader var = {name, spv_##var, sizeof spv_##var}

static const uint32_t spv_mf_shader_empty[] =
#include "src/gpu/shaders/empty.spv.inc"
    ;
MF_SHADER(mf_shader_empty, "empty");

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
