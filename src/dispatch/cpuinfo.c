/* CPU discovery: features by CPUID + XGETBV (x86-64) or HWCAP (aarch64),
 * cores and caches by hwloc. Probed once. */
#include <hwloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "mf_config.h"

#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDHP
#define HWCAP_ASIMDHP (1 << 10)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef HWCAP_SVE
#define HWCAP_SVE (1 << 22)
#endif
#endif

static mf_cpu_info info;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void probe_x86(mf_cpu_info *c)
{
    unsigned a, b, cx, d;
    snprintf(c->arch, sizeof c->arch, "x86_64");
    if (!__get_cpuid(0, &a, &b, &cx, &d))
        return;
    unsigned max_leaf = a;
    __get_cpuid(1, &a, &b, &cx, &d);
    int osxsave = (cx >> 27) & 1;
    c->sse42 = (cx >> 20) & 1;
    int avx_hw = (cx >> 28) & 1;
    int fma_hw = (cx >> 12) & 1;
    int f16c_hw = (cx >> 29) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int os_ymm = (xcr0 & 0x6) == 0x6;
    int os_zmm = (xcr0 & 0xe6) == 0xe6;
    c->avx = avx_hw && os_ymm;
    c->fma = fma_hw && os_ymm;
    c->f16c = f16c_hw && os_ymm;
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->avx2 = ((b >> 5) & 1) && os_ymm;
        c->avx512f = ((b >> 16) & 1) && os_zmm;
        c->avx512dq = ((b >> 17) & 1) && os_zmm;
        c->avx512bw = ((b >> 30) & 1) && os_zmm;
        c->avx512vl = ((b >> 31) & 1) && os_zmm;
        c->avx512vnni = ((cx >> 11) & 1) && os_zmm;
        __cpuid_count(7, 1, a, b, cx, d);
        c->avx512bf16 = ((a >> 5) & 1) && os_zmm;
        c->avxvnni = ((a >> 4) & 1) && os_ymm;
    }
    char brand[49] = {0};
    __get_cpuid(0x80000000, &a, &b, &cx, &d);
    if (a >= 0x80000004) {
        for (unsigned i = 0; i < 3; i++) {
            unsigned r[4];
            __get_cpuid(0x80000002 + i, &r[0], &r[1], &r[2], &r[3]);
            memcpy(brand + 16 * i, r, 16);
        }
        const char *p = brand;
        while (*p == ' ')
            p++;
        snprintf(c->model, sizeof c->model, "%s", p);
        size_t n = strlen(c->model);
        while (n && c->model[n - 1] == ' ')
            c->model[--n] = 0;
    }
}
#endif

#if defined(__aarch64__)
static void probe_arm(mf_cpu_info *c)
{
    unsigned long hw = getauxval(AT_HWCAP);
    snprintf(c->arch, sizeof c->arch, "aarch64");
    c->neon = (hw & HWCAP_ASIMD) != 0;
    c->asimdhp = (hw & HWCAP_ASIMDHP) != 0;
    c->asimddp = (hw & HWCAP_ASIMDDP) != 0;
    c->sve = (hw & HWCAP_SVE) != 0;
    /* /proc/cpuinfo has no brand string on most ARM kernels: use the part. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        unsigned impl = 0, part = 0;
        while (fgets(line, sizeof line, f)) {
            sscanf(line, "CPU implementer : %x", &impl);
            sscanf(line, "CPU part : %x", &part);
        }
        fclose(f);
        if (impl || part)
            snprintf(c->model, sizeof c->model, "arm impl 0x%02x part 0x%03x",
                     impl, part);
    }
}
#endif

static void probe_hwloc(mf_cpu_info *c)
{
    hwloc_topology_t topo;
    c->physical_cores = c->logical_cpus = 1;
    if (hwloc_topology_init(&topo) != 0)
        return;
    if (hwloc_topology_load(topo) == 0) {
        int cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
        int pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
        if (cores > 0)
            c->physical_cores = cores;
        if (pus > 0)
            c->logical_cpus = pus;
        hwloc_obj_type_t types[3] = {HWLOC_OBJ_L1CACHE, HWLOC_OBJ_L2CACHE,
                                     HWLOC_OBJ_L3CACHE};
        int64_t *dst[3] = {&c->l1d_bytes, &c->l2_bytes, &c->l3_bytes};
        for (int i = 0; i < 3; i++) {
            hwloc_obj_t o = hwloc_get_obj_by_type(topo, types[i], 0);
            if (o && o->attr)
                *dst[i] = (int64_t)o->attr->cache.size;
        }
    }
    hwloc_topology_destroy(topo);
}

static void probe(void)
{
    memset(&info, 0, sizeof info);
    snprintf(info.model, sizeof info.model, "unknown");
    snprintf(info.arch, sizeof info.arch, "unknown");
#if defined(__x86_64__)
    probe_x86(&info);
#elif defined(__aarch64__)
    probe_arm(&info);
#endif
    probe_hwloc(&info);
    info.isa_available[MF_ISA_SCALAR] = 1;
    info.isa_best = MF_ISA_SCALAR;
#if MF_HAVE_AVX2
    if (info.avx2 && info.fma && info.f16c) {
        info.isa_available[MF_ISA_AVX2] = 1;
        info.isa_best = MF_ISA_AVX2;
    }
#endif
#if MF_HAVE_AVX512
    if (info.avx512f && info.avx512bw && info.avx512vl && info.avx512dq &&
        info.avx2 && info.fma && info.f16c && info.avx512vnni) {
        info.isa_available[MF_ISA_AVX512] = 1;
        info.isa_best = MF_ISA_AVX512;
    }
#endif
#if MF_HAVE_NEON
    if (info.neon && info.asimddp && info.asimdhp) {
        info.isa_available[MF_ISA_NEON] = 1;
        info.isa_best = MF_ISA_NEON;
    }
#endif
}

const mf_cpu_info *mf_cpu_info_cached(void)
{
    pthread_once(&once, probe);
    return &info;
}

mf_status mf_cpu_info_get(mf_cpu_info *out)
{
    if (!out)
        return MF_ERR_INVALID_ARG;
    *out = *mf_cpu_info_cached();
    return MF_OK;
}
