/* Scaffolding of the GPU tests: contexts with the device, skip when there
 * is none, validation-layer checks. */
#ifndef MFT_GPU_COMMON_H
#define MFT_GPU_COMMON_H

#include <moefuse/moefuse.h>

#include "src/gpu/gpu.h"

/* A one-thread context with the GPU and a pipeline cache in a fresh
 * temporary directory. variant 0: the device's preferred reductions; the
 * test is skipped (reason printed) when no Vulkan device comes up.
 * variant 1: shaders forced onto shared-memory reductions
 * (MOEFUSE_GPU_NO_SUBGROUP); NULL when that is what variant 0 already
 * runs (the device has no subgroup arithmetic). variant 2: op inputs and
 * outputs through staging buffers and recorded copies (MOEFUSE_GPU_IO=copy);
 * variant 3: outputs written by the shaders into host memory, as on a
 * discrete GPU (MOEFUSE_GPU_IO=host). */
mf_ctx *mft_gpu_ctx(int variant);
/* Destroys the context and its directory; with MOEFUSE_VK_VALIDATION=1
 * fails the test if the validation layer reported anything. */
void mft_gpu_ctx_done(mf_ctx *c);
/* The context's device. */
mf_gpu *mft_gpu_of(mf_ctx *c);
/* The directory of the context's caches. */
const char *mft_gpu_dir(mf_ctx *c);

#endif
