/* Test scaffolding shared by every test file: seeded random data (seed
 * printed; MOEFUSE_SEED=N reproduces a run), contexts, impl lists, ulp
 * distance, unaligned buffers, and double-precision oracles. */
#ifndef MFT_COMMON_H
#define MFT_COMMON_H

#include <moefuse/moefuse.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mft_rng { uint64_t s[4]; } mft_rng;

/* The run's seed (from MOEFUSE_SEED, else time and pid), printed once. */
uint64_t mft_seed(void);
/* A generator for one test: seed mixed with `stream` (e.g. __LINE__). */
mft_rng mft_rng_make(uint64_t stream);
uint64_t mft_next(mft_rng *r);
float mft_uniform(mft_rng *r, float lo, float hi);
int64_t mft_int(mft_rng *r, int64_t lo, int64_t hi); /* inclusive */
float mft_normal(mft_rng *r);
void mft_fill_uniform(mft_rng *r, float *x, size_t n, float lo, float hi);
void mft_fill_normal(mft_rng *r, float *x, size_t n, float sigma);

/* A context shared by the process (threads = 2, GPU disabled), created on
 * first use. */
mf_ctx *mft_ctx(void);

/* The CPU impls to check against MF_IMPL_REF on this machine: SCALAR (threaded
 * reference), each available ISA, and CPU. Returns the count (<= 8). */
int mft_cpu_impls(mf_impl *out);

/* |a - b| in units in the last place of f32 (0 when equal, both NaN, or
 * same-signed infinities; UINT32_MAX for NaN vs non-NaN). */
uint32_t mft_ulp_diff(float a, float b);
/* 1 when b is within `ulps` ulp or `abs_tol` absolute of a. */
int mft_close(float a, float b, uint32_t ulps, float abs_tol);

/* A buffer of `bytes` starting `offset` bytes past a 64-byte boundary; free
 * with mft_free. The bytes are filled with 0xA5 (poison). */
void *mft_alloc(size_t bytes, size_t offset);
void mft_free(void *p);

/* Quantization helpers for tests: random [rows, k] weights quantized to
 * `type` (MLX: group g, scale type st). Returns a tensor whose buffers the
 * caller frees with mft_tensor_free. */
typedef struct mft_qtensor {
    mf_tensor t;
    void *data, *scales, *biases;
} mft_qtensor;
mft_qtensor mft_qtensor_random(mft_rng *r, mf_type type, int64_t e,
                               int64_t n, int64_t k, int32_t group,
                               mf_type st);
void mft_qtensor_free(mft_qtensor *q);

/* Writes to buf the shell command that runs the built program `path` with
 * `args` (appended as is): through the emulator in cross builds, as meson
 * runs the tests (MESON_EXE_WRAPPER). Fails the test if it does not fit. */
void mft_exe_command(char *buf, size_t cap, const char *path,
                     const char *args);

#endif
