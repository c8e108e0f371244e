/* mf_gpu lifetime, device description, fault injection (tests only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_internal.h"

#define SCRATCH_FLOATS (4 * 4096 + 64)

/* The pipeline cache directory: the directory of the placement cache file
 * (the context resolves the default path before it creates the GPU). NULL
 * if there is none. */
static char *cache_dir(const mf_ctx_options *o)
{
    const char *path = o->cache_path;
    if (!path || !*path)
        return NULL;
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 1 : slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, !slash ? "." : slash == path ? "/" : path, n);
        d[n] = '\0';
    }
    return d;
}

/* MOEFUSE_GPU_FAULT (tests only), read by each mf_gpu_create:
 *   create  mf_gpu_create fails with MF_ERR_DEVICE (as a device lacking a
 *           required feature would)
 *   oom     the first device allocation fails (MF_ERR_DEVICE_OOM)
 *   lost    the first submit reports the device lost (MF_ERR_DEVICE_LOST) */
static int env_fault(void)
{
    const char *e = getenv("MOEFUSE_GPU_FAULT");
    if (!e)
        return MF_VK_FAULT_NONE;
    if (strcmp(e, "oom") == 0)
        return MF_VK_FAULT_OOM;
    if (strcmp(e, "lost") == 0)
        return MF_VK_FAULT_LOST;
    if (strcmp(e, "create") == 0)
        return -1;
    return MF_VK_FAULT_NONE;
}

mf_status mf_gpu_create(const mf_ctx_options *opts, mf_gpu **out)
{
    int fault = env_fault();
    if (fault < 0)
        return MF_ERR_DEVICE;
    mf_gpu *g = calloc(1, sizeof *g);
    if (!g)
        return MF_ERR_OUT_OF_MEMORY;
    g->scratch = malloc(SCRATCH_FLOATS * sizeof(float));
    if (!g->scratch) {
        free(g);
        return MF_ERR_OUT_OF_MEMORY;
    }
    char *dir = cache_dir(opts); /* NULL: no pipeline cache on disk */
    mf_vk_select sel = {.index = opts->gpu_index,
                        .name = opts->gpu_name,
                        .uuid = opts->gpu_uuid,
                        .cache_dir = dir};
    mf_status st = mf_vk_init(&g->vk, &sel);
    free(dir);
    if (st != MF_OK) {
        free(g->scratch);
        free(g);
        return st;
    }
    g->vk.fault = fault;
    memset(g->vk.forms, MF_GPU_FORM_AUTO, sizeof g->vk.forms);
    for (int i = 0; i < MF_GPU_OP_COUNT_; i++)
        g->plans[i].budget = MF_GPU_PLAN_BUDGET;
    *out = g;
    return MF_OK;
}

void mf_gpu_destroy(mf_gpu *g)
{
    if (!g)
        return;
    if (g->vk.dev) {
        vkDeviceWaitIdle(g->vk.dev);
        mf_gpu_quant_free(g);
        for (int i = 0; i < MF_GPU_OP_COUNT_; i++)
            mf_vk_plans_free(&g->vk, &g->plans[i]);
        mf_vk_prog_free(&g->vk, &g->empty);
        mf_vk_prog_free(&g->vk, &g->steps);
        for (int i = 0; i < MF_GPU_COPY_KINDS_; i++)
            mf_vk_prog_free(&g->vk, &g->copy[i]);
        mf_vk_buf_destroy(&g->vk, &g->copy_src);
        mf_vk_buf_destroy(&g->vk, &g->copy_dst);
    }
    mf_vk_fini(&g->vk);
    free(g->scratch);
    free(g);
}

void mf_gpu_forms_use(mf_gpu *g, const mf_gpu_forms *f)
{
    if (!g)
        return;
    if (f)
        memcpy(g->vk.forms, f->v, sizeof g->vk.forms);
    else
        memset(g->vk.forms, MF_GPU_FORM_AUTO, sizeof g->vk.forms);
}

int mf_gpu_form(const mf_vk *vk, mf_gpu_form_id id)
{
    int e = mf_gpu_form_env(id);
    if (e != MF_GPU_FORM_AUTO)
        return e;
    int v = vk->forms[id];
    return v == 0 || v == 1 ? v : MF_GPU_FORM_AUTO;
}

void mf_gpu_forms_current(const mf_gpu *g, mf_gpu_forms *out)
{
    for (int i = 0; i < MF_GPU_FORM_COUNT_; i++)
        out->v[i] = (int8_t)(g ? mf_gpu_form(&g->vk, (mf_gpu_form_id)i)
                               : MF_GPU_FORM_AUTO);
}

