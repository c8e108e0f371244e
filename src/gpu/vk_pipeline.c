/* Compute pipelines from embedded SPIR-V: one descriptor set of storage
 * buffers, one push constant block, 32-bit specialization constants. Built
 * once per distinct description through the pipeline cache. */
#include <stdlib.h>
#include <string.h>

#include "vk.h"

static int same_desc(const mf_vk_pipe_desc *a, const mf_vk_pipe_desc *b)
{
    if (a->shader != b->shader || a->n_bindings != b->n_bindings ||
        a->push_bytes != b->push_bytes || a->n_spec != b->n_spec)
        return 0;
    return memcmp(a->spec, b->spec, a->n_spec * sizeof a->spec[0]) == 0;
}

static void pipe_destroy(mf_vk *vk, mf_vk_pipe *p)
{
    if (p->pipe)
        vkDestroyPipeline(vk->dev, p->pipe, NULL);
    if (p->layout)
        vkDestroyPipelineLayout(vk->dev, p->layout, NULL);
    if (p->dsl)
        vkDestroyDescriptorSetLayout(vk->dev, p->dsl, NULL);
    free(p);
}

static mf_status build(mf_vk *vk, mf_vk_pipe *p)
{
    const mf_vk_pipe_desc *d = &p->desc;
    VkDescriptorSetLayoutBinding b[MF_VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < d->n_bindings; i++)
        b[i] = (VkDescriptorSetLayoutBinding){
            .binding = i,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .descriptorCount = 1,
            .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
        };
    VkDescriptorSetLayoutCreateInfo li = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
        .bindingCount = d->n_bindings,
        .pBindings = b,
    };
    VkResult r = vkCreateDescriptorSetLayout(vk->dev, &li, NULL, &p->dsl);
    if (r != VK_SUCCESS) {
        p->dsl = VK_NULL_HANDLE;
        return mf_vk_status(vk, r);
    }
    VkPushConstantRange pr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT,
                              .offset = 0,
                              .size = d->push_bytes};
    VkPipelineLayoutCreateInfo pli = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .setLayoutCount = 1,
        .pSetLayouts = &p->dsl,
        .pushConstantRangeCount = d->push_bytes ? 1 : 0,
        .pPushConstantRanges = d->push_bytes ? &pr : NULL,
    };
    r = vkCreatePipelineLayout(vk->dev, &pli, NULL, &p->layout);
    if (r != VK_SUCCESS) {
        p->layout = VK_NULL_HANDLE;
        return mf_vk_status(vk, r);
    }
    VkShaderModuleCreateInfo mi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
        .codeSize = d->shader->bytes,
        .pCode = d->shader->code,
    };
    VkShaderModule mod;
    r = vkCreateShaderModule(vk->dev, &mi, NULL, &mod);
    if (r != VK_SUCCESS)
        return mf_vk_status(vk, r);
    VkSpecializationMapEntry me[MF_VK_MAX_SPEC];
    for (uint32_t i = 0; i < d->n_spec; i++)
        me[i] = (VkSpecializationMapEntry){.constantID = i,
                                           .offset = 4 * i,
                                           .size = 4};
    VkSpecializationInfo si = {
        .mapEntryCount = d->n_spec,
        .pMapEntries = me,
        .dataSize = 4 * (size_t)d->n_spec,
        .pData = d->spec,
    };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = mod,
            .pName = "main",
            .pSpecializationInfo = d->n_spec ? &si : NULL,
        },
        .layout = p->layout,
    };
    if (vk->pstats)
        ci.flags |= VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR;
    r = vkCreateComputePipelines(vk->dev, vk->pcache, 1, &ci, NULL, &p->pipe);
    vkDestroyShaderModule(vk->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        p->pipe = VK_NULL_HANDLE;
        return mf_vk_status(vk, r);
    }
    mf_vk_pstats_capture(vk, p);
    return MF_OK;
}

mf_status mf_vk_pipe_get(mf_vk *vk, const mf_vk_pipe_desc *desc,
                         const mf_vk_pipe **out)
{
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    if (!desc->shader || desc->n_bindings > MF_VK_MAX_BINDINGS ||
        desc->n_spec > MF_VK_MAX_SPEC || desc->push_bytes % 4 ||
        desc->push_bytes > MF_VK_MAX_PUSH ||
        desc->push_bytes > vk->props.limits.maxPushConstantsSize)
        return MF_ERR_INVALID_ARG;
    for (mf_vk_pipe *p = vk->pipes; p; p = p->next)
        if (same_desc(&p->desc, desc)) {
            *out = p;
            return MF_OK;
        }
    mf_vk_pipe *p = calloc(1, sizeof *p);
    if (!p)
        return MF_ERR_OUT_OF_MEMORY;
    p->desc = *desc;
    mf_status st = build(vk, p);
    if (st != MF_OK) {
        pipe_destroy(vk, p);
        return st;
    }
    p->next = vk->pipes;
    vk->pipes = p;
    *out = p;
    return MF_OK;
}
