/* Vulkan bring-up: instance (with optional validation), physical device
 * choice, compute queue, what the device offers, memory types. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vk.h"

int64_t mf_vk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

mf_status mf_vk_status(mf_vk *vk, VkResult r)
{
    switch (r) {
    case VK_SUCCESS: return MF_OK;
    case VK_ERROR_OUT_OF_HOST_MEMORY: return MF_ERR_OUT_OF_MEMORY;
    case VK_ERROR_OUT_OF_DEVICE_MEMORY:
    case VK_ERROR_TOO_MANY_OBJECTS:
    case VK_ERROR_FRAGMENTED_POOL:
    case VK_ERROR_OUT_OF_POOL_MEMORY: return MF_ERR_DEVICE_OOM;
    case VK_ERROR_DEVICE_LOST:
        if (vk)
            vk->lost = 1;
        return MF_ERR_DEVICE_LOST;
    default: return MF_ERR_DEVICE;
    }
}

/* Validation messages seen by this process (all devices). */
static int val_msgs;

int mf_vk_validation_messages(void)
{
    return __atomic_load_n(&val_msgs, __ATOMIC_RELAXED);
}

static VKAPI_ATTR VkBool32 VKAPI_CALL
on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
              VkDebugUtilsMessageTypeFlagsEXT type,
              const VkDebugUtilsMessengerCallbackDataEXT *data, void *user)
{
    (void)user;
    if (sev & (VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
               VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)) {
        /* Loader notes (general messages, e.g. "found no drivers" on a
         * machine without one) are printed, not counted. */
        if (type & (VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT))
            __atomic_add_fetch(&val_msgs, 1, __ATOMIC_RELAXED);
        fprintf(stderr, "moefuse vulkan validation: %s\n",
                data && data->pMessage ? data->pMessage : "(no text)");
    }
    return VK_FALSE;
}

static int env_flag(const char *name)
{
    const char *e = getenv(name);
    return e && *e && strcmp(e, "0") != 0;
}

static int have_layer(const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || !n)
        return 0;
    VkLayerProperties *l = calloc(n, sizeof *l);
    if (!l)
        return 0;
    int found = 0;
    if (vkEnumerateInstanceLayerProperties(&n, l) == VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(l[i].layerName, name) == 0;
    free(l);
    return found;
}

static mf_status make_instance(mf_vk *vk)
{
    uint32_t api = VK_API_VERSION_1_0;
    if (vkEnumerateInstanceVersion(&api) != VK_SUCCESS ||
        api < VK_API_VERSION_1_1)
        return MF_ERR_DEVICE;
    static const char *layer = "VK_LAYER_KHRONOS_validation";
    static const char *ext = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
    vk->validation = env_flag("MOEFUSE_VK_VALIDATION");
    if (vk->validation && !have_layer(layer)) {
        fprintf(stderr, "moefuse: MOEFUSE_VK_VALIDATION set but %s is not "
                        "installed\n", layer);
        return MF_ERR_DEVICE;
    }
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "moefuse",
        .pEngineName = "moefuse",
        .engineVersion = VK_MAKE_API_VERSION(0, MF_VERSION_MAJOR,
                                             MF_VERSION_MINOR,
                                             MF_VERSION_PATCH),
        .apiVersion = VK_API_VERSION_1_1,
    };
    VkDebugUtilsMessengerCreateInfoEXT dbg = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                           VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_validation,
        .pUserData = vk,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = vk->validation ? &dbg : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = vk->validation ? 1 : 0,
        .ppEnabledLayerNames = vk->validation ? &layer : NULL,
        .enabledExtensionCount = vk->validation ? 1 : 0,
        .ppEnabledExtensionNames = vk->validation ? &ext : NULL,
    };
    VkResult r = vkCreateInstance(&ci, NULL, &vk->inst);
    if (r != VK_SUCCESS) {
        vk->inst = VK_NULL_HANDLE;
        return r == VK_ERROR_OUT_OF_HOST_MEMORY ? MF_ERR_OUT_OF_MEMORY
                                                : MF_ERR_DEVICE;
    }
    if (vk->validation) {
        PFN_vkCreateDebugUtilsMessengerEXT fn =
            (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                vk->inst, "vkCreateDebugUtilsMessengerEXT");
        if (!fn || fn(vk->inst, &dbg, NULL, &vk->messenger) != VK_SUCCESS)
            return MF_ERR_DEVICE;
    }
    return MF_OK;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 32 hex digits (dashes allowed between them) -> 16 bytes; 0 if malformed. */
