/* The driver's statistics of each compute pipeline built
 * (VK_KHR_pipeline_executable_properties): what its compiler made of a
 * shader — registers, shared memory, spills, code size, named as the
 * driver names them. Asked for with MOEFUSE_GPU_PIPELINE_STATS=1, since
 * capturing them can cost build time and bypass the pipeline cache;
 * moefuse-bench prints them. */
#include <stdio.h>
#include <string.h>

#include "vk.h"

int mf_vk_pstats_offered(mf_vk *vk)
{
    if (!mf_vk_has_device_ext(vk,
                              VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME))
        return 0;
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR f = {
        .sType =
            VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f};
    vkGetPhysicalDeviceFeatures2(vk->pdev, &f2);
    return f.pipelineExecutableInfo == VK_TRUE;
}

void mf_vk_pstats_load(mf_vk *vk)
{
    vk->get_exec_props =
        (PFN_vkGetPipelineExecutablePropertiesKHR)vkGetDeviceProcAddr(
            vk->dev, "vkGetPipelineExecutablePropertiesKHR");
    vk->get_exec_stats =
        (PFN_vkGetPipelineExecutableStatisticsKHR)vkGetDeviceProcAddr(
            vk->dev, "vkGetPipelineExecutableStatisticsKHR");
    if (!vk->get_exec_props || !vk->get_exec_stats)
        vk->pstats = 0;
}

static double stat_value(const VkPipelineExecutableStatisticKHR *s)
{
    switch (s->format) {
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
        return s->value.b32 ? 1.0 : 0.0;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
        return (double)s->value.i64;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
        return (double)s->value.u64;
    case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
        return s->value.f64;
    default:
        return 0.0;
    }
}

void mf_vk_pstats_capture(mf_vk *vk, mf_vk_pipe *p)
{
    p->n_stats = 0;
    if (!vk->pstats || !p->pipe)
        return;
    /* a compute pipeline has one executable, the compute stage */
    VkPipelineInfoKHR pi = {.sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR,
                            .pipeline = p->pipe};
    uint32_t n_exec = 0;
    if (vk->get_exec_props(vk->dev, &pi, &n_exec, NULL) != VK_SUCCESS ||
        n_exec == 0)
        return;
    VkPipelineExecutableInfoKHR ei = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR,
        .pipeline = p->pipe,
        .executableIndex = 0};
    VkPipelineExecutableStatisticKHR st[MF_VK_PSTATS];
    for (uint32_t i = 0; i < MF_VK_PSTATS; i++)
        st[i] = (VkPipelineExecutableStatisticKHR){
            .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR};
    uint32_t n = MF_VK_PSTATS;
    VkResult r = vk->get_exec_stats(vk->dev, &ei, &n, st);
    if (r != VK_SUCCESS && r != VK_INCOMPLETE)
        return;
    for (uint32_t i = 0; i < n && i < MF_VK_PSTATS; i++) {
        snprintf(p->stats[i].name, sizeof p->stats[i].name, "%s", st[i].name);
        p->stats[i].value = stat_value(&st[i]);
    }
    p->n_stats = n < MF_VK_PSTATS ? n : MF_VK_PSTATS;
}
