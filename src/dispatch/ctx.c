/* Context lifetime: kernel set choice, thread pool, optional GPU. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "internal.h"

mf_ctx_options mf_ctx_options_default(void)
{
    return (mf_ctx_options){.threads = 0, .isa = MF_ISA_AUTO, .pin_threads = 1,
                            .gpu = MF_GPU_AUTO, .gpu_index = -1};
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static mf_status pick_isa(const mf_ctx_options *o, const mf_cpu_info *ci,
                          mf_isa *out)
{
    mf_isa isa = o->isa;
    if (isa == MF_ISA_AUTO) {
        const char *env = getenv("MOEFUSE_ISA");
        if (env && *env) {
            if (mf_isa_parse(env, &isa) != MF_OK)
                return MF_ERR_INVALID_ARG;
        }
    }
    if (isa == MF_ISA_AUTO)
        isa = ci->isa_best;
    if (!ci->isa_available[isa] || !mf_kernels_get(isa))
        return MF_ERR_UNSUPPORTED;
    *out = isa;
    return MF_OK;
}

mf_status mf_ctx_create(const mf_ctx_options *opts, mf_ctx **out)
{
    mf_ctx_options o = opts ? *opts : mf_ctx_options_default();
    if (!out || o.threads < 0 || o.threads > 1024 ||
        (unsigned)o.isa >= MF_ISA_COUNT_ ||
        (unsigned)o.gpu > MF_GPU_REQUIRED || o.gpu_index < -1)
        return MF_ERR_INVALID_ARG;
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    mf_isa isa;
    mf_status st = pick_isa(&o, &ci, &isa);
    if (st != MF_OK)
        return st;

    mf_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return MF_ERR_OUT_OF_MEMORY;
    c->isa = isa;
    c->kern = mf_kernels_get(isa);
    c->threads = o.threads ? o.threads : ci.physical_cores;
    if (c->threads < 1)
        c->threads = 1;
    if (o.cache_path) {
        c->cache_path = dup_str(o.cache_path);
        if (!c->cache_path) {
            mf_ctx_destroy(c);
            return MF_ERR_OUT_OF_MEMORY;
        }
    } else {
        c->cache_path = mf_placement_default_path(); /* NULL: none */
    }
    /* the GPU keeps its pipeline cache beside the placement cache */
    o.cache_path = c->cache_path;
    if (c->threads > 1) {
        st = mf_pool_create(c->threads, o.pin_threads, &c->pool);
        if (st != MF_OK) {
            mf_ctx_destroy(c);
            return st;
        }
    }
    if (o.gpu == MF_GPU_DISABLED) {
        c->gpu_status = MF_ERR_UNSUPPORTED;
    } else {
        c->gpu_status = mf_gpu_create(&o, &c->gpu);
        if (c->gpu_status != MF_OK) {
            c->gpu = NULL;
            if (o.gpu == MF_GPU_REQUIRED) {
                mf_ctx_destroy(c);
                return MF_ERR_DEVICE;
            }
        }
    }
    mf_ctx_cache_attach(c);
    *out = c;
    return MF_OK;
}

void mf_ctx_destroy(mf_ctx *ctx)
{
    if (!ctx)
        return;
    mf_ctx_cache_detach(ctx);
    mf_gpu_destroy(ctx->gpu);
    mf_pool_destroy(ctx->pool);
    free(ctx->cache_path);
    free(ctx);
}

mf_isa mf_ctx_isa(const mf_ctx *ctx) { return ctx ? ctx->isa : MF_ISA_SCALAR; }
int mf_ctx_threads(const mf_ctx *ctx) { return ctx ? ctx->threads : 1; }
mf_status mf_ctx_gpu_status(const mf_ctx *ctx)
{
    if (ctx && ctx->gpu && !mf_gpu_usable(ctx->gpu))
        return MF_ERR_DEVICE_LOST;
    return ctx ? ctx->gpu_status : MF_ERR_INVALID_ARG;
}
