/* The quantized-weight side of the Vulkan backend: resident weights (the
 * device copies of weight tensors, uploaded once and found again by their
 * host pointers and shape), helpers the op files share, and the MoE chain.
 * Not installed.
 *
 * Residency: a tensor is uploaded on its first GPU use (or explicitly with
 * mf_weights_upload) into one device-local buffer in the repacked layout of
 * shaders/qformat.glsl (or, over one storage binding, into several: parts
 * of whole experts, each an image of its own), and later calls with the same descriptor (same
 * data/scales/biases pointers, type, shape, row stride, group size, scale
 * type) reuse it without reading host memory. That relies on the caller's
 * promise that the memory behind a descriptor does not change while the
 * tensor is in use (tensor.h); mf_weights_evict forgets a tensor whose
 * memory is about to change or be freed. Implicit entries also compare the
 * first and last 16 bytes of the codes with those seen at upload on every
 * use (two cache lines), which catches most reuse of freed memory for
 * another tensor of the same shape; explicit uploads skip the check. Under device memory pressure the
 * least recently used implicit uploads are evicted; explicit uploads stay
 * until mf_weights_evict. Every plan recorded against a resident tensor
 * keys on its id, and eviction drops those plans. */
#ifndef MF_GPU_QUANT_H
#define MF_GPU_QUANT_H

#include "gpu_internal.h"

/* Upload staging: two buffers of this many bytes (the copy of one overlaps
 * the repacking of the next). */
#define MF_WCACHE_STAGE_BYTES ((size_t)32 << 20)

/* The device image of a tensor (see shaders/qformat.glsl). */
typedef struct mf_wlayout {
    uint64_t rows;       /* e * n */
    uint32_t nb;         /* blocks of 32 per row, ceil(k / 32) */
    uint32_t vecs;       /* uvec4s per block */
    uint64_t code_row;   /* bytes of one row's codes: nb * vecs * 16 */
    uint64_t scale_row;  /* bytes of one row's d values or MLX scales */
    uint64_t soff, boff; /* byte offsets of the scale and bias regions */
    uint64_t total;      /* bytes of the image */
} mf_wlayout;

/* Layout of a valid tensor's image. 0 on size overflow. */
int mf_wlayout_of(const mf_tensor *t, mf_wlayout *out);

/* Writes image bytes of rows [r0, r1) of region `region` (0 codes, 1 d or
 * scales, 2 biases) of t to dst (region 1 of Q4_0/Q8_0: 2 bytes per block;
 * MLX regions 1 and 2: the rows' scale/bias arrays). Returns the bytes
 * written. */
size_t mf_wpack_rows(const mf_tensor *t, const mf_wlayout *l, int region,
                     uint64_t r0, uint64_t r1, unsigned char *dst);

typedef struct mf_wkey {
    const void *data, *scales, *biases;
    int64_t e, n, k;
    uint64_t row_stride;
    int32_t type, group_size, scale_type, pad;
} mf_wkey;

/* One device buffer of a resident tensor: the image (its own layout) of
 * rows [r0, r0 + rows) of the e n rows. A tensor whose image fits one
 * storage binding (mf_wcache_part_bytes) is one part; a larger one is split
 * into parts of whole experts, as equal as the binding allows (e = 1:
 * parts of whole rows). */
typedef struct mf_wpart {
    uint64_t r0, rows;
    uint32_t e0, ne;  /* its experts [e0, e0 + ne); ne 0: rows of one */
    mf_wlayout lay;
    mf_vk_buf buf;
} mf_wpart;

/* Parts a tensor may take (beyond: MF_ERR_DEVICE_OOM). */
#define MF_WPARTS_MAX 64

/* A resident tensor. */
typedef struct mf_wres {
    mf_wkey key;
    unsigned char fp[32]; /* first and last 16 bytes of the codes at upload */
    uint32_t id;      /* unique for the context's life; plans key on it */
    mf_wlayout lay;   /* part 0's layout: nb, vecs, code_row and scale_row
                         hold for every part */
    uint32_t nparts;
    mf_wpart *part;
    uint64_t bytes;   /* device bytes of all parts */
    uint64_t last_use;
    int pinned;       /* explicit upload: never evicted under pressure */
    struct mf_wres *next;
} mf_wres;

/* The tensor's only buffer, NULL when it is split (ops that need one
 * binding return MF_ERR_DEVICE_OOM then). */
static inline const mf_vk_buf *mf_wres_buf(const mf_wres *r)
{
    return r->nparts == 1 ? &r->part[0].buf : NULL;
}

