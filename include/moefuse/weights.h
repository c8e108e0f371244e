/* moefuse — weight residency on the GPU.
 *
 * The GPU ops read weight tensors from device memory. A tensor (and each
 * expert bias array of mf_moe_gate_up / mf_moe_down_combine) is uploaded
 * once, on its first GPU use, and reused by every later call that passes the
 * same descriptor: same data, scales and biases pointers, type, shape
 * [E, N, K], row stride, group size and scale type. Per-call work then moves
 * only activations. The functions below make residency explicit: upload
 * ahead of time with a progress report, forget tensors, read counters.
 *
 * Residency relies on tensor.h's contract, extended: while a tensor is
 * resident, the memory its descriptor points at must not change. Before
 * changing or freeing such memory, call mf_weights_evict (or
 * mf_weights_evict_range) — otherwise later GPU calls compute with the old
 * values. Bias arrays are resident as F32 tensors [1, 1, count]; evict them
 * by range or with NULL. As a safety net, an implicitly uploaded tensor is
 * checked on each use against the first and last 16 bytes of its codes as
 * they were at upload, and uploaded again when they differ (freed memory
 * reused for another tensor of the same shape is the usual case); this
 * catches most mistakes but not all. Explicitly uploaded tensors are not
 * checked.
 *
 * Device memory: when an upload does not fit, the least recently used
 * implicitly uploaded tensors are evicted (never those the running call
 * needs, never explicit uploads); if it still does not fit the call fails
 * with MF_ERR_DEVICE_OOM, and MF_IMPL_AUTO calls run on the CPU instead.
 *
 * Large tensors: a shader reads a tensor through storage bindings of at
 * most maxStorageBufferRange bytes (4 GiB on most GPUs, 128 MiB on lavapipe
 * and on many phone GPUs). A tensor whose device image is larger is held in
 * up to 64 device buffers ("parts") of whole experts, as equal as the limit
 * allows (a one-expert tensor, as mf_qmv takes: of whole rows), and the
 * ops record one dispatch per part. Results are the same bits as from one
 * buffer. mf_moe_down_combine on a split tensor runs its grouped form (the
 * expert projections into a device buffer, then the combine), which needs
 * T k H floats of device memory within one binding. MF_ERR_DEVICE_OOM where
 * one expert (one row) exceeds the limit, where 64 parts do not suffice,
 * and for mf_dequant_act, which reads one buffer (its output is at least
 * as large as the tensor's image for every format but padded float rows).
 *
 * Thread-safety: as ctx.h (one thread per context at a time). */
#ifndef MOEFUSE_WEIGHTS_H
#define MOEFUSE_WEIGHTS_H

#include "ctx.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Upload progress: fraction of the tensor's device bytes copied so far, in
 * (0, 1], increasing, the last call with exactly 1.0. */
typedef void (*mf_progress_fn)(void *user, double fraction);

/* Makes t resident on the context's GPU now, in chunks through a bounded
 * staging buffer (64 MiB), calling progress (when not NULL) after each
 * chunk. An explicitly uploaded tensor is never evicted under memory
 * pressure, only by mf_weights_evict / mf_weights_evict_range. A tensor
 * already resident is not copied again (it becomes explicit; progress gets
 * 1.0 once). Errors: MF_ERR_INVALID_ARG (NULL ctx or t, invalid t as
 * mf_tensor_check says), MF_ERR_UNSUPPORTED (t's type unsupported, or the
 * context has no GPU), MF_ERR_DEVICE_OOM (it does not fit, or exceeds one
 * storage binding), MF_ERR_DEVICE_LOST, MF_ERR_DEVICE, MF_ERR_OUT_OF_MEMORY.
 * On error nothing new is resident. */
mf_status mf_weights_upload(mf_ctx *ctx, const mf_tensor *t,
                            mf_progress_fn progress, void *user);

/* Forgets the device copy of t (same descriptor as uploaded), or of every
 * resident tensor when t is NULL, and frees its device memory. Not being
 * resident is not an error. Errors: MF_ERR_INVALID_ARG (NULL ctx, invalid
 * t), MF_ERR_UNSUPPORTED (t of an unknown type / group / scale type, as
 * mf_tensor_check says). A context without a GPU has nothing resident:
 * MF_OK. */
mf_status mf_weights_evict(mf_ctx *ctx, const mf_tensor *t);

/* Forgets every resident tensor that reads any byte of [p, p + bytes)
 * (codes, scales, biases or a bias array). Errors: MF_ERR_INVALID_ARG (NULL
 * ctx or p, bytes 0). */
mf_status mf_weights_evict_range(mf_ctx *ctx, const void *p, size_t bytes);

/* Counters of the context's residency. */
typedef struct mf_weights_stats {
    int64_t tensors;          /* resident now */
    uint64_t resident_bytes;  /* device bytes they hold */
    uint64_t uploads;         /* tensors uploaded since the context began */
    uint64_t uploaded_bytes;  /* bytes those uploads copied */
    uint64_t evictions;       /* tensors evicted (pressure or explicit) */
    uint64_t buffers;         /* device buffers the resident tensors hold
                                 (more than tensors where one is split) */
} mf_weights_stats;

/* Fills *out (all zero for a context without a GPU). Errors:
 * MF_ERR_INVALID_ARG (NULL argument). */
mf_status mf_weights_stats_get(const mf_ctx *ctx, mf_weights_stats *out);

#ifdef __cplusplus
}
#endif
#endif