static int parse_uuid(const char *s, uint8_t out[VK_UUID_SIZE])
{
    int n = 0;
    for (; *s; s++) {
        if (*s == '-')
            continue;
        int v = hexval((unsigned char)*s);
        if (v < 0 || n >= 2 * (int)VK_UUID_SIZE)
            return 0;
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(v << 4);
        else
            out[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 2 * (int)VK_UUID_SIZE;
}

/* A compute queue family: compute-only first (no graphics work shares it),
 * else any with compute. UINT32_MAX if none. */
static uint32_t compute_family(VkPhysicalDevice pd, uint32_t *ts_bits)
{
    uint32_t n = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
    VkQueueFamilyProperties *q = calloc(n ? n : 1, sizeof *q);
    if (!q)
        return UINT32_MAX;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
    uint32_t best = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) {
        if (!(q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) || !q[i].queueCount)
            continue;
        if (best == UINT32_MAX ||
            (!(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT) &&
             (q[best].queueFlags & VK_QUEUE_GRAPHICS_BIT)))
            best = i;
    }
    if (best != UINT32_MAX)
        *ts_bits = q[best].timestampValidBits;
    free(q);
    return best;
}

static int usable(VkPhysicalDevice pd)
{
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(pd, &p);
    uint32_t bits;
    return p.apiVersion >= VK_API_VERSION_1_1 &&
           compute_family(pd, &bits) != UINT32_MAX;
}

static int type_rank(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

static mf_status pick_device(mf_vk *vk, const mf_vk_select *sel)
{
    uint32_t n = 0;
    VkResult r = vkEnumeratePhysicalDevices(vk->inst, &n, NULL);
    if (r != VK_SUCCESS || n == 0)
        return r == VK_ERROR_OUT_OF_HOST_MEMORY ? MF_ERR_OUT_OF_MEMORY
                                                : MF_ERR_DEVICE;
    VkPhysicalDevice *pd = calloc(n, sizeof *pd);
    if (!pd)
        return MF_ERR_OUT_OF_MEMORY;
    r = vkEnumeratePhysicalDevices(vk->inst, &n, pd);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE) {
        free(pd);
        return MF_ERR_DEVICE;
    }
    uint8_t want_uuid[VK_UUID_SIZE];
    if (sel->uuid && !parse_uuid(sel->uuid, want_uuid)) {
        free(pd);
        return MF_ERR_DEVICE;
    }
    int best = -1, best_rank = 99;
    for (uint32_t i = 0; i < n; i++) {
        if (sel->index >= 0 && (uint32_t)sel->index != i)
            continue;
        if (!usable(pd[i]))
            continue;
        VkPhysicalDeviceIDProperties id = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
        VkPhysicalDeviceProperties2 p2 = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2,
            .pNext = &id};
        vkGetPhysicalDeviceProperties2(pd[i], &p2);
        if (sel->name && !strstr(p2.properties.deviceName, sel->name))
            continue;
        if (sel->uuid && memcmp(id.deviceUUID, want_uuid, VK_UUID_SIZE))
            continue;
        int rank = type_rank(p2.properties.deviceType);
        if (rank < best_rank) {
            best = (int)i;
            best_rank = rank;
        }
    }
    if (best >= 0)
        vk->pdev = pd[best];
    free(pd);
    return best >= 0 ? MF_OK : MF_ERR_DEVICE;
}

/* Memory type satisfying `need`, preferring `want` and avoiding `avoid`,
 * among the types in `bits`; -1 if none. */
