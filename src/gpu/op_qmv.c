/* mf_qmv on the device (shaders/qmv.comp) with the weights resident. Per
 * call only x (and the bias) go up and y comes back. Any M: chunks of up to
 * 32 activation rows, each streaming the weights once. MF_PREC_INT8 with
 * quantized weights and M <= 32 runs the INT8 shader where the device has
 * integer dot products (mf_qint8), else the EXACT one (ops.h). */
#include <string.h>

#include "quant.h"
#include "shaders.h"

typedef struct qmv_key {
    uint32_t wid[4];
    int64_t M;
    int32_t act, has_bias, int8;
    uint64_t pipe; /* the pipeline (its tuning and form) */
} qmv_key;

typedef struct qmv_push {
    uint32_t N, M, nb, soff, boff, gpr, xs, ys, y_off, b_off, act, has_bias;
} qmv_push;

/* Activation rows per pass of the shader (a chunk of 32 rows is one or
 * more passes over the same cached weights): the next power of two >= M,
 * at most 8 (more accumulators per invocation cost registers, and shader
 * compile time grows steeply with them). */
uint32_t mf_qmv_rows_per_pass(int64_t M)
{
    uint32_t mb = 1;
    while (mb < 8 && mb < M)
        mb <<= 1;
    return mb;
}

mf_status mf_gpu_qmv_pipe(mf_vk *vk, const mf_tensor *w, uint32_t mb,
                          int int8, const mf_vk_pipe **pipe, uint32_t *wg_out,
                          uint32_t *rows_out)
{
    mf_wlayout l;
    if (!mf_wlayout_of(w, &l))
        return MF_ERR_DEVICE_OOM;
    uint32_t wg = mf_qwg(vk), tpr = mf_qlanes(vk, l.nb);
    /* rows per lane group with one activation row per pass */
    uint32_t rpw = mb == 1 ? mf_qrpw((uint64_t)w->n, wg / tpr, 1) : 1;
    const int sg = mf_quse_subgroup(vk);
    const size_t red = sg ? 0 : (size_t)wg * mb * rpw * 4;
    if (red > vk->shared_bytes)
        return MF_ERR_UNSUPPORTED;
    uint32_t kb = int8 ? mf_qkb(vk, l.nb, mb, red) : 0;
    /* EXACT, one row a pass: the row staged where the form qmv_xstage
     * (measured, or MOEFUSE_GPU_XSTAGE=1) says so; not by default */
    uint32_t xkb = 0;
    if (!kb && mb == 1 && mf_gpu_form(vk, MF_GPU_FORM_QMV_XSTAGE) == 1)
        xkb = mf_qxkb(vk, l.nb, 1, tpr, red);
    mf_vk_pipe_desc pd = {
        .shader = kb ? (sg ? &mf_shader_qmv_i8_sg : &mf_shader_qmv_i8_sh)
                     : (sg ? &mf_shader_qmv_sg : &mf_shader_qmv_sh),
        .n_bindings = 4,
        .push_bytes = sizeof(qmv_push),
        .n_spec = 6,
        .spec = {wg, tpr, mb, mf_wfmt(w), rpw, kb ? kb : xkb},
    };
    *wg_out = wg;
    *rows_out = wg / tpr * rpw;
    return mf_vk_pipe_get(vk, &pd, pipe);
}

void mf_gpu_qmv_record(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                       const mf_wres *res, uint32_t rows_per_wg, int64_t M,
                       mf_act act, const mf_vk_bind *x, const mf_vk_bind *y,
                       uint32_t y_off, uint32_t ys, const mf_vk_bind *bias,
                       uint32_t b_off)
{
    const mf_wkey *k = &res->key;
    uint32_t gpr = k->group_size ? (uint32_t)(k->k / k->group_size) : 0;
    /* a dispatch per part (rows [r0, r0 + rows) of a split tensor, as a
     * matrix of its own writing its columns of y) */
    for (uint32_t i = 0; i < res->nparts; i++) {
        const mf_wpart *wp = &res->part[i];
        qmv_push pc = {.N = (uint32_t)wp->rows, .M = (uint32_t)M,
                       .nb = res->lay.nb,
                       .soff = (uint32_t)(wp->lay.soff / 4),
                       .boff = (uint32_t)(wp->lay.boff / 4), .gpr = gpr,
                       .xs = res->lay.nb * 8, .ys = ys,
                       .y_off = y_off + (uint32_t)wp->r0,
                       .b_off = b_off + (uint32_t)wp->r0,
                       .act = (uint32_t)act, .has_bias = bias != NULL};
        mf_vk_bind b[4] = {{.buf = &wp->buf}, *x, *y, bias ? *bias : *x};
        uint64_t gx = (wp->rows + rows_per_wg - 1) / rows_per_wg;
        uint64_t gy = ((uint64_t)M + 31) / 32;
        if (gx > vk->max_groups_x)
            gx = vk->max_groups_x;
        if (gy > 65535)
            gy = 65535;
        mf_vk_cmd_dispatch(vk, p, pipe, b, &pc, (uint32_t)gx, (uint32_t)gy,
                           1);
    }
}

