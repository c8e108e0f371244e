/* Profiler op instances: random inputs and weights for one grid variant,
 * and one call of it through the public API with the implementation forced
 * (see profile.h). Weights hold valid finite values (random codes, fixed
 * scales); their numbers do not matter to the timing, their bytes do. */
#include <stdlib.h>
#include <string.h>

#include "profile.h"

#define MAX_COPIES 64

typedef struct wset {
    int n;
    mf_tensor t[MAX_COPIES];
    void *mem[MAX_COPIES];
} wset;

struct mf_prof_inst {
    mf_prof_variant v;
    int64_t xmax;
    wset w1, w2; /* the op's weights (gate for SEPARATE gate_up), up */
    int rot;
    void *in1, *in2, *res, *out; /* activations and outputs */
    float *wts;                  /* gating weights / combine weights */
    int32_t *idx;
    float *bias;
    uint64_t rng;
};

static uint64_t next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void fill_bytes(uint64_t *s, void *p, size_t n)
{
    unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t r = next(s);
        memcpy(b + i, &r, 8);
    }
    for (; i < n; i++)
        b[i] = (unsigned char)next(s);
}

/* Random finite values of a float type in [-1, 1). */
static void fill_float(uint64_t *s, mf_type t, void *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float f = (float)(int32_t)(uint32_t)next(s) * (1.0f / 2147483648.0f);
        if (t == MF_TYPE_F32) {
            memcpy((char *)p + 4 * i, &f, 4);
        } else {
            uint16_t h = t == MF_TYPE_F16 ? mf_f32_to_f16(f) : mf_f32_to_bf16(f);
            memcpy((char *)p + 2 * i, &h, 2);
        }
    }
}

static size_t type_size(mf_type t) { return t == MF_TYPE_F32 ? 4 : 2; }

static void wset_free(wset *w)
{
    for (int i = 0; i < w->n; i++)
        free(w->mem[i]);
    w->n = 0;
}

/* `copies` copies of an [e, n, k] weight tensor of type t. */
static mf_status wset_make(wset *w, uint64_t *s, mf_type t, int64_t e,
                           int64_t n, int64_t k, int copies)
{
    size_t rows = (size_t)(e * n), rb = mf_tensor_row_bytes(t, k);
    if (!rb)
        return MF_ERR_INVALID_ARG;
    int mlx = t == MF_TYPE_MLX_Q4 || t == MF_TYPE_MLX_Q8;
    size_t groups = mlx ? rows * (size_t)(k / 64) : 0;
    size_t bytes = rows * rb + 2 * groups * 2;
    uint16_t d = mf_f32_to_f16(0.0123f), bias = mf_f32_to_f16(-0.08f);
    for (w->n = 0; w->n < copies; w->n++) {
        unsigned char *m = malloc(bytes);
        if (!m) {
            wset_free(w);
            return MF_ERR_OUT_OF_MEMORY;
        }
        w->mem[w->n] = m;
        if (t == MF_TYPE_F32 || t == MF_TYPE_F16 || t == MF_TYPE_BF16)
            fill_float(s, t, m, rows * (size_t)k);
        else
            fill_bytes(s, m, rows * rb);
        if (t == MF_TYPE_Q4_0 || t == MF_TYPE_Q8_0) {
            size_t blk = t == MF_TYPE_Q4_0 ? 18 : 34;
            for (size_t b = 0; b < rows * rb; b += blk)
                memcpy(m + b, &d, 2);
        }
        if (mlx) {
            unsigned char *sc = m + rows * rb, *bi = sc + groups * 2;
            for (size_t g = 0; g < groups; g++) {
                memcpy(sc + 2 * g, &d, 2);
                memcpy(bi + 2 * g, &bias, 2);
            }
            w->t[w->n] = mf_tensor_mlx(t, e, n, k, 64, MF_TYPE_F16, m, sc, bi);
        } else {
            w->t[w->n] = mf_tensor_dense(t, e, n, k, m);
        }
    }
    return MF_OK;
}

static int copies_for(size_t bytes, size_t cold)
{
    if (!bytes || bytes >= cold)
        return 1;
    size_t c = (cold + bytes - 1) / bytes;
    return c > MAX_COPIES ? MAX_COPIES : (int)c;
}

static void *alloc_f(uint64_t *s, mf_type t, size_t n)
{
    void *p = malloc(n * type_size(t) + 64);
    if (p)
        fill_float(s, t, p, n);
    return p;
}

