/* Buffers: device-local, staging, readback and zero-copy memory; op io
 * buffers; one-shot uploads and downloads. */
#include <string.h>

#include "vk.h"

static int take_fault(mf_vk *vk, int which)
{
    if (vk->fault != which)
        return 0;
    if (vk->fault_skip > 0) {
        vk->fault_skip--;
        return 0;
    }
    vk->fault = MF_VK_FAULT_NONE;
    return 1;
}

mf_status mf_vk_buf_create(mf_vk *vk, size_t bytes, mf_vk_mem kind,
                           mf_vk_buf *out)
{
    memset(out, 0, sizeof *out);
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    if (take_fault(vk, MF_VK_FAULT_OOM))
        return MF_ERR_DEVICE_OOM;
    if (kind == MF_VK_MEM_ZERO_COPY && !vk->zero_copy)
        return MF_ERR_UNSUPPORTED;
    VkDeviceSize size = ((VkDeviceSize)bytes + 3) & ~(VkDeviceSize)3;
    if (size == 0)
        size = 4;
    if (size > vk->max_alloc)
        return MF_ERR_DEVICE_OOM;
    VkBufferCreateInfo bi = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                 VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                 VK_BUFFER_USAGE_TRANSFER_DST_BIT,
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = vkCreateBuffer(vk->dev, &bi, NULL, &out->buf);
    if (r != VK_SUCCESS) {
        out->buf = VK_NULL_HANDLE;
        return mf_vk_status(vk, r);
    }
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vk->dev, out->buf, &req);
    int type = mf_vk_mem_type(vk, req.memoryTypeBits, kind);
    if (type < 0) {
        mf_vk_buf_destroy(vk, out);
        return MF_ERR_DEVICE;
    }
    VkMemoryAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .allocationSize = req.size,
        .memoryTypeIndex = (uint32_t)type,
    };
    r = vkAllocateMemory(vk->dev, &ai, NULL, &out->mem);
    if (r == VK_SUCCESS)
        r = vkBindBufferMemory(vk->dev, out->buf, out->mem, 0);
    if (r == VK_SUCCESS && kind != MF_VK_MEM_DEVICE)
        r = vkMapMemory(vk->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map);
    if (r != VK_SUCCESS) {
        mf_vk_buf_destroy(vk, out);
        return mf_vk_status(vk, r);
    }
    out->size = size;
    return MF_OK;
}

void mf_vk_buf_destroy(mf_vk *vk, mf_vk_buf *b)
{
    if (b->buf)
        vkDestroyBuffer(vk->dev, b->buf, NULL);
    if (b->mem)
        vkFreeMemory(vk->dev, b->mem, NULL); /* unmaps */
    memset(b, 0, sizeof *b);
}

/* A device buffer and a staging (input) or readback (output) buffer. */
static mf_status io_staged(mf_vk *vk, size_t bytes, mf_vk_dir dir,
                           mf_vk_io *out)
{
    mf_status st = mf_vk_buf_create(vk, bytes, MF_VK_MEM_DEVICE, &out->dev);
    if (st == MF_OK)
        st = mf_vk_buf_create(vk, bytes,
                              dir == MF_VK_IN ? MF_VK_MEM_STAGING
                                              : MF_VK_MEM_READBACK,
                              &out->host);
    if (st != MF_OK) {
        mf_vk_io_destroy(vk, out);
        return st;
    }
    out->map = out->host.map;
    return MF_OK;
}

mf_status mf_vk_io_create(mf_vk *vk, size_t bytes, mf_vk_dir dir,
                          mf_vk_io *out)
{
    memset(out, 0, sizeof *out);
    out->bytes = bytes;
    out->dir = dir;
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    if (take_fault(vk, MF_VK_FAULT_OOM))
        return MF_ERR_DEVICE_OOM;
    if (vk->io_copy)
        return io_staged(vk, bytes, dir, out);
    if (dir == MF_VK_OUT && !vk->host_reads_device && vk->out_to_host) {
        mf_status st = mf_vk_buf_create(vk, bytes, MF_VK_MEM_READBACK,
                                        &out->dev);
        if (st == MF_OK) {
            out->map = out->dev.map;
            return MF_OK;
        }
        if (st != MF_ERR_DEVICE_OOM)
            return st;
    }
    int direct = dir == MF_VK_IN ? vk->zero_copy : vk->host_reads_device;
    if (direct) {
        /* Zero-copy heaps can be small (a 256 MiB BAR): fall back to
         * staging when they are full. */
        mf_status st = mf_vk_buf_create(vk, bytes, MF_VK_MEM_ZERO_COPY,
                                        &out->dev);
        if (st == MF_OK) {
            out->map = out->dev.map;
            return MF_OK;
        }
        if (st != MF_ERR_DEVICE_OOM)
            return st;
    }
    return io_staged(vk, bytes, dir, out);
}

void mf_vk_io_destroy(mf_vk *vk, mf_vk_io *io)
{
    mf_vk_buf_destroy(vk, &io->dev);
    mf_vk_buf_destroy(vk, &io->host);
    io->map = NULL;
}

static mf_status one_shot(mf_vk *vk, const mf_vk_buf *dev, size_t offset,
                          void *host, size_t bytes, int up)
{
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    if (offset > dev->size || bytes > dev->size - offset)
        return MF_ERR_INVALID_ARG;
    if (bytes == 0)
        return MF_OK;
    mf_vk_buf stage;
    mf_status st = mf_vk_buf_create(
        vk, bytes, up ? MF_VK_MEM_STAGING : MF_VK_MEM_READBACK, &stage);
    if (st != MF_OK)
        return st;
    mf_vk_prog p;
    st = mf_vk_prog_init(vk, &p, 0);
    if (st == MF_OK) {
        if (up)
            memcpy(stage.map, host, bytes);
        st = mf_vk_prog_begin(vk, &p);
        if (st == MF_OK) {
            VkBufferCopy c = {.srcOffset = up ? 0 : offset,
                              .dstOffset = up ? offset : 0,
                              .size = bytes};
            vkCmdCopyBuffer(p.cb, up ? stage.buf : dev->buf,
                            up ? dev->buf : stage.buf, 1, &c);
            st = mf_vk_prog_end(vk, &p);
        }
        if (st == MF_OK)
            st = mf_vk_prog_run(vk, &p);
        if (st == MF_OK && !up)
            memcpy(host, stage.map, bytes);
        mf_vk_prog_free(vk, &p);
    }
    mf_vk_buf_destroy(vk, &stage);
    return st;
}

mf_status mf_vk_upload(mf_vk *vk, const mf_vk_buf *dst, size_t offset,
                       const void *src, size_t bytes)
{
    return one_shot(vk, dst, offset, (void *)(uintptr_t)src, bytes, 1);
}

mf_status mf_vk_download(mf_vk *vk, const mf_vk_buf *src, size_t offset,
                         void *dst, size_t bytes)
{
    return one_shot(vk, src, offset, dst, bytes, 0);
}
