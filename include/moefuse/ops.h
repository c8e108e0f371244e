/* moefuse — the ops.
 *
 * Conventions shared by every op:
 *  - Each op takes the context and a descriptor whose first field `impl`
 *    selects the implementation (mf_impl; 0 = MF_IMPL_AUTO). Start descriptors
 *    zeroed ({0}) and set what you need: every zero field is a valid default.
 *  - Arrays are dense, row-major, host memory, no alignment required. Shapes
 *    are given outermost first: [T, k, D] means D innermost.
 *  - Arguments are validated before anything is written. On any error the
 *    outputs are untouched. Errors common to all ops:
 *      MF_ERR_INVALID_ARG  ctx, d or a required pointer NULL; a dimension
 *                          < 1 or over its limit; a size that overflows;
 *                          an enum out of range; an expert index out of
 *                          [0, E); outputs overlapping inputs (except where
 *                          an op allows it).
 *      MF_ERR_UNSUPPORTED  the forced impl is not in this build or machine;
 *                          a type/format combination the op does not take.
 *      MF_ERR_OUT_OF_MEMORY a scratch allocation failed.
 *  - Limits: T (tokens / rows) <= 65536, E <= 4096, k <= E, widths <= 2^24.
 *  - Results: indices are identical across every impl. Float results of the
 *    reference are the oracle; other impls meet the tolerance each op states.
 *  - Thread-safety: see ctx.h (one thread per context at a time). */
#ifndef MOEFUSE_OPS_H
#define MOEFUSE_OPS_H

#include "ctx.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- gating -- */

typedef enum mf_gating_mode {
    /* p = softmax(logits + bias); idx = top-k(p); w = p[idx];
     * if renormalize: w /= sum(w). (Qwen3, OLMoE, DeepSeek-V2) */
    MF_GATING_SOFTMAX_TOPK = 0,
    /* idx = top-k(logits + bias); w = softmax(logits[idx] + bias[idx]).
     * (Mixtral, GPT-OSS with its router bias) */
    MF_GATING_TOPK_SOFTMAX = 1,
    /* s = sigmoid(logits); score = s + bias (bias for selection only);
     * if n_group > 1: a group's score = sum of its two highest scores
     * (its one score if the group has a single expert); the topk_group best
     * groups are kept, the others' experts excluded; idx = top-k(score);
     * w = s[idx]; if renormalize: w /= sum(w); w *= scale.
     * (DeepSeek-V3, GLM-4.5) */
    MF_GATING_SIGMOID_GROUPED = 2,
    MF_GATING_MODE_COUNT_
} mf_gating_mode;

typedef struct mf_gating_desc {
    mf_impl impl;
    mf_gating_mode mode;
    int32_t n_experts;   /* E, 1..4096 */
    int32_t k;           /* 1..E */
    int32_t renormalize; /* 0 or 1 (ignored by TOPK_SOFTMAX: sums to 1) */
    const float *bias;   /* [E] or NULL; see the modes */
    int32_t n_group;     /* SIGMOID_GROUPED: 0 or 1 = no groups, else divides
                            E; other modes must be 0 or 1 */
    int32_t topk_group;  /* groups kept, 1..n_group (with n_group > 1) */
    float scale;         /* multiplies the final weights in every mode;
                            0 means 1.0 (DeepSeek-V3 uses 2.5) */
} mf_gating_desc;