mf_status mf_gpu_qmv(mf_gpu *g, const mf_qmv_desc *d, const mf_tensor *w,
                     const float *x, int64_t M, float *y)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    mf_wcache_begin(g);
    const mf_wres *res;
    st = mf_wcache_get(g, w, &res);
    if (st != MF_OK)
        return st;
    const int64_t N = w->n, K = w->k, K32 = (int64_t)res->lay.nb * 32;
    const uint64_t xb = (uint64_t)M * (uint64_t)K32 * 4;
    const uint64_t bias_at = mf_qalign((size_t)xb);
    const uint64_t in_bytes = d->bias ? bias_at + (uint64_t)N * 4 : xb;
    const uint64_t out_bytes = (uint64_t)M * (uint64_t)N * 4;
    if (in_bytes > vk->max_binding || out_bytes > vk->max_binding ||
        in_bytes > SIZE_MAX)
        return MF_ERR_DEVICE_OOM;

    qmv_key key;
    memset(&key, 0, sizeof key);
    key.wid[0] = res->id;
    key.M = M;
    key.act = (int32_t)d->act;
    key.has_bias = d->bias != NULL;
    key.int8 = M <= 32 && mf_qint8(vk, d->prec, &w, 1);
    const mf_vk_pipe *pipe;
    uint32_t wg, rows;
    st = mf_gpu_qmv_pipe(vk, w, mf_qmv_rows_per_pass(M), key.int8, &pipe,
                         &wg, &rows);
    if (st != MF_OK)
        return st;
    key.pipe = (uint64_t)(uintptr_t)pipe;
    mf_vk_plans *c = &g->plans[MF_GPU_OP_QMV];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        int in = -1, out = -1;
        if (st == MF_OK)
            in = mf_vk_plan_io(vk, pl, (size_t)in_bytes, MF_VK_IN, &st);
        if (in >= 0)
            out = mf_vk_plan_io(vk, pl, (size_t)out_bytes, MF_VK_OUT, &st);
        if (out >= 0)
            st = mf_vk_prog_init(vk, &pl->prog, res->nparts);
        if (out >= 0 && st == MF_OK)
            st = mf_vk_prog_begin(vk, &pl->prog);
        if (out >= 0 && st == MF_OK) {
            /* zero row padding of x stays zero: only K floats per row are
             * written per call */
            memset(pl->io[in].map, 0, (size_t)in_bytes);
            mf_vk_bind xbnd = {.buf = &pl->io[in].dev, .range = xb};
            mf_vk_bind ybnd = {.buf = &pl->io[out].dev};
            mf_vk_bind bbnd = {.buf = &pl->io[in].dev, .offset = bias_at};
            mf_vk_cmd_upload(vk, &pl->prog, &pl->io[in]);
            mf_gpu_qmv_record(vk, &pl->prog, pipe, res, rows, M, d->act,
                              &xbnd, &ybnd, 0, (uint32_t)N,
                              d->bias ? &bbnd : NULL, 0);
            mf_vk_cmd_download(vk, &pl->prog, &pl->io[out]);
            st = mf_vk_prog_end(vk, &pl->prog);
        }
        if (st != MF_OK) {
            mf_vk_plans_drop(vk, c, pl);
            return st;
        }
        pl->ready = 1;
    }
    float *in = pl->io[0].map;
    if (K == K32) {
        memcpy(in, x, (size_t)(M * K) * 4);
    } else {
        for (int64_t m = 0; m < M; m++)
            memcpy(in + m * K32, x + m * K, (size_t)K * 4);
    }
    if (d->bias)
        memcpy((unsigned char *)pl->io[0].map + bias_at, d->bias,
               (size_t)N * 4);
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    memcpy(y, pl->io[1].map, (size_t)out_bytes);
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}