/* 1 when every part holds whole experts (the expert ops take those). */
static inline int mf_wres_by_expert(const mf_wres *r)
{
    return r->nparts == 1 || r->part[0].ne != 0;
}

#define MF_WCACHE_BUCKETS 256

typedef struct mf_wcache {
    mf_wres *bucket[MF_WCACHE_BUCKETS];
    uint32_t next_id;
    uint64_t clock;       /* bumped per op call: entries used by the
                             running call are not evicted */
    uint64_t uploaded_bytes, resident_bytes, uploads, evictions;
    uint64_t buffers;     /* device buffers of the entries (their parts) */
    int64_t count;
} mf_wcache;

/* Chain plans (chain.c). */
typedef struct mf_chain_plans mf_chain_plans;

typedef struct mf_gpu_quant {
    mf_wcache wc;
    mf_chain_plans *chains;
    int force_staged; /* MOEFUSE_GPU_UPLOAD=staged (tests): upload through
                         staging buffers even where the host can write
                         device memory directly */
    size_t stage_bytes; /* bytes per upload chunk: MF_WCACHE_STAGE_BYTES,
                           or MOEFUSE_GPU_UPLOAD_CHUNK (tests, >= 256) */
    uint64_t part_bytes; /* MOEFUSE_GPU_PART_BYTES (tests, >= 4096): parts
                            at most this large, below the binding limit;
                            0: that limit */
} mf_gpu_quant;

/* The quantized side of g, created on first use. NULL on host OOM. */
mf_gpu_quant *mf_gpu_quant_of(mf_gpu *g);
/* Frees it (device idle). Called by mf_gpu_destroy. */
void mf_gpu_quant_free(mf_gpu *g);

/* Starts an op call: entries fetched from now on belong to it and are not
 * evicted to make room for its other tensors. */
void mf_wcache_begin(mf_gpu *g);

/* The most bytes one part's image may take: the device's storage binding
 * limit, or MOEFUSE_GPU_PART_BYTES where that is lower. */
uint64_t mf_wcache_part_bytes(const mf_gpu *g);

/* The resident copy of t, uploading it when absent (implicit), in parts
 * where its image exceeds mf_wcache_part_bytes. On device OOM evicts
 * unpinned entries the running call does not use and retries;
 * MF_ERR_DEVICE_OOM when it still does not fit, when one expert (one row
 * for e = 1) exceeds a part, or it would take more than MF_WPARTS_MAX
 * parts. */
mf_status mf_wcache_get(mf_gpu *g, const mf_tensor *t, const mf_wres **out);

/* A bias array of n floats as a resident F32 tensor [1, 1, n]. */
mf_status mf_wcache_get_f32(mf_gpu *g, const float *p, int64_t n,
                            const mf_wres **out);

/* ---- helpers shared by the op files */

/* Spec constant of a tensor's format: type | group << 8 | scale type << 16
 * (what qformat.glsl's users unpack). */
uint32_t mf_wfmt(const mf_tensor *t);

/* Lanes per output row for rows of nb blocks: the power of two >= nb (one
 * block per lane: the most loads in flight), at most 32, and within one
 * subgroup when the subgroup variants run (their reductions are subgroup
 * shuffles, no barrier). */
uint32_t mf_qlanes(const mf_vk *vk, uint32_t nb);

/* Lanes per output row of the INT8 gate_up shader: mf_qlanes, at most 16
 * unless MOEFUSE_GPU_QLANES says otherwise. Measured on the H200 (chain,
 * Q4_0, 256-thread workgroups), 16 lanes against 32: Qwen3-30B-A3B
 * gate_up 9.35 against 9.74 us at T = 1, 137 against 164 us at T = 32;
 * Mixtral-8x7B 52.8 against 63.1 us and 1169 against 1340 us. The INT8
 * down shader keeps mf_qlanes (16 lanes lost: 10.8 against 10.1 us,
 * 163 against 151 us at Qwen3 T = 1 / 32). */
uint32_t mf_qlanes_gu_i8(const mf_vk *vk, uint32_t nb);

/* Workgroups a matvec dispatch should have at least (a large GPU keeps
 * hundreds in flight). */
#define MF_QMIN_GROUPS 256

/* Rows per lane group for `rows` output rows, groups_per_wg lane groups
 * per workgroup and `other` workgroups per row block (pairs, tokens): 4
 * when that still gives 8 MF_QMIN_GROUPS workgroups, else 2 when that
 * gives MF_QMIN_GROUPS, else 1. A lane group reuses its activation blocks,
 * held in registers, for all its rows and keeps all their loads in flight
 * (measured on an H100, Qwen3-30B-A3B: at T = 1 two rows beat one, four
 * and eight in both expert ops; at T = 32 four beat two). */
