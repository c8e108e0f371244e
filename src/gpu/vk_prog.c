/* Recorded programs: a command buffer with its fence, descriptor sets and
 * timestamps; recording helpers with the barriers between steps; submit and
 * a busy-polling fence wait. */
#include <string.h>

#include "vk.h"

mf_status mf_vk_prog_init(mf_vk *vk, mf_vk_prog *p, uint32_t max_dispatches)
{
    memset(p, 0, sizeof *p);
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    p->max_sets = max_dispatches ? max_dispatches : 1;
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = vk->cmd_pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = 1,
    };
    VkResult r = vkAllocateCommandBuffers(vk->dev, &ai, &p->cb);
    if (r != VK_SUCCESS) {
        p->cb = VK_NULL_HANDLE;
        goto fail;
    }
    VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    r = vkCreateFence(vk->dev, &fi, NULL, &p->fence);
    if (r != VK_SUCCESS) {
        p->fence = VK_NULL_HANDLE;
        goto fail;
    }
    VkDescriptorPoolSize ps = {
        .type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
        .descriptorCount = p->max_sets * MF_VK_MAX_BINDINGS,
    };
    VkDescriptorPoolCreateInfo di = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
        .maxSets = p->max_sets,
        .poolSizeCount = 1,
        .pPoolSizes = &ps,
    };
    r = vkCreateDescriptorPool(vk->dev, &di, NULL, &p->dpool);
    if (r != VK_SUCCESS) {
        p->dpool = VK_NULL_HANDLE;
        goto fail;
    }
    if (vk->timestamps) {
        VkQueryPoolCreateInfo qi = {
            .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
            .queryType = VK_QUERY_TYPE_TIMESTAMP,
            .queryCount = 2,
        };
        r = vkCreateQueryPool(vk->dev, &qi, NULL, &p->qpool);
        if (r != VK_SUCCESS) {
            p->qpool = VK_NULL_HANDLE;
            goto fail;
        }
    }
    return MF_OK;
fail:
    mf_vk_prog_free(vk, p);
    return mf_vk_status(vk, r);
}

void mf_vk_prog_free(mf_vk *vk, mf_vk_prog *p)
{
    if (p->cb)
        vkFreeCommandBuffers(vk->dev, vk->cmd_pool, 1, &p->cb);
    if (p->fence)
        vkDestroyFence(vk->dev, p->fence, NULL);
    if (p->dpool)
        vkDestroyDescriptorPool(vk->dev, p->dpool, NULL);
    if (p->qpool)
        vkDestroyQueryPool(vk->dev, p->qpool, NULL);
    memset(p, 0, sizeof *p);
}

mf_status mf_vk_prog_begin(mf_vk *vk, mf_vk_prog *p)
{
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    p->recorded = 0;
    p->used_sets = 0;
    p->uploaded = 0;
    p->dispatched = 0;
    p->err = MF_OK;
    VkResult r = vkResetDescriptorPool(vk->dev, p->dpool, 0);
    if (r == VK_SUCCESS)
        r = vkResetCommandBuffer(p->cb, 0);
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    if (r == VK_SUCCESS)
        r = vkBeginCommandBuffer(p->cb, &bi);
    if (r != VK_SUCCESS)
        return p->err = mf_vk_status(vk, r);
    if (p->qpool) {
        vkCmdResetQueryPool(p->cb, p->qpool, 0, 2);
        vkCmdWriteTimestamp(p->cb, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT,
                            p->qpool, 0);
    }
    return MF_OK;
}

static void barrier(VkCommandBuffer cb, VkPipelineStageFlags src,
                    VkAccessFlags src_access, VkPipelineStageFlags dst,
                    VkAccessFlags dst_access)
{
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = src_access,
                          .dstAccessMask = dst_access};
    vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

void mf_vk_cmd_upload(mf_vk *vk, mf_vk_prog *p, const mf_vk_io *io)
{
    (void)vk;
    if (!io->host.buf || p->err)
        return;
    VkBufferCopy c = {.size = io->host.size};
    vkCmdCopyBuffer(p->cb, io->host.buf, io->dev.buf, 1, &c);
    p->uploaded = 1;
}