static int find_type(const VkPhysicalDeviceMemoryProperties *m, uint32_t bits,
                     VkMemoryPropertyFlags need, VkMemoryPropertyFlags want,
                     VkMemoryPropertyFlags avoid)
{
    int best = -1, best_score = -1;
    for (uint32_t i = 0; i < m->memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = m->memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (f & need) != need)
            continue;
        int score = ((f & want) == want ? 2 : 0) + ((f & avoid) ? 0 : 1);
        if (score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

int mf_vk_mem_type(const mf_vk *vk, uint32_t bits, mf_vk_mem kind)
{
    const VkMemoryPropertyFlags DL = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT,
                                HV = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT,
                                HC = VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                CA = VK_MEMORY_PROPERTY_HOST_CACHED_BIT;
    switch (kind) {
    case MF_VK_MEM_DEVICE: return find_type(&vk->mem, bits, 0, DL, HV);
    case MF_VK_MEM_STAGING:
        return find_type(&vk->mem, bits, HV | HC, 0,
                         vk->host_reads_device ? 0 : DL);
    case MF_VK_MEM_READBACK:
        return find_type(&vk->mem, bits, HV | HC, CA,
                         vk->host_reads_device ? 0 : DL);
    case MF_VK_MEM_ZERO_COPY:
        return find_type(&vk->mem, bits, DL | HV | HC, CA, 0);
    }
    return -1;
}

static void read_caps(mf_vk *vk, uint32_t ts_bits)
{
    VkPhysicalDeviceSubgroupProperties sg = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vkGetPhysicalDeviceProperties2(vk->pdev, &p2);
    vk->props = p2.properties;
    const VkPhysicalDeviceLimits *L = &vk->props.limits;
    vk->subgroup_size = sg.subgroupSize;
    vk->subgroup_ops = (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT)
                           ? sg.supportedOperations
                           : 0;
    /* The shared-memory path is used for odd subgroup sizes too. */
    vk->subgroup_arith =
        (vk->subgroup_ops & VK_SUBGROUP_FEATURE_BASIC_BIT) &&
        (vk->subgroup_ops & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
        (vk->subgroup_ops & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) &&
        sg.subgroupSize >= 4 && sg.subgroupSize <= 128 &&
        (sg.subgroupSize & (sg.subgroupSize - 1)) == 0;
    if (env_flag("MOEFUSE_GPU_NO_SUBGROUP"))
        vk->subgroup_arith = 0; /* diagnostics: force shared-memory trees */
    vk->shared_bytes = L->maxComputeSharedMemorySize;
    vk->max_wg_size = L->maxComputeWorkGroupSize[0] <
                              L->maxComputeWorkGroupInvocations
                          ? L->maxComputeWorkGroupSize[0]
                          : L->maxComputeWorkGroupInvocations;
    vk->max_groups_x = L->maxComputeWorkGroupCount[0];
    vk->max_binding = L->maxStorageBufferRange;
    VkPhysicalDeviceMaintenance3Properties m3 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    p2.pNext = &m3;
    vkGetPhysicalDeviceProperties2(vk->pdev, &p2);
    vk->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize
                                               : ((uint64_t)1 << 30);
    if (vk->max_alloc < vk->max_binding)
        vk->max_binding = vk->max_alloc;
    vk->timestamps = ts_bits > 0 && L->timestampPeriod > 0;
    vk->ts_period_ns = L->timestampPeriod;
    vk->ts_mask = ts_bits >= 64 ? UINT64_MAX : ((uint64_t)1 << ts_bits) - 1;

    vkGetPhysicalDeviceMemoryProperties(vk->pdev, &vk->mem);
    VkPhysicalDeviceType t = vk->props.deviceType;
    vk->host_reads_device = t == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ||
                            t == VK_PHYSICAL_DEVICE_TYPE_CPU;
    vk->mt_device = mf_vk_mem_type(vk, UINT32_MAX, MF_VK_MEM_DEVICE);
    vk->mt_staging = mf_vk_mem_type(vk, UINT32_MAX, MF_VK_MEM_STAGING);
    vk->mt_readback = mf_vk_mem_type(vk, UINT32_MAX, MF_VK_MEM_READBACK);
    vk->mt_zero = mf_vk_mem_type(vk, UINT32_MAX, MF_VK_MEM_ZERO_COPY);
    vk->zero_copy = vk->mt_zero >= 0;
    if (!vk->zero_copy)
        vk->host_reads_device = 0;
    vk->out_to_host = !vk->host_reads_device;
    const char *io = getenv("MOEFUSE_GPU_IO");
    if (io && strcmp(io, "copy") == 0) {
        vk->io_copy = 1;
        vk->out_to_host = 0;
    } else if (io && strcmp(io, "host") == 0) {
        vk->host_reads_device = 0;
        vk->out_to_host = 1;
    }

    const char *spin = getenv("MOEFUSE_GPU_SPIN_US");
    if (spin && *spin)
        vk->spin_ns = strtoll(spin, NULL, 10) * 1000;
    else
        vk->spin_ns = t == VK_PHYSICAL_DEVICE_TYPE_CPU ? 0 : 2000000;
    if (vk->spin_ns < 0)
        vk->spin_ns = 0;
}

int mf_vk_has_device_ext(mf_vk *vk, const char *name)
{
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(vk->pdev, NULL, &n, NULL) !=
            VK_SUCCESS ||
        n == 0)
        return 0;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e)
        return 0;
    int found = 0;
    if (vkEnumerateDeviceExtensionProperties(vk->pdev, NULL, &n, e) ==
        VK_SUCCESS)
        for (uint32_t i = 0; i < n && !found; i++)
            found = strcmp(e[i].extensionName, name) == 0;
    free(e);
    return found;
}

/* VK_KHR_shader_integer_dot_product with shaderIntegerDotProduct: the INT8
 * matvec shaders (packed 4x8 dot products) can run. Enabled through the
 * extension, which every 1.3 driver that has the feature also lists. */
static int has_int_dot(mf_vk *vk)
{
    if (!mf_vk_has_device_ext(vk,
                              VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME))
        return 0;
    VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR f = {
        .sType =
            VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR};
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f};
    vkGetPhysicalDeviceFeatures2(vk->pdev, &f2);
    if (!f.shaderIntegerDotProduct)
        return 0;
    VkPhysicalDeviceShaderIntegerDotProductPropertiesKHR p = {
        .sType =
            VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES_KHR};
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &p};
    vkGetPhysicalDeviceProperties2(vk->pdev, &p2);
    vk->int_dot_accel =
        p.integerDotProduct4x8BitPackedSignedAccelerated &&
        p.integerDotProduct4x8BitPackedMixedSignednessAccelerated;
    return 1;
}