uint32_t mf_qrpw(uint64_t rows, uint32_t groups_per_wg, uint64_t other);

/* Modes of the expert shaders (moe_gate_up.comp, moe_down.comp): per
 * pair, every (token, slot) pair streams its expert's rows on its own; or
 * grouped, a workgroup per (row block, expert) finds the pairs routed to
 * its expert on the device (idx may come from the gating dispatch of a
 * chain) and takes them M at a time, their activation blocks in registers:
 * each weight block is decoded once per M pairs, and the M-pair passes
 * over a row block follow each other, so its weights come from memory
 * about once per expert. Both modes give the same bits (each output's
 * operations and their order are the same).
 * mf_qgroup gives M for `pairs` pairs over `experts` experts, 0 for the
 * per-pair mode: grouped with M = 4 once the mean pairs per expert reaches
 * min_mean (0: never). Measured on an H100 (chain, Q4_0; device time per
 * step), the per-pair kernels are bound by instruction issue and latency,
 * not by streaming an expert's rows once per pair: their time grows with
 * the pairs (Mixtral-8x7B gate_up 2.5 ms at T = 32, 19.5 ms at T = 256),
 * and the grouped mode with M = 1 (rows from the cache after the first
 * pair) is no faster. Decoding once per M pairs saves instructions but the
 * pairs' activations in registers cost occupancy: gate_up gained 21% at
 * 64 pairs per expert (Mixtral T = 256) and 10% at 16 (Qwen3-30B-A3B
 * T = 256), broke even at 8 (Mixtral T = 32, within the runs' 20%
 * spread) and lost 45% at 2.7 (Qwen T = 32); down with M = 2 or 4 lost
 * 5-80% at every size (M = 1 at best broke even). So gate_up passes
 * min_mean 16, down 0.
 * MOEFUSE_GPU_MOE_GROUP (tests, benchmarks; read when a plan is recorded)
 * forces a mode for both: 0 per pair, 1..16 (a power of two) grouped with
 * that M, as far as mf_qgroup_fit lets it. Below it, `form` (a kernel
 * form, gpu.h: 0 per pair, 1 grouped with M = 4, MF_GPU_FORM_AUTO the
 * rule above) decides. */
uint32_t mf_qgroup(uint64_t pairs, uint64_t experts, uint64_t min_mean,
                   int form);
/* Floats per lane the grouped mode may hold: 32 M activations and the
 * partial sums (registers). */
#define MF_QGROUP_FLOATS 160
/* Fits the grouped mode: halves *rpw, then *m, until a lane's 32 m
 * activations and per * m * rpw sums are at most MF_QGROUP_FLOATS and the
 * shared memory (the reduction's per * m * rpw floats per thread of wg
 * without subgroup shuffles, plus `words` words) fits the device. *m = 0
 * when nothing fits. */
void mf_qgroup_fit(const mf_vk *vk, int subgroup, uint32_t wg, uint32_t per,
                   size_t words, uint32_t *m, uint32_t *rpw);

/* Staged activation blocks per pair and chunk of the EXACT expert shaders
 * (XKB; moe_gate_up.comp) for rows of nb blocks, m pairs staged at once,
 * lane groups of tpr lanes, beside `other` bytes of the shader's own
 * shared memory: all nb when m 8 (nb | 1) vec4s take at most 24 KiB and
 * fit the device beside `other`, else the most that do in multiples of
 * tpr (a lane then takes the same blocks in the same order: the bits do
 * not depend on the chunk). 0, the activations loaded by every lane
 * from device memory, when not even tpr blocks fit (callers skip it
 * where the form MF_GPU_FORM_GU_XSTAGE / DN_XSTAGE is 0, as with
 * MOEFUSE_GPU_XSTAGE=0; tests: MOEFUSE_GPU_XKB, a power of two, caps the
 * chunk). Staged, a lane
 * group's loads of one vec4 of consecutive blocks are consecutive shared
 * memory; from device memory each lane reads 128 contiguous bytes, and
 * a warp's load touches a cache line per lane. */
uint32_t mf_qxkb(const mf_vk *vk, uint32_t nb, uint32_t m, uint32_t tpr,
                 size_t other);