/* Router logits [T, E] (f32) -> idx [T, k] (int32) and weights [T, k] (f32).
 *
 * Selection is by descending score; ties go to the lower expert index; the k
 * indices come out in that order, each expert at most once.
 *
 * What is compared: the softmax modes select on the f32 keys
 * logits + bias (logits alone without a bias), which orders experts as p
 * does in exact arithmetic but needs no exp, so every impl compares the
 * same floats (rounded probabilities of near-equal logits would tie). The
 * sigmoid mode compares the f32 scores s + bias with
 * s = 1 / (1 + expf(-x)) for x >= 0 and e / (1 + e), e = expf(x), for x < 0
 * (libm expf), group scores being the f32 sum of the two.
 *
 * Non-finite logits: NaN counts as -Inf everywhere (it is never preferred
 * over a number, and its probability is 0). A +Inf logit takes the whole
 * softmax mass, shared equally among the +Inf entries (the limit of the
 * function). A row whose logits are all -Inf/NaN selects experts 0..k-1 in
 * the softmax modes and gets weight 0 for each. A sum of zero under
 * renormalize leaves the weights at 0 (never NaN). In sigmoid mode
 * sigmoid(+Inf) = 1 and sigmoid(-Inf) = 0; a NaN bias counts as -Inf; a
 * group whose two scores are +Inf and -Inf (NaN sum) scores -Inf.
 *
 * Tolerance of non-reference impls: indices identical in every mode; in the
 * sigmoid mode weights are bit-identical too (vector kernels bound their
 * polynomial scores and re-score with the reference's arithmetic every
 * expert they cannot rule out, which includes all they select). Softmax
 * modes: weights within 8 ulp or 1e-7 absolute of the reference: the
 * polynomial exp (<= 2 ulp) against libm's (<= 1 ulp) enters both each
 * numerator and the sum (taken in double), plus the division and the
 * renormalization's roundings; the largest seen in the tests is 3 ulp.
 * MF_IMPL_UNFUSED runs softmax over E, a full sort, gather and normalize as
 * separate passes; it matches the reference bit for bit.
 *
 * Errors: the common ones; k > E; renormalize not 0 or 1; scale not finite;
 * n_group < 0, n_group > 1 outside SIGMOID_GROUPED, or not dividing E;
 * topk_group out of 1..n_group with groups, or not 0 or 1 without;
 * topk_group * (E / n_group) < k. */
mf_status mf_gating(mf_ctx *ctx, const mf_gating_desc *d, const float *logits,
                    int64_t T, int32_t *idx, float *weights);

/* --------------------------------------------------------------- combine -- */

typedef struct mf_combine_desc {
    mf_impl impl;
    int32_t exact; /* 1 = round like the unfused sequence (below) */
} mf_combine_desc;

/* out[t, :] = sum_j w[t, j] * x[t, j, :]  (+ residual[t, :] if not NULL).
 * x [T, k, D], w [T, k], residual [T, D] or NULL, out [T, D]; all f32.
 * out may be the same pointer as residual (in-place add) but must not
 * otherwise overlap an input.
 *
 * exact = 1 computes, per element, in this order with every product and sum
 * rounded to f32 and no fused multiply-add:
 *   acc = w0*x0; acc = acc + w1*x1; ...; acc = acc + w_{k-1}*x_{k-1};
 *   out = acc + residual
 * which is what the unfused passes (scale, sum, add) produce: results are
 * bit-identical to MF_IMPL_UNFUSED and MF_IMPL_REF in every impl.
 * exact = 0 may use FMA (and other summation roundings): within
 * 2 (k + 1) 2^-24 (sum_j |w_j x_j| + |residual|) of the reference — each of
 * the two is within half of that of the exact sum. NaN/Inf given as inputs
 * propagate as IEEE arithmetic in every impl. */
mf_status mf_combine(mf_ctx *ctx, const mf_combine_desc *d, int64_t T,
                     int32_t k, int64_t D, const float *x, const float *w,
                     const float *residual, float *out);

/* ------------------------------------------------------------------- glu -- */

typedef enum mf_glu_kind {
    MF_GLU_SWIGLU = 0,      /* silu(g) * u */
    MF_GLU_GEGLU_TANH = 1,  /* gelu_tanh(g) * u */
    MF_GLU_GEGLU_ERF = 2,   /* gelu_erf(g) * u */
    MF_GLU_SWIGLU_OAI = 3,  /* GPT-OSS: g = min(g, limit);
                               u = clamp(u, -limit, limit);
                               (u + 1) * g * sigmoid(alpha * g) */
    MF_GLU_KIND_COUNT_
} mf_glu_kind;

typedef enum mf_glu_layout {
    MF_GLU_SEPARATE = 0,    /* gate [T, n] and up [T, n] */
    MF_GLU_CONCAT = 1,      /* one array [T, 2n]: each row [g_0..g_n-1 | u_0..u_n-1] */
    MF_GLU_INTERLEAVED = 2, /* one array [T, 2n]: each row g_0 u_0 g_1 u_1 ... */
    MF_GLU_LAYOUT_COUNT_
} mf_glu_layout;

