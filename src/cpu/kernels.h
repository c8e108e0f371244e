/* The CPU kernel contract: one table of function pointers per ISA.
 *
 * Kernels receive validated arguments (the front door in src/dispatch/ checks
 * everything) and work on a slice of the output so the thread pool can split
 * them. They never allocate, never fail, and never touch memory outside the
 * slice they were given. A kernel set fills the entries it implements and
 * leaves the rest as the reference set put them (mf_kernels_init_ref runs
 * first), so a new ISA can start with one op.
 *
 * Adding an ISA: one directory src/cpu/<isa>/ with one file per op family,
 * one mf_kernels_init_<isa>, one line in src/cpu/kernels.c. */
#ifndef MF_CPU_KERNELS_H
#define MF_CPU_KERNELS_H

#include <moefuse/moefuse.h>

/* The block-quantized weight types (Q4_0, Q8_0, MLX Q4/Q8): the ones
 * MF_PREC_INT8 applies to, on the CPU and the GPU. */
static inline int mf_type_quantized(mf_type t)
{
    return t == MF_TYPE_Q4_0 || t == MF_TYPE_Q8_0 || t == MF_TYPE_MLX_Q4 ||
           t == MF_TYPE_MLX_Q8;
}

/* Activations quantized for the INT8 path: one block per 32 elements. */
typedef struct mf_q8blk {
    float d;       /* scale: x ~= d * q; absmax / 127 (0 for an all-zero block) */
    float s;       /* d * sum(q): for formats with a per-group bias */
    int8_t q[32];
} mf_q8blk;

typedef struct mf_kernels {
    mf_isa isa;

    /* ---- gating: one token row. scratch holds >= 4 * E + 64 floats. */
    void (*gating_row)(const mf_gating_desc *d, const float *logits,
                       int32_t *idx, float *w, float *scratch);

    /* ---- combine: one token, elements [d0, d1) of D.
     * x_t points at x[t, 0, 0] (k rows of D), w_t at w[t, 0], res_t at
     * residual[t, 0] or NULL, out_t at out[t, 0]. */
    void (*combine)(int32_t k, int64_t D, int64_t d0, int64_t d1,
                    const float *x_t, const float *w_t, const float *res_t,
                    float *out_t);
    void (*combine_exact)(int32_t k, int64_t D, int64_t d0, int64_t d1,
                          const float *x_t, const float *w_t,
                          const float *res_t, float *out_t);

    /* ---- glu: elements [n0, n1) of one row.
     * SEPARATE: element i of g at g[i], of u at u[i].
     * CONCAT: caller passes u = g + n (in elements).
     * INTERLEAVED: element i of g at g[2i], of u at g[2i+1]; u is unused.
     * Pointers are to the row start, typed by in_type; out by out_type. */
    void (*glu)(const mf_glu_desc *d, int64_t n0, int64_t n1, const void *g,
                const void *u, void *out);

    /* ---- dequant: row r of w (r = e*N + n, absolute), elements [0, K) to
     * f32 out, bit-exact to the format definition. */
    void (*dequant_row)(const mf_tensor *w, int64_t r, float *out);

    /* ---- in-place activation on n floats. */
    void (*act)(mf_act act, float *x, int64_t n);

    /* ---- f32 -> out_type conversion of n values (round to nearest even). */
    void (*store)(mf_type out_type, const float *src, void *dst, int64_t n);

    /* ---- quantized/float matvec core, EXACT precision.
     * For rows r0 .. r0+nr-1 of w (absolute row numbers) and M activation
     * rows x[m] (K floats each): y[m][i] = dot(row r0+i, x[m]), i < nr. */
    void (*qdot)(const mf_tensor *w, int64_t r0, int64_t nr,
                 const float *const *x, int M, float *const *y);

    /* ---- INT8 precision: activations quantized with quantize_q8 (K/32
     * blocks each). Float weight types are not routed here.
     * quantize_q8 is bit-identical in every kernel set (d = absmax / 127,
     * q = nearest-even(x / d) in +-127, s = d * sum(q); a block holding
     * Inf/NaN gets d = s = NaN, q = 0), so blocks from any set feed any
     * qdot_q8. qdot and qdot_q8 take M from 1 to 32 and any nr >= 1; the x, xq
     * and y rows may lie anywhere (no alignment, no common stride). */
    void (*quantize_q8)(const float *x, int64_t K, mf_q8blk *out);
    void (*qdot_q8)(const mf_tensor *w, int64_t r0, int64_t nr,
                    const mf_q8blk *const *xq, int M, float *const *y);
} mf_kernels;

/* Fill a table. The reference fills every entry; the others override. */
void mf_kernels_init_ref(mf_kernels *k);
void mf_kernels_init_avx2(mf_kernels *k);
void mf_kernels_init_avx512(mf_kernels *k);
void mf_kernels_init_neon(mf_kernels *k);

/* The table for a kernel set (built once, static storage), or NULL when this
 * build lacks it. Does not check the CPU: callers do (mf_cpu_info). */
const mf_kernels *mf_kernels_get(mf_isa isa);

#endif