static mf_status make_device(mf_vk *vk)
{
    uint32_t ts_bits = 0;
    vk->qfam = compute_family(vk->pdev, &ts_bits);
    if (vk->qfam == UINT32_MAX)
        return MF_ERR_DEVICE;
    read_caps(vk, ts_bits);
    if (vk->mt_device < 0 || vk->mt_staging < 0 || vk->mt_readback < 0 ||
        vk->max_wg_size < 64)
        return MF_ERR_DEVICE;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qi = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = vk->qfam,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    vk->int_dot = !env_flag("MOEFUSE_GPU_NO_INT8") && has_int_dot(vk);
    if (!vk->int_dot)
        vk->int_dot_accel = 0;
    vk->pstats = env_flag("MOEFUSE_GPU_PIPELINE_STATS") &&
                 mf_vk_pstats_offered(vk);
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR pef = {
        .sType =
            VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR,
        .pipelineExecutableInfo = VK_TRUE};
    VkPhysicalDeviceShaderIntegerDotProductFeaturesKHR idf = {
        .sType =
            VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES_KHR,
        .pNext = vk->pstats ? &pef : NULL,
        .shaderIntegerDotProduct = VK_TRUE};
    const char *ext[2];
    uint32_t n_ext = 0;
    if (vk->int_dot)
        ext[n_ext++] = VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME;
    if (vk->pstats)
        ext[n_ext++] = VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME;
    VkDeviceCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = vk->int_dot ? (void *)&idf : vk->pstats ? (void *)&pef : NULL,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qi,
        .enabledExtensionCount = n_ext,
        .ppEnabledExtensionNames = n_ext ? ext : NULL,
    };
    VkResult r = vkCreateDevice(vk->pdev, &di, NULL, &vk->dev);
    if (r != VK_SUCCESS) {
        vk->dev = VK_NULL_HANDLE;
        return r == VK_ERROR_OUT_OF_HOST_MEMORY ? MF_ERR_OUT_OF_MEMORY
                                                : MF_ERR_DEVICE;
    }
    if (vk->pstats)
        mf_vk_pstats_load(vk);
    vkGetDeviceQueue(vk->dev, vk->qfam, 0, &vk->queue);
    VkCommandPoolCreateInfo pi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = vk->qfam,
    };
    r = vkCreateCommandPool(vk->dev, &pi, NULL, &vk->cmd_pool);
    if (r != VK_SUCCESS) {
        vk->cmd_pool = VK_NULL_HANDLE;
        return mf_vk_status(vk, r);
    }
    return MF_OK;
}

mf_status mf_vk_init(mf_vk *vk, const mf_vk_select *sel)
{
    memset(vk, 0, sizeof *vk);
    mf_status st = make_instance(vk);
    if (st == MF_OK)
        st = pick_device(vk, sel);
    if (st == MF_OK)
        st = make_device(vk);
    if (st == MF_OK)
        mf_vk_pcache_load(vk, sel->cache_dir);
    if (st != MF_OK)
        mf_vk_fini(vk);
    return st;
}

void mf_vk_fini(mf_vk *vk)
{
    if (vk->dev) {
        vkDeviceWaitIdle(vk->dev);
        for (mf_vk_pipe *p = vk->pipes, *nx; p; p = nx) {
            nx = p->next;
            vkDestroyPipeline(vk->dev, p->pipe, NULL);
            vkDestroyPipelineLayout(vk->dev, p->layout, NULL);
            vkDestroyDescriptorSetLayout(vk->dev, p->dsl, NULL);
            free(p);
        }
        vk->pipes = NULL;
        if (vk->pcache) {
            if (!vk->lost)
                mf_vk_pcache_save(vk);
            vkDestroyPipelineCache(vk->dev, vk->pcache, NULL);
        }
        if (vk->cmd_pool)
            vkDestroyCommandPool(vk->dev, vk->cmd_pool, NULL);
        vkDestroyDevice(vk->dev, NULL);
    }
    free(vk->pcache_file);
    if (vk->inst) {
        if (vk->messenger) {
            PFN_vkDestroyDebugUtilsMessengerEXT fn =
                (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(
                    vk->inst, "vkDestroyDebugUtilsMessengerEXT");
            if (fn)
                fn(vk->inst, vk->messenger, NULL);
        }
        vkDestroyInstance(vk->inst, NULL);
    }
    memset(vk, 0, sizeof *vk);
}