typedef struct mf_glu_desc {
    mf_impl impl;
    mf_glu_kind kind;
    mf_glu_layout layout;
    mf_type in_type;  /* F32, F16 or BF16 */
    mf_type out_type; /* F32, F16 or BF16 */
    float limit;      /* SWIGLU_OAI clamp; 0 = 7.0 */
    float alpha;      /* SWIGLU_OAI sigmoid slope; 0 = 1.702 */
} mf_glu_desc;

/* out [T, n] = glu(gate, up). With CONCAT/INTERLEAVED, `gate` is the one
 * [T, 2n] input and `up` must be NULL. Math is f32; inputs are widened
 * exactly, the output rounded once to out_type.
 * The reference: silu(g) = g * sigmoid(g); gelu_erf(g) = g * (0.5 erfc(z))
 * with z the f32 product g * -0x1.6a09e6p-1; gelu_tanh(g) = g * sigmoid(y)
 * with y = g * (c1 + c2 * (g * g)) in f32 steps, c1 = 2 sqrt(2/pi),
 * c2 = 0.044715 c1 (the tanh form, rewritten without its cancellation for
 * g < 0); OAI's factor g * sigmoid(alpha * g). Each factor (sigmoid,
 * 0.5 erfc) is rounded once from double; then act * u, and for OAI
 * (u + 1) * factor, in f32.
 * Tolerance of non-reference impls: f32 output within 8 ulp (GEGLU_ERF:
 * 10 ulp) + 1e-30 absolute of the reference. They form the same arguments
 * with the same f32 operations and evaluate the factor with polynomials
 * (sigmoid <= 3 ulp, the avx512 silu <= 5 ulp, erfc <= 6 ulp), then apply
 * the same two products; the 1e-30 covers factors that underflow (the
 * avx512 silu gives -0 for g < -88.7, where g sigmoid(g) < 2.7e-37).
 * f16/bf16 outputs within one unit in the last place of the output type.
 * MF_IMPL_UNFUSED matches the reference bit for bit.
 * NaN/Inf propagate as the formulas evaluate in IEEE arithmetic: a NaN g or
 * u gives NaN (min/clamp of NaN is NaN); silu(-Inf) = -Inf * 0 = NaN;
 * OAI clamps +-Inf to finite values. */
mf_status mf_glu(mf_ctx *ctx, const mf_glu_desc *d, int64_t T, int64_t n,
                 const void *gate, const void *up, void *out);

/* ----------------------------------------------------------- dequant_act -- */

typedef struct mf_dequant_desc {
    mf_impl impl;
    mf_act act;       /* applied after dequantization */
    mf_type out_type; /* F32, F16 or BF16 */
} mf_dequant_desc;

/* out [E*N, K] (dense, out_type) = act(dequant(w)). w may be any type.
 * Dequantization is exact (the f32 value the format defines: Q4_0
 * d*(q-8), Q8_0 d*q, MLX scale*q+bias with one rounding, as fmaf does not:
 * the product is rounded, then the sum); every impl matches it bit for bit
 * when act = NONE and out_type = F32 (a NaN scale or weight gives a NaN,
 * its payload unspecified). F16/BF16 outputs are those values rounded to
 * nearest even, also bit for bit. With an activation: the activation's
 * tolerance as in mf_glu (f32: 8 ulp + 1e-30 of the reference; f16/bf16:
 * one unit in the last place). MF_IMPL_UNFUSED runs a dequantization pass
 * over the whole tensor, then an activation pass, then a conversion pass.
 * Rows are split across the context's threads from 24 KiB of weights.
 * MF_IMPL_GPU: w becomes resident on the device (weights.h) and is decoded
 * there exactly (denormal products and sums included): the same bit-for-bit
 * results and tolerances.
 * Errors: the common ones; out_type not F32/F16/BF16 (MF_ERR_UNSUPPORTED);
 * out overlapping the rows, scales or biases of w; tensor errors as
 * mf_tensor_check reports them. */
mf_status mf_dequant_act(mf_ctx *ctx, const mf_dequant_desc *d,
                         const mf_tensor *w, void *out);

/* ------------------------------------------------------------------- qmv -- */