/* T rows of k distinct experts of E, uniformly random. */
static int32_t *make_idx(uint64_t *s, int64_t T, int64_t k, int64_t E)
{
    int32_t *idx = malloc((size_t)(T * k) * sizeof *idx);
    if (!idx)
        return NULL;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < k; j++) {
            int32_t e;
            int dup;
            do {
                e = (int32_t)(next(s) % (uint64_t)E);
                dup = 0;
                for (int64_t i = 0; i < j; i++)
                    dup |= idx[t * k + i] == e;
            } while (dup);
            idx[t * k + j] = e;
        }
    }
    return idx;
}

mf_status mf_prof_inst_create(const mf_prof_variant *v, int64_t xmax,
                              size_t cold_bytes, mf_prof_inst **out)
{
    mf_prof_inst *in = calloc(1, sizeof *in);
    if (!in)
        return MF_ERR_OUT_OF_MEMORY;
    in->v = *v;
    in->xmax = xmax;
    in->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)v->op * 977 ^
              (uint64_t)(v->base.N * 31 + v->base.K);
    uint64_t *s = &in->rng;
    const mf_op_shape *b = &v->base;
    int64_t T = xmax, E = b->E, k = b->k, N = b->N, K = b->K;
    mf_status st = MF_OK;
    int ok = 1;
    switch (v->op) {
    case MF_OP_GATING:
        ok = (in->in1 = alloc_f(s, MF_TYPE_F32, (size_t)(T * E))) &&
             (in->bias = alloc_f(s, MF_TYPE_F32, (size_t)E)) &&
             (in->idx = malloc((size_t)(T * k) * 4)) &&
             (in->wts = malloc((size_t)(T * k) * 4));
        break;
    case MF_OP_COMBINE:
        ok = (in->in1 = alloc_f(s, MF_TYPE_F32, (size_t)(T * k * N))) &&
             (in->wts = alloc_f(s, MF_TYPE_F32, (size_t)(T * k))) &&
             (in->res = alloc_f(s, MF_TYPE_F32, (size_t)(T * N))) &&
             (in->out = malloc((size_t)(T * N) * 4));
        break;
    case MF_OP_GLU:
        ok = (in->in1 = alloc_f(s, b->wtype, (size_t)(T * N))) &&
             (in->in2 = alloc_f(s, b->wtype, (size_t)(T * N))) &&
             (in->out = malloc((size_t)(T * N) * 4));
        break;
    case MF_OP_DEQUANT: {
        size_t wb = mf_tensor_row_bytes(b->wtype, K) * (size_t)(T * N);
        st = wset_make(&in->w1, s, b->wtype, T, N, K,
                       copies_for(wb, cold_bytes));
        ok = st == MF_OK && (in->out = malloc((size_t)(T * N * K) * 4));
        break;
    }
    case MF_OP_QMV: {
        size_t wb = mf_tensor_row_bytes(b->wtype, K) * (size_t)N;
        st = wset_make(&in->w1, s, b->wtype, 1, N, K,
                       copies_for(wb, cold_bytes));
        ok = st == MF_OK &&
             (in->in1 = alloc_f(s, MF_TYPE_F32, (size_t)(T * K))) &&
             (in->out = malloc((size_t)(T * N) * 4));
        break;
    }
    case MF_OP_MOE_GATE_UP: {
        int inter = b->mode == MF_GLU_SWIGLU_OAI;
        size_t wb = mf_tensor_row_bytes(b->wtype, K) * (size_t)(E * N) * 2;
        int c = copies_for(wb, cold_bytes);
        st = wset_make(&in->w1, s, b->wtype, E, inter ? 2 * N : N, K, c);
        if (st == MF_OK && !inter)
            st = wset_make(&in->w2, s, b->wtype, E, N, K, c);
        ok = st == MF_OK &&
             (in->in1 = alloc_f(s, MF_TYPE_F32, (size_t)(T * K))) &&
             (in->idx = make_idx(s, T, k, E)) &&
             (in->out = malloc((size_t)(T * k * N) * 4));
        break;
    }
    case MF_OP_MOE_DOWN: {
        size_t wb = mf_tensor_row_bytes(b->wtype, K) * (size_t)(E * N);
        st = wset_make(&in->w1, s, b->wtype, E, N, K,
                       copies_for(wb, cold_bytes));
        ok = st == MF_OK &&
             (in->in1 = alloc_f(s, MF_TYPE_F32, (size_t)(T * k * K))) &&
             (in->idx = make_idx(s, T, k, E)) &&
             (in->wts = alloc_f(s, MF_TYPE_F32, (size_t)(T * k))) &&
             (in->res = alloc_f(s, MF_TYPE_F32, (size_t)(T * N))) &&
             (in->out = malloc((size_t)(T * N) * 4));
        break;
    }
    default:
        st = MF_ERR_INVALID_ARG;
    }
    if (st == MF_OK && !ok)
        st = MF_ERR_OUT_OF_MEMORY;
    if (st != MF_OK) {
        mf_prof_inst_free(in);
        return st;
    }
    *out = in;
    return MF_OK;
}

