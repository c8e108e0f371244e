/* moefuse-doctor: what moefuse sees on this machine — the build, the CPU and
 * its kernel sets, the context it would create (kernel set, threads, GPU),
 * the Vulkan devices, and the placement cache. Human-readable by default,
 * JSON with --json. Exit status 0 on success, 1 when the library cannot
 * describe the machine or create a context, 2 on a usage error. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <moefuse/moefuse.h>

#include "doctor_vulkan.h"
#include "mf_config.h"

static const char usage[] =
    "usage: moefuse-doctor [--json] [--no-gpu] [--help]\n"
    "\n"
    "Prints what moefuse sees on this machine: the build, the CPU (model,\n"
    "cores, caches, features, the kernel sets available and the one chosen),\n"
    "the threads, the Vulkan devices and the context's GPU status, and the\n"
    "placement cache (its path and state).\n"
    "\n"
    "  --json    one JSON object on stdout instead of text\n"
    "  --no-gpu  create the context without Vulkan and list no devices\n"
    "  --help    this text\n"
    "\n"
    "Environment: MOEFUSE_ISA (scalar, avx2, avx512, neon) forces the kernel\n"
    "set; XDG_CACHE_HOME moves the placement cache.\n";

/* ------------------------------------------------------------ the facts -- */

typedef struct feature {
    const char *name;
    size_t offset; /* of an int flag in mf_cpu_info */
} feature;

#define FEAT(f) {#f, offsetof(mf_cpu_info, f)}
static const feature features[] = {
    FEAT(sse42),    FEAT(avx),        FEAT(avx2),        FEAT(fma),
    FEAT(f16c),     FEAT(avx512f),    FEAT(avx512bw),    FEAT(avx512vl),
    FEAT(avx512dq), FEAT(avx512vnni), FEAT(avx512bf16),  FEAT(avxvnni),
    FEAT(neon),     FEAT(asimddp),    FEAT(asimdhp),     FEAT(sve),
};
#define N_FEATURES (sizeof features / sizeof features[0])

static int has_feature(const mf_cpu_info *c, const feature *f)
{
    int v;
    memcpy(&v, (const char *)c + f->offset, sizeof v);
    return v != 0;
}

typedef struct report {
    mf_cpu_info cpu;
    const char *isa_env;    /* MOEFUSE_ISA or NULL */
    mf_isa isa;             /* the context's kernel set */
    int threads;
    int gpu_requested;      /* 0 with --no-gpu */
    mf_status gpu_status;
    int have_gpu_info;      /* gpu_info is valid (the context has a GPU) */
    mf_gpu_info gpu_info;
    dr_vk_report vk;
    char cache_path[4096];  /* "" when none could be formed */
    int cache_exists;
    mf_status cache_status;
} report;

static const char *cache_state(const report *r)
{
    switch (r->cache_status) {
    case MF_OK: return "loaded";
    case MF_ERR_IO: return r->cache_exists ? "unreadable" : "unprofiled";
    case MF_ERR_CACHE_FORMAT: return "corrupt";
    case MF_ERR_CACHE_MISMATCH: return "stale";
    default: return "unknown";
    }
}

static const char *gpu_state(const report *r)
{
    if (!MF_HAVE_VULKAN)
        return "not built";
    if (!r->gpu_requested)
        return "disabled";
    switch (r->gpu_status) {
    case MF_OK: return "in use";
    case MF_ERR_UNSUPPORTED: return "unsupported";
    case MF_ERR_DEVICE: return "no usable device";
    case MF_ERR_DEVICE_LOST: return "lost";
    default: return mf_status_str(r->gpu_status);
    }
}

