/* mf_glu on the device (shaders/glu.comp): two output elements per
 * invocation step; f32/f16/bf16 in and out in any combination, every kind
 * and layout (specialization constants). */
#include <string.h>

#include "gpu_internal.h"
#include "shaders.h"

typedef struct glu_key {
    int64_t T, n;
    int32_t kind, layout, in_type, out_type;
    uint32_t limit_bits, alpha_bits;
} glu_key;

typedef struct glu_push {
    uint32_t T, n, up_off;
    float limit, alpha;
} glu_push;

static size_t type_bytes(mf_type t) { return t == MF_TYPE_F32 ? 4 : 2; }

static size_t round4(size_t b) { return (b + 3) & ~(size_t)3; }

static mf_status build(mf_gpu *g, mf_vk_plan *pl, const mf_glu_desc *d,
                       const glu_push *pc, size_t in_bytes, size_t out_bytes)
{
    mf_vk *vk = &g->vk;
    uint32_t wg = vk->max_wg_size < 256 ? vk->max_wg_size : 256;
    mf_vk_pipe_desc pd = {
        .shader = &mf_shader_glu,
        .n_bindings = 2,
        .push_bytes = sizeof *pc,
        .n_spec = 5,
        .spec = {wg, (uint32_t)d->kind, (uint32_t)d->layout,
                 (uint32_t)d->in_type, (uint32_t)d->out_type},
    };
    const mf_vk_pipe *pipe;
    mf_status st = mf_vk_pipe_get(vk, &pd, &pipe);
    if (st != MF_OK)
        return st;
    int in = mf_vk_plan_io(vk, pl, in_bytes, MF_VK_IN, &st);
    if (in < 0)
        return st;
    int out = mf_vk_plan_io(vk, pl, out_bytes, MF_VK_OUT, &st);
    if (out < 0)
        return st;
    st = mf_vk_prog_init(vk, &pl->prog, 1);
    if (st == MF_OK)
        st = mf_vk_prog_begin(vk, &pl->prog);
    if (st != MF_OK)
        return st;
    mf_vk_bind b[2] = {{.buf = &pl->io[in].dev}, {.buf = &pl->io[out].dev}};
    /* one output word per invocation (glu.comp) */
    uint64_t items = (uint64_t)pc->T * pc->n;
    if (d->out_type != MF_TYPE_F32)
        items = (items + 1) / 2;
    uint64_t groups = (items + wg - 1) / wg;
    if (groups > vk->max_groups_x)
        groups = vk->max_groups_x;
    mf_vk_cmd_upload(vk, &pl->prog, &pl->io[in]);
    mf_vk_cmd_dispatch(vk, &pl->prog, pipe, b, pc, (uint32_t)groups, 1, 1);
    mf_vk_cmd_download(vk, &pl->prog, &pl->io[out]);
    st = mf_vk_prog_end(vk, &pl->prog);
    if (st == MF_OK)
        pl->ready = 1;
    return st;
}

mf_status mf_gpu_glu(mf_gpu *g, const mf_glu_desc *d, int64_t T, int64_t n,
                     const void *gate, const void *up, void *out)
{
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    const size_t ib = type_bytes(d->in_type), ob = type_bytes(d->out_type);
    const uint64_t ne = (uint64_t)T * (uint64_t)n; /* outputs */
    const int sep = d->layout == MF_GLU_SEPARATE;
    /* SEPARATE: up starts at a 4-byte boundary after gate. */
    const uint64_t up_off = sep ? (ne * ib + 3) / 4 * 4 / ib : 0;
    const uint64_t in_bytes = sep ? (up_off + ne) * ib : 2 * ne * ib;
    const uint64_t out_bytes = ne * ob;
    if (round4(in_bytes) > vk->max_binding || round4(out_bytes) > vk->max_binding)
        return MF_ERR_DEVICE_OOM;
    glu_push pc = {.T = (uint32_t)T, .n = (uint32_t)n,
                   .up_off = (uint32_t)up_off,
                   .limit = d->limit != 0.0f ? d->limit : 7.0f,
                   .alpha = d->alpha != 0.0f ? d->alpha : 1.702f};
    glu_key key;
    memset(&key, 0, sizeof key);
    key.T = T;
    key.n = n;
    key.kind = (int32_t)d->kind;
    key.layout = (int32_t)d->layout;
    key.in_type = (int32_t)d->in_type;
    key.out_type = (int32_t)d->out_type;
    memcpy(&key.limit_bits, &pc.limit, 4);
    memcpy(&key.alpha_bits, &pc.alpha, 4);
    mf_vk_plans *c = &g->plans[MF_GPU_OP_GLU];
    mf_vk_plan *pl = mf_vk_plans_get(vk, c, &key, sizeof key);
    if (!pl->ready) {
        st = build(g, pl, d, &pc, round4((size_t)in_bytes),
                   round4((size_t)out_bytes));
        if (st != MF_OK) {
            mf_vk_plans_drop(vk, c, pl);
            return st;
        }
    }
    unsigned char *in = pl->io[0].map;
    if (sep) {
        memcpy(in, gate, (size_t)(ne * ib));
        memcpy(in + up_off * ib, up, (size_t)(ne * ib));
    } else {
        memcpy(in, gate, (size_t)(2 * ne * ib));
    }
    st = mf_vk_plan_run(vk, c, pl);
    if (st != MF_OK)
        return st;
    memcpy(out, pl->io[1].map, (size_t)out_bytes);
    mf_vk_plans_trim(vk, c, pl);
    return MF_OK;
}
