/* moefuse-doctor: the Vulkan physical devices the loader reports. */
#ifndef MF_TOOLS_DOCTOR_VULKAN_H
#define MF_TOOLS_DOCTOR_VULKAN_H

#include <stddef.h>
#include <stdint.h>

#define DR_VK_MAX_DEVICES 16

typedef struct dr_vk_device {
    char name[256];
    const char *type;         /* "discrete", "integrated", "virtual", "cpu", "other" */
    uint32_t api_version;     /* VK_MAKE_API_VERSION encoding */
    uint32_t vendor_id, device_id;
    char uuid[33];            /* 32 hex digits */
    uint64_t device_local_bytes; /* sum of the DEVICE_LOCAL heaps */
} dr_vk_device;

typedef struct dr_vk_report {
    int built;     /* 1 when this build has the Vulkan backend */
    int ok;        /* 1 when the loader answered (0 devices is still ok) */
    char error[128]; /* why not, when built && !ok */
    int count;     /* devices listed (at most DR_VK_MAX_DEVICES) */
    dr_vk_device dev[DR_VK_MAX_DEVICES];
} dr_vk_report;

/* Fills *r. Never fails: problems are reported in r->ok and r->error. */
void dr_vk_probe(dr_vk_report *r);

#endif