uint32_t mf_gpu_forms_word(const mf_vk *vk)
{
    uint32_t w = 0;
    for (int i = 0; i < MF_GPU_FORM_COUNT_; i++)
        w |= (uint32_t)(mf_gpu_form(vk, (mf_gpu_form_id)i) + 1) << (2 * i);
    return w;
}

int mf_gpu_usable(const mf_gpu *g) { return g && !g->vk.lost; }

mf_status mf_gpu_info_get(const mf_gpu *g, mf_gpu_info *out)
{
    if (!g || !out)
        return MF_ERR_INVALID_ARG;
    if (g->vk.lost)
        return MF_ERR_DEVICE_LOST;
    const mf_vk *vk = &g->vk;
    mf_gpu_info i;
    memset(&i, 0, sizeof i);
    snprintf(i.name, sizeof i.name, "%s", vk->props.deviceName);
    i.vendor_id = vk->props.vendorID;
    i.device_id = vk->props.deviceID;
    i.driver_version = vk->props.driverVersion;
    i.api_version = vk->props.apiVersion;
    VkPhysicalDeviceIDProperties id = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &id};
    vkGetPhysicalDeviceProperties2(vk->pdev, &p2);
    static const char hex[] = "0123456789abcdef";
    for (unsigned b = 0; b < VK_UUID_SIZE; b++) {
        i.uuid[2 * b] = hex[id.deviceUUID[b] >> 4];
        i.uuid[2 * b + 1] = hex[id.deviceUUID[b] & 15];
    }
    switch (vk->props.deviceType) {
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU:
        i.type = MF_GPU_TYPE_INTEGRATED;
        break;
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU:
        i.type = MF_GPU_TYPE_DISCRETE;
        break;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU:
        i.type = MF_GPU_TYPE_VIRTUAL;
        break;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: i.type = MF_GPU_TYPE_CPU; break;
    default: i.type = MF_GPU_TYPE_OTHER; break;
    }
    i.zero_copy = vk->zero_copy;
    i.subgroup_size = (int)vk->subgroup_size;
    i.subgroup_arithmetic = vk->subgroup_arith;
    i.timestamps = vk->timestamps;
    i.int8_dot = vk->int_dot;
    i.int8_dot_accelerated = vk->int_dot_accel;
    i.shared_memory_bytes = vk->shared_bytes;
    i.max_binding_bytes = vk->max_binding;
    for (uint32_t h = 0; h < vk->mem.memoryHeapCount; h++)
        if (vk->mem.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            i.device_local_bytes += vk->mem.memoryHeaps[h].size;
    *out = i;
    return MF_OK;
}

void mf_gpu_inject_fault(mf_gpu *g, mf_gpu_fault f)
{
    if (!g)
        return;
    g->vk.fault = f == MF_GPU_FAULT_OOM    ? MF_VK_FAULT_OOM
                  : f == MF_GPU_FAULT_LOST ? MF_VK_FAULT_LOST
                                           : MF_VK_FAULT_NONE;
    g->vk.fault_skip = 0;
}

void mf_gpu_inject_fault_after(mf_gpu *g, mf_gpu_fault f, int skip)
{
    mf_gpu_inject_fault(g, f);
    if (g)
        g->vk.fault_skip = skip > 0 ? skip : 0;
}


int mf_gpu_validation_messages(void) { return mf_vk_validation_messages(); }

_Static_assert(MF_VK_PSTATS == MF_GPU_PIPE_STATS, "pipeline statistics");

int mf_gpu_pipeline_stats(const mf_gpu *g,
                          void (*fn)(void *user, const mf_gpu_pipe_info *p),
                          void *user)
{
    if (!g || !g->vk.pstats)
        return -1;
    int n = 0;
    for (const mf_vk_pipe *p = g->vk.pipes; p; p = p->next, n++) {
        mf_gpu_pipe_info in = {.shader = p->desc.shader->name,
                               .spec = p->desc.spec,
                               .n_spec = p->desc.n_spec,
                               .n_stats = p->n_stats};
        for (uint32_t i = 0; i < p->n_stats && i < MF_GPU_PIPE_STATS; i++) {
            in.stats[i].name = p->stats[i].name;
            in.stats[i].value = p->stats[i].value;
        }
        if (fn)
            fn(user, &in);
    }
    return n;
}

void mf_gpu_gating_rows(const mf_gpu *g, int64_t *device_rows,
                        int64_t *host_rows)
{
    *device_rows = g ? g->gating_device_rows : 0;
    *host_rows = g ? g->gating_host_rows : 0;
}