void mf_prof_inst_free(mf_prof_inst *in)
{
    if (!in)
        return;
    wset_free(&in->w1);
    wset_free(&in->w2);
    free(in->in1);
    free(in->in2);
    free(in->res);
    free(in->out);
    free(in->wts);
    free(in->idx);
    free(in->bias);
    free(in);
}

mf_status mf_prof_inst_run(mf_prof_inst *in, mf_ctx *ctx, int64_t x,
                           mf_impl impl, int rotate)
{
    if (x < 1 || x > in->xmax)
        return MF_ERR_INVALID_ARG;
    const mf_op_shape *b = &in->v.base;
    int r = 0;
    if (rotate && in->w1.n > 1) {
        in->rot = (in->rot + 1) % in->w1.n;
        r = in->rot;
    }
    switch (in->v.op) {
    case MF_OP_GATING: {
        mf_gating_desc d = {.impl = impl, .mode = (mf_gating_mode)b->mode,
                            .n_experts = (int32_t)b->E, .k = (int32_t)b->k,
                            .renormalize = 1};
        if (d.mode == MF_GATING_SIGMOID_GROUPED) {
            d.bias = in->bias;
            d.scale = 2.5f;
            if (b->E % 8 == 0 && b->E / 8 * 4 >= b->k) {
                d.n_group = 8;
                d.topk_group = 4;
            }
        }
        return mf_gating(ctx, &d, in->in1, x, in->idx, in->wts);
    }
    case MF_OP_COMBINE: {
        mf_combine_desc d = {.impl = impl, .exact = b->mode};
        return mf_combine(ctx, &d, x, (int32_t)b->k, b->N, in->in1, in->wts,
                          in->res, in->out);
    }
    case MF_OP_GLU: {
        mf_glu_desc d = {.impl = impl, .kind = (mf_glu_kind)b->mode,
                         .layout = MF_GLU_SEPARATE, .in_type = b->wtype,
                         .out_type = MF_TYPE_F32};
        return mf_glu(ctx, &d, x, b->N, in->in1, in->in2, in->out);
    }
    case MF_OP_DEQUANT: {
        mf_dequant_desc d = {.impl = impl, .act = (mf_act)b->mode,
                             .out_type = MF_TYPE_F32};
        mf_tensor w = in->w1.t[r];
        w.e = x; /* the first x experts */
        return mf_dequant_act(ctx, &d, &w, in->out);
    }
    case MF_OP_QMV: {
        mf_qmv_desc d = {.impl = impl, .prec = (mf_precision)b->mode};
        return mf_qmv(ctx, &d, &in->w1.t[r], in->in1, x, in->out);
    }
    case MF_OP_MOE_GATE_UP: {
        int inter = b->mode == MF_GLU_SWIGLU_OAI;
        mf_moe_gate_up_desc d = {
            .impl = impl, .glu = (mf_glu_kind)b->mode,
            .layout = inter ? MF_GLU_INTERLEAVED : MF_GLU_SEPARATE,
            .w_gate = &in->w1.t[r], .w_up = inter ? NULL : &in->w2.t[r]};
        return mf_moe_gate_up(ctx, &d, x, (int32_t)b->k, in->in1, in->idx,
                              in->out);
    }
    case MF_OP_MOE_DOWN: {
        mf_moe_down_desc d = {.impl = impl, .w_down = &in->w1.t[r]};
        return mf_moe_down_combine(ctx, &d, x, (int32_t)b->k, in->in1,
                                   in->idx, in->wts, in->res, in->out);
    }
    default:
        return MF_ERR_INVALID_ARG;
    }
}
