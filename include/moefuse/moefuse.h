/* moefuse — fused kernels for Mixture-of-Experts decode, on CPU SIMD and
 * Vulkan. The umbrella header: include this one.
 *
 *   base.h    version, status codes, types, activations, impl selection
 *   ctx.h     the context (CPU kernel set, threads, GPU), CPU discovery
 *   tensor.h  weight descriptors, quantization formats, conversions
 *   ops.h     gating, combine, glu, dequant_act, qmv, moe_gate_up,
 *             moe_down_combine
 *   route.h   placement: where AUTO calls run (placement cache, router)
 *   layer.h   one MoE block end to end, model presets
 *   io.h      one layer's weights from GGUF / safetensors files
 *   weights.h weight residency on the GPU (upload, evict, counters)
 */
#ifndef MOEFUSE_H
#define MOEFUSE_H

#include "base.h"
#include "ctx.h"
#include "tensor.h"
#include "ops.h"
#include "route.h"
#include "layer.h"
#include "io.h"
#include "weights.h"

#endif