void mf_vk_cmd_dispatch(mf_vk *vk, mf_vk_prog *p, const mf_vk_pipe *pipe,
                        const mf_vk_bind *binds, const void *push,
                        uint32_t gx, uint32_t gy, uint32_t gz)
{
    if (p->err)
        return;
    if (p->used_sets >= p->max_sets) {
        p->err = MF_ERR_INVALID_ARG;
        return;
    }
    if (p->uploaded) {
        barrier(p->cb, VK_PIPELINE_STAGE_TRANSFER_BIT,
                VK_ACCESS_TRANSFER_WRITE_BIT,
                VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                VK_ACCESS_SHADER_READ_BIT);
        p->uploaded = 0;
    }
    VkDescriptorSetAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
        .descriptorPool = p->dpool,
        .descriptorSetCount = 1,
        .pSetLayouts = &pipe->dsl,
    };
    VkDescriptorSet set;
    VkResult r = vkAllocateDescriptorSets(vk->dev, &ai, &set);
    if (r != VK_SUCCESS) {
        p->err = mf_vk_status(vk, r);
        return;
    }
    p->used_sets++;
    uint32_t n = pipe->desc.n_bindings;
    VkDescriptorBufferInfo bi[MF_VK_MAX_BINDINGS];
    VkWriteDescriptorSet w[MF_VK_MAX_BINDINGS];
    for (uint32_t i = 0; i < n; i++) {
        bi[i] = (VkDescriptorBufferInfo){
            .buffer = binds[i].buf->buf,
            .offset = binds[i].offset,
            .range = binds[i].range ? binds[i].range : VK_WHOLE_SIZE,
        };
        w[i] = (VkWriteDescriptorSet){
            .sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
            .dstSet = set,
            .dstBinding = i,
            .descriptorCount = 1,
            .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            .pBufferInfo = &bi[i],
        };
    }
    if (n)
        vkUpdateDescriptorSets(vk->dev, n, w, 0, NULL);
    vkCmdBindPipeline(p->cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe->pipe);
    vkCmdBindDescriptorSets(p->cb, VK_PIPELINE_BIND_POINT_COMPUTE,
                            pipe->layout, 0, 1, &set, 0, NULL);
    if (pipe->desc.push_bytes)
        vkCmdPushConstants(p->cb, pipe->layout, VK_SHADER_STAGE_COMPUTE_BIT,
                           0, pipe->desc.push_bytes, push);
    vkCmdDispatch(p->cb, gx, gy, gz);
    p->dispatched = 1;
}

void mf_vk_cmd_barrier(mf_vk_prog *p)
{
    if (p->err)
        return;
    barrier(p->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_WRITE_BIT,
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

void mf_vk_cmd_download(mf_vk *vk, mf_vk_prog *p, const mf_vk_io *io)
{
    (void)vk;
    if (!io->host.buf || p->err)
        return;
    if (p->dispatched) {
        barrier(p->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                VK_ACCESS_SHADER_WRITE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                VK_ACCESS_TRANSFER_READ_BIT);
        p->dispatched = 0;
    }
    VkBufferCopy c = {.size = io->dev.size};
    vkCmdCopyBuffer(p->cb, io->dev.buf, io->host.buf, 1, &c);
}

void mf_vk_cmd_copy(mf_vk_prog *p, const mf_vk_buf *src, const mf_vk_buf *dst,
                    VkDeviceSize bytes)
{
    if (p->err)
        return;
    VkBufferCopy c = {.size = bytes};
    vkCmdCopyBuffer(p->cb, src->buf, dst->buf, 1, &c);
}

mf_status mf_vk_prog_end(mf_vk *vk, mf_vk_prog *p)
{
    if (p->err) {
        vkEndCommandBuffer(p->cb);
        return p->err;
    }
    if (p->qpool)
        vkCmdWriteTimestamp(p->cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                            p->qpool, 1);
    barrier(p->cb,
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT |
                VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
            VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT);
    VkResult r = vkEndCommandBuffer(p->cb);
    if (r != VK_SUCCESS)
        return p->err = mf_vk_status(vk, r);
    p->recorded = 1;
    return MF_OK;
}

static mf_status wait_fence(mf_vk *vk, VkFence f)
{
    VkResult r;
    if (vk->spin_ns > 0) {
        int64_t t0 = mf_vk_now_ns();
        do {
            r = vkGetFenceStatus(vk->dev, f);
            if (r != VK_NOT_READY)
                return mf_vk_status(vk, r);
        } while (mf_vk_now_ns() - t0 < vk->spin_ns);
    }
    r = vkWaitForFences(vk->dev, 1, &f, VK_TRUE, UINT64_MAX);
    return mf_vk_status(vk, r);
}

mf_status mf_vk_prog_run(mf_vk *vk, mf_vk_prog *p)
{
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    if (!p->recorded)
        return MF_ERR_INVALID_ARG;
    if (vk->fault == MF_VK_FAULT_LOST) {
        vk->fault = MF_VK_FAULT_NONE;
        vk->lost = 1;
        return MF_ERR_DEVICE_LOST;
    }
    VkSubmitInfo si = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .commandBufferCount = 1,
        .pCommandBuffers = &p->cb,
    };
    VkResult r = vkQueueSubmit(vk->queue, 1, &si, p->fence);
    if (r != VK_SUCCESS)
        return mf_vk_status(vk, r);
    mf_status st = wait_fence(vk, p->fence);
    if (st != MF_OK)
        return st;
    r = vkResetFences(vk->dev, 1, &p->fence);
    return mf_vk_status(vk, r);
}

double mf_vk_prog_gpu_ns(mf_vk *vk, const mf_vk_prog *p)
{
    if (!p->qpool || vk->lost)
        return -1;
    uint64_t t[2];
    VkResult r = vkGetQueryPoolResults(vk->dev, p->qpool, 0, 2, sizeof t, t,
                                       sizeof t[0], VK_QUERY_RESULT_64_BIT);
    if (r != VK_SUCCESS)
        return -1;
    uint64_t d = (t[1] - t[0]) & vk->ts_mask;
    return (double)d * vk->ts_period_ns;
}
