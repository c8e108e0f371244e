/* Benchmark helpers: empty-dispatch round trip, device copy, replay of an
 * op's last recorded plan. */
#include "gpu_internal.h"
#include "shaders.h"

static mf_status timed_run(mf_vk *vk, mf_vk_prog *p, mf_gpu_timing *t)
{
    int64_t t0 = mf_vk_now_ns();
    mf_status st = mf_vk_prog_run(vk, p);
    int64_t t1 = mf_vk_now_ns();
    if (st != MF_OK)
        return st;
    double gns = mf_vk_prog_gpu_ns(vk, p);
    t->host_us = (double)(t1 - t0) / 1000.0;
    t->gpu_us = gns < 0 ? -1.0 : gns / 1000.0;
    return MF_OK;
}

mf_status mf_gpu_bench_empty(mf_gpu *g, mf_gpu_timing *t)
{
    if (!g || !t)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    if (!g->empty.recorded) {
        const mf_vk_pipe *pipe;
        mf_vk_pipe_desc pd = {.shader = &mf_shader_empty};
        st = mf_vk_pipe_get(vk, &pd, &pipe);
        if (st == MF_OK && !g->empty.cb)
            st = mf_vk_prog_init(vk, &g->empty, 1);
        if (st == MF_OK)
            st = mf_vk_prog_begin(vk, &g->empty);
        if (st == MF_OK) {
            mf_vk_cmd_dispatch(vk, &g->empty, pipe, NULL, NULL, 1, 1, 1);
            st = mf_vk_prog_end(vk, &g->empty);
        }
        if (st != MF_OK)
            return st;
    }
    return timed_run(vk, &g->empty, t);
}

mf_status mf_gpu_bench_steps(mf_gpu *g, mf_gpu_timing *t)
{
    if (!g || !t)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    if (!g->steps.recorded) {
        const mf_vk_pipe *pipe;
        mf_vk_pipe_desc pd = {.shader = &mf_shader_empty};
        st = mf_vk_pipe_get(vk, &pd, &pipe);
        if (st == MF_OK && !g->steps.cb)
            st = mf_vk_prog_init(vk, &g->steps, MF_GPU_BENCH_STEPS);
        if (st == MF_OK)
            st = mf_vk_prog_begin(vk, &g->steps);
        if (st == MF_OK) {
            for (int i = 0; i < MF_GPU_BENCH_STEPS; i++) {
                if (i)
                    mf_vk_cmd_barrier(&g->steps);
                mf_vk_cmd_dispatch(vk, &g->steps, pipe, NULL, NULL, 1, 1, 1);
            }
            st = mf_vk_prog_end(vk, &g->steps);
        }
        if (st != MF_OK)
            return st;
    }
    return timed_run(vk, &g->steps, t);
}

/* Records one floor program over the current copy buffers. */
static mf_status record_copy(mf_gpu *g, mf_gpu_copy_kind kind)
{
    mf_vk *vk = &g->vk;
    mf_vk_prog *p = &g->copy[kind];
    mf_status st = MF_OK;
    const mf_vk_pipe *pipe = NULL;
    if (kind != MF_GPU_COPY_ENGINE)
        st = mf_gpu_copy_pipe(vk, kind == MF_GPU_COPY_READ, &pipe);
    if (st == MF_OK && !p->cb)
        st = mf_vk_prog_init(vk, p, kind == MF_GPU_COPY_ENGINE ? 0 : 1);
    if (st == MF_OK)
        st = mf_vk_prog_begin(vk, p);
    if (st != MF_OK)
        return st;
    if (kind == MF_GPU_COPY_ENGINE) {
        mf_vk_cmd_copy(p, &g->copy_src, &g->copy_dst, g->copy_src.size);
    } else {
        mf_vk_bind b[2] = {{&g->copy_src, 0, 0}, {&g->copy_dst, 0, 0}};
        mf_gpu_cmd_copy_words(vk, p, pipe, b, (uint32_t)(g->copy_bytes / 16),
                              0x9e3779b9u);
    }
    return mf_vk_prog_end(vk, p);
}

mf_status mf_gpu_bench_copy(mf_gpu *g, mf_gpu_copy_kind kind, size_t bytes,
                            mf_gpu_timing *t)
{
    if (!g || !t || bytes < 16 || (unsigned)kind >= MF_GPU_COPY_KINDS_ ||
        bytes / 16 > UINT32_MAX)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk *vk = &g->vk;
    bytes &= ~(size_t)15;
    if (bytes > vk->max_binding && kind != MF_GPU_COPY_ENGINE)
        return MF_ERR_UNSUPPORTED;
    if (g->copy_bytes != bytes) {
        for (int i = 0; i < MF_GPU_COPY_KINDS_; i++)
            mf_vk_prog_free(vk, &g->copy[i]);
        mf_vk_buf_destroy(vk, &g->copy_src);
        mf_vk_buf_destroy(vk, &g->copy_dst);
        g->copy_bytes = 0;
        st = mf_vk_buf_create(vk, bytes, MF_VK_MEM_DEVICE, &g->copy_src);
        if (st == MF_OK)
            st = mf_vk_buf_create(vk, bytes, MF_VK_MEM_DEVICE, &g->copy_dst);
        if (st != MF_OK) {
            mf_vk_buf_destroy(vk, &g->copy_src);
            mf_vk_buf_destroy(vk, &g->copy_dst);
            return st;
        }
        g->copy_bytes = bytes;
    }
    if (!g->copy[kind].recorded) {
        st = record_copy(g, kind);
        if (st != MF_OK) {
            mf_vk_prog_free(vk, &g->copy[kind]);
            return st;
        }
    }
    return timed_run(vk, &g->copy[kind], t);
}

mf_status mf_gpu_bench_replay(mf_gpu *g, mf_gpu_op op, mf_gpu_timing *t)
{
    if (!g || !t || (unsigned)op >= MF_GPU_OP_COUNT_)
        return MF_ERR_INVALID_ARG;
    mf_status st = mf_gpu_ready(g);
    if (st != MF_OK)
        return st;
    mf_vk_plan *pl = g->plans[op].last;
    if (!pl || !pl->ready)
        return MF_ERR_INVALID_ARG;
    return timed_run(&g->vk, &pl->prog, t);
}