typedef enum mf_precision {
    /* f32 activations, weights dequantized in registers, f32 sums. */
    MF_PREC_EXACT = 0,
    /* activations quantized to int8 per block of 32: d_x = absmax / 127,
     * q = x / d_x rounded to nearest even and clamped to +-127 (f32
     * operations; an all-zero block has d_x = 0); integer dot products per
     * block, f32 across blocks. Error bound per output (vs the exact
     * value): sum over blocks of |w|_1 * d_x / 2 (half a quantization step
     * per element) times (1 + 2^-15), plus the EXACT path's rounding taken
     * over the terms the format adds (for MLX |scale * q| + |bias| per
     * weight: the integer path does not round the dequantized weight).
     * A block of x holding Inf or NaN makes every output of that row NaN.
     * Applies to quantized weight types only: with F32/F16/BF16 weights,
     * and for M > 32, the EXACT path runs. On the GPU (MF_IMPL_GPU, or AUTO
     * placed there) it runs where the device has packed integer dot
     * products (mf_gpu_info.int8_dot: VK_KHR_shader_integer_dot_product):
     * the same quantization and per-block terms, the blocks summed in
     * another order, the same bound. (A block whose absmax is below
     * 127 * 2^-126, so that d_x is subnormal, may see its d_x rounded
     * twice on the device: the bound then holds with d_x one subnormal ulp
     * larger.) Without them the GPU computes the EXACT result, which also
     * meets this bound. */
    MF_PREC_INT8 = 1,
    MF_PREC_COUNT_
} mf_precision;

typedef struct mf_qmv_desc {
    mf_impl impl;
    mf_precision prec;
    mf_act act;        /* applied after the bias */
    const float *bias; /* [N] or NULL */
} mf_qmv_desc;

/* y [M, N] = act(x [M, K] * w^T + bias), w an [1, N, K] tensor of any type.
 * M is 1..65536. M <= 32 (decode) streams the weights once for all M rows:
 * each weight byte is read from memory once and dequantized in registers;
 * rows are split across the context's threads from 24 KiB of weights.
 * M > 32 dequantizes w to f32 in chunks of rows (8 MiB at a time) and calls
 * OpenBLAS sgemm (the prec field is then ignored: the result is the EXACT
 * one). MF_IMPL_REF computes every M with its sequential dot products (the
 * oracle). MF_IMPL_UNFUSED dequantizes the whole matrix, runs one sgemv per
 * row of x, then a bias pass and an activation pass; it ignores prec.
 * Tolerance (EXACT), before the activation: |y - ref| <= 2^-22 * K *
 * (sum_i |w_i x_i| + |bias|) — the sum order differs. With an activation:
 * 1.13 times that (the steepest slope of SiLU/GELU) plus the activation's
 * 8 ulp + 1e-30. NaN/Inf in x or w propagate as IEEE arithmetic (EXACT).
 * MF_IMPL_GPU: w is resident on the device (weights.h); per call x and the
 * bias go up and y comes back; every M streams the weights from memory
 * once per 32 rows of x; EXACT math with the tolerance above, or INT8
 * (M <= 32, quantized w, mf_gpu_info.int8_dot) with INT8's bound. (Ggml d scales are factored out of each block's sum, which rounds
 * within the same bound since d (q - 8) is exact in f32; with an infinite
 * d a block whose codes are all 8 gives NaN as the reference does, one
 * with other codes may give Inf where the reference gives NaN.)
 * Errors: the common ones; w->e != 1; y overlapping x, bias, or the rows,
 * scales or biases of w; tensor errors as mf_tensor_check reports them;
 * MF_ERR_OUT_OF_MEMORY for the M > 32 row chunk, the UNFUSED f32 matrix,
 * or INT8 activation blocks over 16 KiB. */
mf_status mf_qmv(mf_ctx *ctx, const mf_qmv_desc *d, const mf_tensor *w,
                 const float *x, int64_t M, float *y);

/* ------------------------------------------------------------- moe ops -- */

typedef struct mf_moe_gate_up_desc {
    mf_impl impl;
    mf_precision prec;
    mf_glu_kind glu;
    float limit, alpha;     /* for MF_GLU_SWIGLU_OAI, as in mf_glu_desc */
    /* SEPARATE: w_gate and w_up both [E, F, H].
     * CONCAT: w_gate [E, 2F, H] whose first F rows are gate rows, next F up
     * rows; w_up NULL. INTERLEAVED: w_gate [E, 2F, H], rows alternate gate,
     * up (GPT-OSS); w_up NULL. */
    mf_glu_layout layout;
    const mf_tensor *w_gate;
    const mf_tensor *w_up;
    /* Expert biases or NULL: SEPARATE: b_gate, b_up [E, F]; otherwise b_gate
     * [E, 2F] in the same layout as the rows and b_up NULL. */
    const float *b_gate;
    const float *b_up;
} mf_moe_gate_up_desc;

