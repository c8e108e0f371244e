/* The machine fingerprint a placement cache is keyed by: CPU model, arch,
 * feature set, cores, the context's kernel set and threads, its GPU, and
 * the library version. */
#include <stdio.h>
#include <string.h>

#include "cache.h"

static void add_feature(char *buf, size_t cap, int present, const char *name)
{
    if (!present)
        return;
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n ? " " : "", name);
}

mf_status mf_fingerprint_make(const mf_ctx *ctx, mf_fingerprint *fp)
{
    if (!ctx || !fp)
        return MF_ERR_INVALID_ARG;
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    mf_fingerprint f;
    memset(&f, 0, sizeof f);
    snprintf(f.cpu_model, sizeof f.cpu_model, "%s", ci.model);
    snprintf(f.arch, sizeof f.arch, "%s", ci.arch);
    struct {
        int on;
        const char *name;
    } feats[] = {
        {ci.sse42, "sse4.2"},        {ci.avx, "avx"},
        {ci.avx2, "avx2"},           {ci.fma, "fma"},
        {ci.f16c, "f16c"},           {ci.avx512f, "avx512f"},
        {ci.avx512bw, "avx512bw"},   {ci.avx512vl, "avx512vl"},
        {ci.avx512dq, "avx512dq"},   {ci.avx512vnni, "avx512vnni"},
        {ci.avx512bf16, "avx512bf16"}, {ci.avxvnni, "avxvnni"},
        {ci.neon, "neon"},           {ci.asimddp, "asimddp"},
        {ci.asimdhp, "asimdhp"},     {ci.sve, "sve"},
    };
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++)
        add_feature(f.features, sizeof f.features, feats[i].on,
                    feats[i].name);
    f.physical_cores = ci.physical_cores;
    f.logical_cpus = ci.logical_cpus;
    snprintf(f.isa, sizeof f.isa, "%s", mf_isa_name(ctx->isa));
    f.threads = ctx->threads;
    snprintf(f.library, sizeof f.library, "%s", mf_version());
    /* A context GPU must be identified (vendor, device, driver, UUID)
     * before any measurement of it can be trusted. */
    if (ctx->gpu) {
        mf_gpu_info gi;
        if (mf_ctx_gpu_info(ctx, &gi) != MF_OK)
            return MF_ERR_UNSUPPORTED;
        mf_fp_gpu *g = &f.gpu[0];
        g->vendor_id = gi.vendor_id;
        g->device_id = gi.device_id;
        g->driver_version = gi.driver_version;
        snprintf(g->uuid, sizeof g->uuid, "%.32s", gi.uuid);
        snprintf(g->name, sizeof g->name, "%.127s", gi.name);
        f.n_gpus = 1;
    }
    *fp = f;
    return MF_OK;
}

int mf_fingerprint_equal(const mf_fingerprint *a, const mf_fingerprint *b)
{
    if (strcmp(a->cpu_model, b->cpu_model) || strcmp(a->arch, b->arch) ||
        strcmp(a->features, b->features) ||
        a->physical_cores != b->physical_cores ||
        a->logical_cpus != b->logical_cpus || strcmp(a->isa, b->isa) ||
        a->threads != b->threads || a->n_gpus != b->n_gpus ||
        strcmp(a->library, b->library))
        return 0;
    for (int i = 0; i < a->n_gpus && i < MF_FP_MAX_GPUS; i++) {
        const mf_fp_gpu *x = &a->gpu[i], *y = &b->gpu[i];
        if (x->vendor_id != y->vendor_id || x->device_id != y->device_id ||
            x->driver_version != y->driver_version ||
            strcmp(x->uuid, y->uuid) || strcmp(x->name, y->name))
            return 0;
    }
    return 1;
}

static uint64_t hash_str(uint64_t h, const char *s)
{
    return mf_fnv64(h, s, strlen(s) + 1); /* the NUL separates fields */
}

static uint64_t hash_u32(uint64_t h, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                          (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    return mf_fnv64(h, b, 4);
}

uint64_t mf_fingerprint_hash(const mf_fingerprint *fp)
{
    uint64_t h = MF_FNV64_INIT;
    h = hash_str(h, fp->cpu_model);
    h = hash_str(h, fp->arch);
    h = hash_str(h, fp->features);
    h = hash_u32(h, (uint32_t)fp->physical_cores);
    h = hash_u32(h, (uint32_t)fp->logical_cpus);
    h = hash_str(h, fp->isa);
    h = hash_u32(h, (uint32_t)fp->threads);
    h = hash_u32(h, (uint32_t)fp->n_gpus);
    for (int i = 0; i < fp->n_gpus && i < MF_FP_MAX_GPUS; i++) {
        h = hash_u32(h, fp->gpu[i].vendor_id);
        h = hash_u32(h, fp->gpu[i].device_id);
        h = hash_u32(h, fp->gpu[i].driver_version);
        h = hash_str(h, fp->gpu[i].uuid);
        h = hash_str(h, fp->gpu[i].name);
    }
    return hash_str(h, fp->library);
}