static const char *gpu_type_name(mf_gpu_type t)
{
    switch (t) {
    case MF_GPU_TYPE_INTEGRATED: return "integrated";
    case MF_GPU_TYPE_DISCRETE: return "discrete";
    case MF_GPU_TYPE_VIRTUAL: return "virtual";
    case MF_GPU_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static void api_string(uint32_t v, char *buf, size_t n)
{
    /* VK_MAKE_API_VERSION: variant 3 bits, major 7, minor 10, patch 12 */
    snprintf(buf, n, "%u.%u.%u", (unsigned)(v >> 22) & 0x7f,
             (unsigned)(v >> 12) & 0x3ff, (unsigned)v & 0xfff);
}

/* Fills *r; on failure prints why and returns 0. */
static int gather(report *r, int use_gpu)
{
    memset(r, 0, sizeof *r);
    mf_status st = mf_cpu_info_get(&r->cpu);
    if (st != MF_OK) {
        fprintf(stderr, "moefuse-doctor: cannot probe the CPU: %s\n",
                mf_status_str(st));
        return 0;
    }
    r->isa_env = getenv("MOEFUSE_ISA");
    if (r->isa_env && !*r->isa_env)
        r->isa_env = NULL;

    mf_ctx_options o = mf_ctx_options_default();
    o.gpu = use_gpu ? MF_GPU_AUTO : MF_GPU_DISABLED;
    r->gpu_requested = use_gpu;
    mf_ctx *ctx = NULL;
    st = mf_ctx_create(&o, &ctx);
    if (st != MF_OK) {
        fprintf(stderr, "moefuse-doctor: cannot create a context: %s%s\n",
                mf_status_str(st),
                r->isa_env ? " (check MOEFUSE_ISA)" : "");
        return 0;
    }
    r->isa = mf_ctx_isa(ctx);
    r->threads = mf_ctx_threads(ctx);
    r->gpu_status = mf_ctx_gpu_status(ctx);
    r->have_gpu_info = mf_ctx_gpu_info(ctx, &r->gpu_info) == MF_OK;
    const char *path = mf_ctx_cache_path(ctx);
    if (path) {
        struct stat sb;
        snprintf(r->cache_path, sizeof r->cache_path, "%s", path);
        r->cache_exists = stat(path, &sb) == 0;
    }
    r->cache_status = mf_ctx_cache_status(ctx);
    mf_ctx_destroy(ctx);

    if (use_gpu)
        dr_vk_probe(&r->vk);
    else
        r->vk.built = MF_HAVE_VULKAN;
    return 1;
}

/* ----------------------------------------------------------------- text -- */

static void print_bytes(int64_t b)
{
    if (b <= 0)
        printf("?");
    else if (b >= (1 << 20) && b % (1 << 20) == 0)
        printf("%lld MiB", (long long)(b >> 20));
    else if (b >= 1024)
        printf("%lld KiB", (long long)(b >> 10));
    else
        printf("%lld B", (long long)b);
}

static void print_text(const report *r)
{
    const mf_cpu_info *c = &r->cpu;
    printf("moefuse %s\n", mf_version());
    printf("  compiler      %s\n", MF_BUILD_COMPILER);
    printf("  kernel sets   scalar%s%s%s\n", MF_HAVE_AVX2 ? " avx2" : "",
           MF_HAVE_AVX512 ? " avx512" : "", MF_HAVE_NEON ? " neon" : "");
    printf("  vulkan        %s\n", MF_HAVE_VULKAN ? "yes" : "no");

    printf("\nCPU\n");
    printf("  model         %s\n", c->model);
    printf("  arch          %s\n", c->arch);
    printf("  cores         %d physical, %d logical\n", c->physical_cores,
           c->logical_cpus);
    printf("  caches        L1d ");
    print_bytes(c->l1d_bytes);
    printf(", L2 ");
    print_bytes(c->l2_bytes);
    printf(", L3 ");
    print_bytes(c->l3_bytes);
    printf("\n  features     ");
    for (size_t i = 0; i < N_FEATURES; i++)
        if (has_feature(c, &features[i]))
            printf(" %s", features[i].name);
    printf("\n  kernel sets  ");
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++)
        if (c->isa_available[i])
            printf(" %s", mf_isa_name((mf_isa)i));
    printf(" (best: %s)\n", mf_isa_name(c->isa_best));

    printf("\nContext\n");
    printf("  kernel set    %s", mf_isa_name(r->isa));
    if (r->isa_env)
        printf(" (MOEFUSE_ISA=%s)", r->isa_env);
    printf("\n");
    printf("  threads       %d\n", r->threads);
    printf("  gpu           %s", gpu_state(r));
    if (r->gpu_status != MF_OK && r->gpu_requested && MF_HAVE_VULKAN)
        printf(" (%s)", mf_status_str(r->gpu_status));
    else if (!r->gpu_requested && MF_HAVE_VULKAN)
        printf(" (--no-gpu)");
    printf("\n");
    if (r->have_gpu_info) {
        const mf_gpu_info *g = &r->gpu_info;
        char api[32];
        api_string(g->api_version, api, sizeof api);
        printf("  gpu device    %s [%s, Vulkan %s, uuid %s]\n", g->name,
               gpu_type_name(g->type), api, g->uuid);
        printf("  gpu memory    ");
        print_bytes((int64_t)g->device_local_bytes);
        printf(" device-local, %s, %u B shared per workgroup\n",
               g->zero_copy ? "zero-copy inputs" : "staging copies",
               (unsigned)g->shared_memory_bytes);
        printf("  gpu binding   ");
        print_bytes((int64_t)g->max_binding_bytes);
        printf(" per storage binding (larger weight tensors split)\n");
        printf("  gpu compute   subgroup %d (%s), %s, %s\n", g->subgroup_size,
               g->subgroup_arithmetic ? "subgroup reductions"
                                      : "shared-memory reductions",
               g->timestamps ? "timestamps" : "no timestamps",
               !g->int8_dot ? "no int8 dot products (INT8 runs as EXACT)"
               : g->int8_dot_accelerated ? "int8 dot products (accelerated)"
                                         : "int8 dot products (not accelerated)");
    }

    printf("\nVulkan devices\n");
    if (!r->vk.built)
        printf("  (this build has no Vulkan backend)\n");
    else if (!r->gpu_requested)
        printf("  (not probed: --no-gpu)\n");
    else if (!r->vk.ok)
        printf("  (none: %s)\n", r->vk.error);
    else if (r->vk.count == 0)
        printf("  (none)\n");
    for (int i = 0; i < r->vk.count; i++) {
        const dr_vk_device *d = &r->vk.dev[i];
        char api[32];
        api_string(d->api_version, api, sizeof api);
        printf("  %d  %s  [%s, Vulkan %s, %04x:%04x, ", i, d->name, d->type,
               api, (unsigned)d->vendor_id, (unsigned)d->device_id);
        print_bytes((int64_t)d->device_local_bytes);
        printf(" device-local]\n      uuid %s\n", d->uuid);
    }

    printf("\nPlacement cache\n");
    printf("  path          %s\n", r->cache_path[0] ? r->cache_path
                                                   : "(none: no $XDG_CACHE_HOME or $HOME)");
    printf("  state         %s", cache_state(r));
    if (r->cache_status != MF_OK)
        printf(" (%s)", r->cache_exists ? mf_status_str(r->cache_status)
                                        : "no file: run moefuse-profile");
    printf("\n");
}

/* ----------------------------------------------------------------- json -- */

static void json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_key(const char *indent, const char *k)
{
    printf("%s", indent);
    json_str(k);
    printf(": ");
}

static void print_json(const report *r)
{
    const mf_cpu_info *c = &r->cpu;
    printf("{\n");
    json_key("  ", "version");
    json_str(mf_version());
    printf(",\n");
    json_key("  ", "build");
    printf("{\"compiler\": ");
    json_str(MF_BUILD_COMPILER);
    printf(", \"avx2\": %s, \"avx512\": %s, \"neon\": %s, \"vulkan\": %s},\n",
           MF_HAVE_AVX2 ? "true" : "false", MF_HAVE_AVX512 ? "true" : "false",
           MF_HAVE_NEON ? "true" : "false", MF_HAVE_VULKAN ? "true" : "false");

    json_key("  ", "cpu");
    printf("{\n");
    json_key("    ", "model");
    json_str(c->model);
    printf(",\n");
    json_key("    ", "arch");
    json_str(c->arch);
    printf(",\n    \"physical_cores\": %d,\n    \"logical_cpus\": %d,\n",
           c->physical_cores, c->logical_cpus);
    printf("    \"l1d_bytes\": %lld,\n    \"l2_bytes\": %lld,\n"
           "    \"l3_bytes\": %lld,\n",
           (long long)c->l1d_bytes, (long long)c->l2_bytes,
           (long long)c->l3_bytes);
    printf("    \"features\": [");
    const char *sep = "";
    for (size_t i = 0; i < N_FEATURES; i++) {
        if (has_feature(c, &features[i])) {
            printf("%s", sep);
            json_str(features[i].name);
            sep = ", ";
        }
    }
    printf("],\n    \"kernel_sets\": [");
    sep = "";
    for (int i = MF_ISA_SCALAR; i < MF_ISA_COUNT_; i++) {
        if (c->isa_available[i]) {
            printf("%s", sep);
            json_str(mf_isa_name((mf_isa)i));
            sep = ", ";
        }
    }
    printf("],\n");
    json_key("    ", "best_kernel_set");
    json_str(mf_isa_name(c->isa_best));
    printf("\n  },\n");

    json_key("  ", "context");
    printf("{\n");
    json_key("    ", "kernel_set");
    json_str(mf_isa_name(r->isa));
    printf(",\n");
    json_key("    ", "moefuse_isa");
    if (r->isa_env)
        json_str(r->isa_env);
    else
        printf("null");
    printf(",\n    \"threads\": %d,\n", r->threads);
    json_key("    ", "gpu");
    json_str(gpu_state(r));
    printf(",\n");
    json_key("    ", "gpu_status");
    json_str(mf_status_str(r->gpu_status));
    printf(",\n");
    json_key("    ", "gpu_device");
    if (r->have_gpu_info) {
        const mf_gpu_info *g = &r->gpu_info;
        char api[32];
        api_string(g->api_version, api, sizeof api);
        printf("{\"name\": ");
        json_str(g->name);
        printf(", \"type\": ");
        json_str(gpu_type_name(g->type));
        printf(", \"api_version\": ");
        json_str(api);
        printf(", \"uuid\": ");
        json_str(g->uuid);
        printf(", \"vendor_id\": %u, \"device_id\": %u, "
               "\"driver_version\": %u, \"zero_copy\": %s, "
               "\"subgroup_size\": %d, \"subgroup_arithmetic\": %s, "
               "\"timestamps\": %s, \"int8_dot\": %s, "
               "\"int8_dot_accelerated\": %s, \"shared_memory_bytes\": %u, "
               "\"device_local_bytes\": %llu, \"max_binding_bytes\": %llu}",
               (unsigned)g->vendor_id, (unsigned)g->device_id,
               (unsigned)g->driver_version, g->zero_copy ? "true" : "false",
               g->subgroup_size, g->subgroup_arithmetic ? "true" : "false",
               g->timestamps ? "true" : "false",
               g->int8_dot ? "true" : "false",
               g->int8_dot_accelerated ? "true" : "false",
               (unsigned)g->shared_memory_bytes,
               (unsigned long long)g->device_local_bytes,
               (unsigned long long)g->max_binding_bytes);
    } else {
        printf("null");
    }
    printf("\n  },\n");

    json_key("  ", "vulkan");
    printf("{\"built\": %s, \"probed\": %s, \"ok\": %s, ",
           r->vk.built ? "true" : "false",
           r->gpu_requested && r->vk.built ? "true" : "false",
           r->vk.ok ? "true" : "false");
    json_key("", "error");
    if (r->vk.built && r->gpu_requested && !r->vk.ok)
        json_str(r->vk.error);
    else
        printf("null");
    printf(", \"devices\": [");
    for (int i = 0; i < r->vk.count; i++) {
        const dr_vk_device *d = &r->vk.dev[i];
        char api[32];
        api_string(d->api_version, api, sizeof api);
        printf("%s\n    {\"name\": ", i ? "," : "");
        json_str(d->name);
        printf(", \"type\": ");
        json_str(d->type);
        printf(", \"api_version\": ");
        json_str(api);
        printf(", \"vendor_id\": %u, \"device_id\": %u, \"uuid\": ",
               (unsigned)d->vendor_id, (unsigned)d->device_id);
        json_str(d->uuid);
        printf(", \"device_local_bytes\": %llu}",
               (unsigned long long)d->device_local_bytes);
    }
    printf("%s]},\n", r->vk.count ? "\n  " : "");

    json_key("  ", "placement_cache");
    printf("{\"path\": ");
    if (r->cache_path[0])
        json_str(r->cache_path);
    else
        printf("null");
    printf(", \"exists\": %s, \"state\": ", r->cache_exists ? "true" : "false");
    json_str(cache_state(r));
    printf(", \"status\": ");
    json_str(mf_status_str(r->cache_status));
    printf("}\n}\n");
}

int main(int argc, char **argv)
{
    int json = 0, use_gpu = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--no-gpu") == 0) {
            use_gpu = 0;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else {
            fprintf(stderr, "moefuse-doctor: unknown argument '%s'\n\n%s",
                    argv[i], usage);
            return 2;
        }
    }
    static report r;
    if (!gather(&r, use_gpu))
        return 1;
    if (json)
        print_json(&r);
    else
        print_text(&r);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