/* For each token t and slot j with e = idx[t, j]:
 *   h[t, j, :] = glu(Wg[e] x[t] + bg[e], Wu[e] x[t] + bu[e])
 * x [T, H] f32, idx [T, k] int32, h [T, k, F] f32. Tokens routed to the same
 * expert share one pass over its weights. Every idx entry must lie in
 * [0, E); an expert may occur in several slots of one token (each slot is
 * computed on its own). w_up (SEPARATE) has w_gate's type, E, F and H; each
 * MLX tensor keeps its own group size and scale type. limit and alpha are
 * read for SWIGLU_OAI only: limit finite and >= 0 (0 = 7.0), alpha finite
 * (0 = 1.702). h must not overlap any input.
 * MF_IMPL_GPU: the weights and b_gate / b_up are resident on the device
 * (weights.h); per call x and idx go up and h comes back; EXACT math, or
 * INT8 for quantized weights where mf_gpu_info.int8_dot (else EXACT); the
 * tolerance below.
 * INT8 quantizes each x row once per call; float weight types (F32, F16,
 * BF16) ignore prec and give the EXACT result. MF_IMPL_UNFUSED always gives
 * the EXACT result.
 * Scratch: up to 48 KiB on the caller's stack, enough for one-token decode
 * of the common models; above that one allocation per call.
 * Tolerance, per output: the gate and up values g, u each within qmv's bound
 * for their row (EXACT: 2^-22 * H * sum_i |w_i x_i|; INT8 adds sum over
 * blocks of |w|_1 * d_x / 2) plus half an ulp for the bias add, e_g and e_u;
 * then |h - ref| <= 1.25 e_g (|u| + 1 + e_u) + |act(g)| e_u plus glu's
 * tolerance (1.25 bounds the slope of every activation).
 * Errors: the common ones; w_up missing, of another type or shape
 * (SEPARATE), or given with CONCAT/INTERLEAVED (also b_up); an odd row count
 * for CONCAT/INTERLEAVED; k > E. */
mf_status mf_moe_gate_up(mf_ctx *ctx, const mf_moe_gate_up_desc *d, int64_t T,
                         int32_t k, const float *x, const int32_t *idx,
                         float *h);

typedef struct mf_moe_down_desc {
    mf_impl impl;
    mf_precision prec;
    const mf_tensor *w_down; /* [E, H, F] */
    const float *b_down;     /* [E, H] or NULL */
} mf_moe_down_desc;

/* y[t, :] = sum_j w[t, j] * (Wd[idx[t, j]] h[t, j] + bd[idx[t, j]])
 *           (+ residual[t, :] if not NULL)
 * h [T, k, F], idx [T, k], w [T, k], residual [T, H] or NULL, y [T, H].
 * idx as in mf_moe_gate_up. The weighted sum runs in slot order
 * j = 0..k-1 with every product and sum rounded to f32 and no fused
 * multiply-add, mf_combine's exact sequence: given the same expert outputs
 * v_j, the result is bit-identical to mf_combine with exact = 1.
 * y may be the same pointer as residual but must not otherwise overlap an
 * input. INT8 quantizes each h row once per call; float weight types and
 * MF_IMPL_UNFUSED give the EXACT result. Scratch as in mf_moe_gate_up
 * (per-thread result blocks of T * k rows count too).
 * MF_IMPL_GPU: the weights and b_down are resident on the device
 * (weights.h); the down projections and the combine (in the order above)
 * run in one dispatch; EXACT math, or INT8 for quantized weights where
 * mf_gpu_info.int8_dot (else EXACT); the tolerance below.
 * Tolerance, per output: sum_j |w_j| e_j + (k + 1) * 2^-24 *
 * (sum_j |w_j v_j| + |residual|), e_j being qmv's bound for slot j's row
 * (INT8 with h's block scales) plus half an ulp for the bias add.
 * Errors: the common ones; k > E; y overlapping an input other than being
 * residual itself. */
mf_status mf_moe_down_combine(mf_ctx *ctx, const mf_moe_down_desc *d,
                              int64_t T, int32_t k, const float *h,
                              const int32_t *idx, const float *w,
                              const float *residual, float *y);

#ifdef __cplusplus
}
#endif
#endif
