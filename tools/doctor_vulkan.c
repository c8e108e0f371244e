/* moefuse-doctor: lists the Vulkan physical devices through the loader, with
 * a throwaway instance (no layers, no extensions). */
#include "doctor_vulkan.h"

#include <stdio.h>
#include <string.h>

#include "mf_config.h"

#if MF_HAVE_VULKAN
#include <vulkan/vulkan.h>

static const char *type_name(VkPhysicalDeviceType t)
{
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

static void describe(VkPhysicalDevice pd, dr_vk_device *d)
{
    VkPhysicalDeviceIDProperties id = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_ID_PROPERTIES};
    VkPhysicalDeviceProperties2 p2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &id};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceProperties *p = &p2.properties;
    snprintf(d->name, sizeof d->name, "%s", p->deviceName);
    d->type = type_name(p->deviceType);
    d->api_version = p->apiVersion;
    d->vendor_id = p->vendorID;
    d->device_id = p->deviceID;
    for (unsigned i = 0; i < VK_UUID_SIZE; i++)
        snprintf(d->uuid + 2 * i, 3, "%02x", id.deviceUUID[i]);

    VkPhysicalDeviceMemoryProperties m;
    vkGetPhysicalDeviceMemoryProperties(pd, &m);
    d->device_local_bytes = 0;
    for (uint32_t i = 0; i < m.memoryHeapCount; i++)
        if (m.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
            d->device_local_bytes += m.memoryHeaps[i].size;
}

void dr_vk_probe(dr_vk_report *r)
{
    memset(r, 0, sizeof *r);
    r->built = 1;
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "moefuse-doctor",
                             .apiVersion = VK_API_VERSION_1_1};
    VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
                               .pApplicationInfo = &app};
    VkInstance inst;
    VkResult res = vkCreateInstance(&ci, NULL, &inst);
    if (res != VK_SUCCESS) {
        snprintf(r->error, sizeof r->error,
                 "vkCreateInstance failed (VkResult %d)", (int)res);
        return;
    }
    VkPhysicalDevice pd[DR_VK_MAX_DEVICES];
    uint32_t n = DR_VK_MAX_DEVICES;
    res = vkEnumeratePhysicalDevices(inst, &n, pd);
    if (res != VK_SUCCESS && res != VK_INCOMPLETE) {
        snprintf(r->error, sizeof r->error,
                 "vkEnumeratePhysicalDevices failed (VkResult %d)", (int)res);
    } else {
        r->ok = 1;
        r->count = (int)n;
        for (uint32_t i = 0; i < n; i++)
            describe(pd[i], &r->dev[i]);
    }
    vkDestroyInstance(inst, NULL);
}

#else

void dr_vk_probe(dr_vk_report *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->error, sizeof r->error, "this build has no Vulkan backend");
}

#endif