/* MF_PREC_INT8 on the device (shaders/qint8.glsl): 1 when prec asks for
 * it, every tensor in w[0..n) is quantized (Q4_0, Q8_0, MLX) and the device
 * enabled packed integer dot products (vk->int_dot); else the EXACT
 * shaders run (ops.h). */
int mf_qint8(const mf_vk *vk, mf_precision prec, const mf_tensor *const *w,
             int n);
/* Bytes of shared memory per staged activation block of the INT8 shaders:
 * 32 codes, d and s, the code sum. */
#define MF_QI8_BLOCK_BYTES 44
/* Staged blocks per row and chunk of the INT8 shaders for rows of nb
 * blocks, `rows` activation rows staged at once, beside `other` bytes of
 * the shader's own shared memory: all nb when their staging takes at most
 * 16 KiB (a workgroup that takes more costs occupancy) and fits the device
 * beside `other`, else the most that do, in multiples of 32 from 32 up.
 * 0 when not even one block fits (the EXACT shader runs then: no device
 * in use comes near). MOEFUSE_GPU_I8_KB=32..1024 (tests; a power of two,
 * read when a plan is recorded) lowers the chunk to cover the chunked
 * path: a multiple of the lanes per row, so the bits do not change. */
uint32_t mf_qkb(const mf_vk *vk, uint32_t nb, uint32_t rows, size_t other);

/* Workgroup size: 128 threads, or the device's maximum when smaller. */
uint32_t mf_qwg(const mf_vk *vk);
/* The INT8 expert shaders' workgroup size: 256 threads (or the device's
 * maximum). Measured on the H200, Qwen3-30B-A3B Q4_0 chain, device time
 * per step against 64 / 128 / 512: T = 1 gate_up 10.0 us (11.4 / 10.4 /
 * 12.4), down 10.0 us (14.8 / 13.3 / 11.1); T = 32 gate_up 163 us (190 /
 * 167 / 159), down 150 us (197 / 181 / 125). MOEFUSE_GPU_QWG overrides
 * it as it does mf_qwg. */
uint32_t mf_qwg_i8(const mf_vk *vk);
/* These read tuning overrides when a plan is recorded (benchmarks):
 * MOEFUSE_GPU_QWG=32..1024 (workgroup size), MOEFUSE_GPU_QLANES=1..32
 * (lanes per row, still capped by the subgroup size), MOEFUSE_GPU_QRPW=1..8
 * (rows per lane group); powers of two. */

/* The shader variant with subgroup shuffles when the device has them (and
 * they are not disabled), else the shared-memory one. */
int mf_quse_subgroup(const mf_vk *vk);

/* Byte offsets in io buffers: 256-aligned (every device's storage offset
 * alignment). */
static inline size_t mf_qalign(size_t b) { return (b + 255) & ~(size_t)255; }

/* Activation rows per pass of the qmv shader for M rows (op_qmv.c). */
uint32_t mf_qmv_rows_per_pass(int64_t M);
/* The qmv pipeline for w with mb activation rows per pass, the INT8
 * variant when int8 (mf_qint8 must have said yes); *wg_out its workgroup
 * size, *rows_out the output rows per workgroup. */
mf_status mf_gpu_qmv_pipe(mf_vk *vk, const mf_tensor *w, uint32_t mb,
                          int int8,
                          const mf_vk_pipe **pipe, uint32_t *wg_out,
                          uint32_t *rows_out);
/* Records y[y_off + m ys + n] = act(x[m] . w[n] + bias[b_off + n]) for the
 * resident w (x rows padded to whole blocks, zeros after K); bias NULL:
 * none. One dispatch per part of w (res->nparts). */
void mf_gpu_qmv_record(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                       const mf_wres *res, uint32_t rows_per_wg, int64_t M,
                       mf_act act, const mf_vk_bind *x, const mf_vk_bind *y,
                       uint32_t y_off, uint32_t ys, const mf_vk_bind *bias,
                       uint32_t b_off);

/* The resident tensors and pipeline of a mf_moe_gate_up call. */
typedef struct mf_gu_res {
    const mf_wres *wg, *wu, *bg, *bu; /* wu = wg, bu = bg unless SEPARATE */
    const mf_vk_pipe *pipe;
    uint32_t rows;                    /* outputs per workgroup */
    uint32_t group;                   /* mf_qgroup's M; 0: per pair */
    int int8;                         /* the INT8 shader (mf_qint8) */
} mf_gu_res;

/* Makes d's tensors resident and gets the pipeline (op_moe_gate_up.c). */
mf_status mf_gpu_gate_up_prepare(mf_gpu *g, const mf_moe_gate_up_desc *d,
                                 int64_t pairs, mf_gu_res *out);
