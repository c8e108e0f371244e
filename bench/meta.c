/* Machine metadata for results files. */
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "mf_config.h"
#include "git_sha.h"
#include "src/dispatch/cache.h"

/* The placement cache's state for the metadata: "absent" where no file is
 * there (an unprofiled machine; the status alone, MF_ERR_IO, would read
 * "i/o error"), else the status string ("ok" when loaded). */
static const char *cache_state(const mf_ctx *ctx)
{
    mf_status st = mf_ctx_cache_status(ctx);
    const char *path = mf_ctx_cache_path(ctx);
    if (st == MF_ERR_IO && (!path || access(path, F_OK) != 0))
        return "absent";
    return mf_status_str(st);
}

const char *bench_git_sha(void) { return MF_GIT_SHA; }

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

typedef struct pipe_json_arg {
    FILE *f;
    int *first;
} pipe_json_arg;

static void pipe_json(void *user, const mf_gpu_pipe_info *p)
{
    pipe_json_arg *a = user;
    fprintf(a->f, "%s{\"shader\": ", *a->first ? "" : ", ");
    *a->first = 0;
    json_str(a->f, p->shader);
    fprintf(a->f, ", \"spec\": [");
    for (uint32_t i = 0; i < p->n_spec; i++)
        fprintf(a->f, "%s%u", i ? ", " : "", p->spec[i]);
    fprintf(a->f, "], \"stats\": {");
    for (uint32_t i = 0; i < p->n_stats; i++) {
        fprintf(a->f, "%s", i ? ", " : "");
        json_str(a->f, p->stats[i].name);
        fprintf(a->f, ": %.17g", p->stats[i].value);
    }
    fprintf(a->f, "}}");
}

void bench_write_machine_json(FILE *f, const mf_ctx *ctx, int threads)
{
    mf_cpu_info ci;
    mf_cpu_info_get(&ci);
    fprintf(f, "{\"cpu\": ");
    json_str(f, ci.model);
    fprintf(f, ", \"arch\": \"%s\", \"cores\": %d, \"logical_cpus\": %d",
            ci.arch, ci.physical_cores, ci.logical_cpus);
    fprintf(f, ", \"isa_set\": [");
    int first = 1;
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++) {
        if (ci.isa_available[i]) {
            fprintf(f, "%s\"%s\"", first ? "" : ", ", mf_isa_name((mf_isa)i));
            first = 0;
        }
    }
    fprintf(f, "], \"isa\": \"%s\", \"threads\": %d",
            mf_isa_name(mf_ctx_isa(ctx)), threads);
    mf_gpu_info gi;
    mf_status gs = mf_ctx_gpu_info(ctx, &gi);
    if (gs == MF_OK) {
        fprintf(f, ", \"gpu_name\": ");
        json_str(f, gi.name);
        fprintf(f, ", \"gpu_vendor_id\": %u, \"gpu_device_id\": %u, "
                   "\"driver_version\": %u, \"vulkan_version\": \"%u.%u.%u\", "
                   "\"gpu_uuid\": \"%s\", \"gpu_zero_copy\": %d, "
                   "\"gpu_subgroup_size\": %d, \"gpu_int8_dot\": %d, "
                   "\"gpu_int8_dot_accelerated\": %d",
                gi.vendor_id, gi.device_id, gi.driver_version,
                (gi.api_version >> 22) & 0x7fu, (gi.api_version >> 12) & 0x3ffu,
                gi.api_version & 0xfffu, gi.uuid, gi.zero_copy, gi.subgroup_size,
                gi.int8_dot, gi.int8_dot_accelerated);
    } else {
        fprintf(f, ", \"gpu_name\": null, \"gpu_status\": ");
        json_str(f, mf_status_str(gs));
    }
    /* GPU calls take the kernel forms a placement cache measured */
    fprintf(f, ", \"placement_cache\": ");
    json_str(f, cache_state(ctx));
    fprintf(f, ", \"gpu_forms_measured\": %zu",
            ctx->placement ? ctx->placement->n_forms : (size_t)0);
    /* MOEFUSE_GPU_PIPELINE_STATS=1: what the driver's compiler made of
     * each pipeline the run built */
    if (mf_gpu_pipeline_stats(ctx->gpu, NULL, NULL) >= 0) {
        fprintf(f, ", \"gpu_pipelines\": [");
        int first = 1;
        mf_gpu_pipeline_stats(ctx->gpu, pipe_json, &(pipe_json_arg){f, &first});
        fprintf(f, "]");
    }
    fprintf(f, ", \"compiler\": ");
    json_str(f, MF_BUILD_COMPILER);
    fprintf(f, ", \"flags\": ");
    json_str(f, MF_BUILD_FLAGS);
    fprintf(f, ", \"library_version\": \"%s\", \"git_sha\": \"%s\"",
            mf_version(), bench_git_sha());
    char date[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(f, ", \"date\": \"%s\"}", date);
}