/* Records h[p hs + f] for the T k pairs: x rows padded to whole blocks
 * (zeros after H), idx at idx_off of its binding. One dispatch per range
 * of experts held by one part of each weight tensor (split tensors), at
 * most mf_gpu_gate_up_dispatches. */
uint32_t mf_gpu_gate_up_dispatches(const mf_gu_res *r);
void mf_gpu_gate_up_record(mf_vk *vk, mf_vk_prog *p,
                           const mf_moe_gate_up_desc *d, const mf_gu_res *r,
                           int64_t T, int32_t k, const mf_vk_bind *x,
                           const mf_vk_bind *idx, uint32_t idx_off,
                           const mf_vk_bind *h, uint32_t hs);

/* The resident tensors and pipelines of a mf_moe_down_combine call:
 * per pair (group 0) one fused dispatch per token; grouped, the expert
 * projections into v [T k, H] (pipe), then their combine (comb). */
typedef struct mf_dn_res {
    const mf_wres *wd, *bd;
    const mf_vk_pipe *pipe, *comb;
    uint32_t rows;
    uint32_t group;                   /* mf_qgroup's M; 0: per pair */
    int int8;                         /* the INT8 shaders (mf_qint8) */
    int slots;                        /* per pair: phase 3 (slot groups) */
    const mf_vk_pipe *quant;          /* INT8: h quantized once first
                                       * (i8quant.comp), else NULL */
    uint64_t hq_bytes;                /* its records' bytes (quant) */
} mf_dn_res;

/* The down step's device scratch: the grouped mode's v [P, H] (aligned),
 * then the quantized h records at that offset; the v part's bytes. */
static inline size_t mf_dn_v_bytes(const mf_dn_res *r, uint64_t P, int64_t H)
{
    return r->group ? mf_qalign((size_t)(P * (uint64_t)H) * 4) : 0;
}

/* Cache warming (prefetch.c): whether the chain reads the down weights of
 * the P pairs' experts (n rows each of w) beside gate_up, its pipeline,
 * and the dispatch (idx at element idx_off of its binding; dst: 16 bytes
 * no one reads). Only with MOEFUSE_GPU_PREFETCH=1 (read when a chain is
 * recorded; measured slower on the H100, prefetch.c). */
int mf_gpu_prefetch_wanted(const mf_wres *w, int64_t n, uint64_t P);
mf_status mf_gpu_prefetch_pipe(mf_vk *vk, const mf_vk_pipe **pipe);
void mf_gpu_prefetch_record(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                            const mf_wres *w, int64_t n, const mf_vk_bind *idx,
                            uint32_t idx_off, uint32_t P, const mf_vk_bind *dst);

mf_status mf_gpu_down_prepare(mf_gpu *g, const mf_moe_down_desc *d,
                              int64_t T, int32_t k, int has_res,
                              mf_dn_res *out);
/* Records y[y_off + t H + i]: h rows of hs vec4s (padded, zeros after F),
 * idx / routing weights / residual at the given element offsets of their
 * bindings (res NULL: none, as prepared). v: device memory of T k H
 * floats the grouped mode writes and reads (ignored per pair); grouped,
 * the projections (a dispatch per weight part) and then, after a barrier,
 * the combine. hq: device memory of r->hq_bytes where r->quant (ignored
 * otherwise): the quantize dispatch writes it and a barrier separates it
 * from the down dispatches. At most mf_gpu_down_dispatches dispatches. */
uint32_t mf_gpu_down_dispatches(const mf_dn_res *r);
void mf_gpu_down_record(mf_vk *vk, mf_vk_prog *p, const mf_dn_res *r,
                        int64_t T, int32_t k, const mf_vk_bind *h,
                        uint32_t hs, const mf_vk_bind *idx, uint32_t idx_off,
                        const mf_vk_bind *w, uint32_t w_off,
                        const mf_vk_bind *res, uint32_t res_off,
                        const mf_vk_bind *y, uint32_t y_off,
                        const mf_vk_bind *v, const mf_vk_bind *hq);

/* Drops every recorded plan (ops and chains) that binds resident tensor id. */
void mf_quant_drop_plans(mf_gpu *g, uint32_t id);

/* Chain plans' lifetime (chain.c). */
void mf_chain_plans_free(mf_gpu *g, mf_chain_plans *c);
void mf_chain_plans_drop_id(mf_gpu *g, mf_chain_plans *c, uint32_t id);

#endif
