/* Resident weights: the cache of device copies of weight tensors (see
 * quant.h), chunked uploads with progress, eviction, counters. */
#include <stdlib.h>
#include <string.h>

#include "quant.h"

mf_gpu_quant *mf_gpu_quant_of(mf_gpu *g)
{
    if (!g->quant) {
        g->quant = calloc(1, sizeof *g->quant);
        if (g->quant) {
            g->quant->wc.next_id = 1;
            const char *e = getenv("MOEFUSE_GPU_UPLOAD");
            g->quant->force_staged = e && strcmp(e, "staged") == 0;
            const char *ch = getenv("MOEFUSE_GPU_UPLOAD_CHUNK");
            long long b = ch ? atoll(ch) : 0;
            g->quant->stage_bytes = b >= 256 && (uint64_t)b < MF_WCACHE_STAGE_BYTES
                                        ? (size_t)b
                                        : MF_WCACHE_STAGE_BYTES;
            const char *pb = getenv("MOEFUSE_GPU_PART_BYTES");
            long long v = pb ? atoll(pb) : 0;
            g->quant->part_bytes = v >= 4096 ? (uint64_t)v : 0;
        }
    }
    return g->quant;
}

static mf_wkey key_of(const mf_tensor *t)
{
    mf_wkey k;
    memset(&k, 0, sizeof k);
    k.data = t->data;
    k.scales = t->scales;
    k.biases = t->biases;
    k.e = t->e;
    k.n = t->n;
    k.k = t->k;
    k.row_stride = t->row_stride ? t->row_stride
                                 : mf_tensor_row_bytes(t->type, t->k);
    k.type = (int32_t)t->type;
    k.group_size = t->group_size;
    k.scale_type = (int32_t)t->scale_type;
    return k;
}

static int key_eq(const mf_wkey *a, const mf_wkey *b)
{
    return a->data == b->data && a->scales == b->scales &&
           a->biases == b->biases && a->e == b->e && a->n == b->n &&
           a->k == b->k && a->row_stride == b->row_stride &&
           a->type == b->type && a->group_size == b->group_size &&
           a->scale_type == b->scale_type;
}

static unsigned bucket_of(const void *p)
{
    uintptr_t u = (uintptr_t)p;
    u ^= u >> 17;
    u *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (unsigned)(u >> (sizeof u * 8 - 8)) % MF_WCACHE_BUCKETS;
}

static mf_wres *find(mf_wcache *c, const mf_wkey *k)
{
    for (mf_wres *r = c->bucket[bucket_of(k->data)]; r; r = r->next)
        if (key_eq(&r->key, k))
            return r;
    return NULL;
}

/* Bytes of the codes a key reads (the last row without its padding). */
static size_t code_span(const mf_wkey *k)
{
    size_t rb = mf_tensor_row_bytes((mf_type)k->type, k->k);
    size_t rows = (size_t)k->e * (size_t)k->n;
    return (rows - 1) * (size_t)k->row_stride + rb;
}

static void fingerprint(const mf_wkey *k, unsigned char fp[32])
{
    size_t span = code_span(k), n = span < 16 ? span : 16;
    const unsigned char *d = k->data;
    memset(fp, 0, 32);
    memcpy(fp, d, n);
    memcpy(fp + 16, d + span - n, n);
}

static void unlink_entry(mf_wcache *c, mf_wres *e)
{
    mf_wres **pp = &c->bucket[bucket_of(e->key.data)];
    while (*pp && *pp != e)
        pp = &(*pp)->next;
    if (*pp)
        *pp = e->next;
}

static void free_parts(mf_vk *vk, mf_wres *e)
{
    for (uint32_t i = 0; e->part && i < e->nparts; i++)
        mf_vk_buf_destroy(vk, &e->part[i].buf);
    free(e->part);
    free(e);
}

static void destroy_entry(mf_gpu *g, mf_wres *e)
{
    mf_wcache *c = &g->quant->wc;
    mf_quant_drop_plans(g, e->id);
    unlink_entry(c, e);
    c->resident_bytes -= e->bytes;
    c->buffers -= e->nparts;
    c->count--;
    c->evictions++;
    free_parts(&g->vk, e);
}

/* The least recently used unpinned entry the running call does not use. */
static mf_wres *victim(mf_wcache *c)
{
    mf_wres *best = NULL;
    for (int b = 0; b < MF_WCACHE_BUCKETS; b++)
        for (mf_wres *r = c->bucket[b]; r; r = r->next)
            if (!r->pinned && r->last_use != c->clock &&
                (!best || r->last_use < best->last_use))
                best = r;
    return best;
}

/* A device buffer for an image, evicting under pressure. */
static mf_status alloc_image(mf_gpu *g, size_t bytes, int direct,
                             mf_vk_buf *out)
{
    mf_wcache *c = &g->quant->wc;
    for (;;) {
        mf_status st = mf_vk_buf_create(
            &g->vk, bytes, direct ? MF_VK_MEM_ZERO_COPY : MF_VK_MEM_DEVICE,
            out);
        if (st != MF_ERR_DEVICE_OOM)
            return st;
        mf_wres *v = victim(c);
        if (!v)
            return st;
        destroy_entry(g, v);
    }
}

/* Rows per chunk so a chunk's bytes (all regions) fit in `cap`. */
static uint64_t chunk_rows(const mf_wlayout *l, const mf_tensor *t,
                           size_t cap)
{
    uint64_t per = l->code_row + l->scale_row *
                   ((t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8)
                        ? 2 : 1);
    uint64_t n = cap / per;
    return n ? n : 1;
}

static void report(mf_progress_fn fn, void *user, uint64_t done,
                   uint64_t total)
{
    if (fn)
        fn(user, done >= total ? 1.0 : (double)done / (double)total);
}

/* Packs rows [r0, r1) of every region into dst; fills `copies` with the
 * staging -> image copies (offsets relative to dst). Returns their count. */
static uint32_t pack_chunk(const mf_tensor *t, const mf_wlayout *l,
                           uint64_t r0, uint64_t r1, unsigned char *dst,
                           VkBufferCopy *copies)
{
    uint32_t n = 0;
    size_t at = 0;
    const uint64_t base[3] = {r0 * l->code_row, l->soff + r0 * l->scale_row,
                              l->boff + r0 * l->scale_row};
    for (int region = 0; region < 3; region++) {
        size_t b = mf_wpack_rows(t, l, region, r0, r1, dst + at);
        if (!b)
            continue;
        copies[n++] = (VkBufferCopy){.srcOffset = at,
                                     .dstOffset = base[region],
                                     .size = b};
        at += b;
    }
    return n;
}

/* Image through device-visible memory the host writes (CPU and integrated
 * devices): packed in place. */
static void upload_direct(const mf_tensor *t, const mf_wlayout *l,
                          mf_vk_buf *img, size_t cap, mf_progress_fn fn,
                          void *user)
{
    unsigned char *m = img->map;
    uint64_t step = chunk_rows(l, t, cap);
    for (uint64_t r0 = 0; r0 < l->rows; r0 += step) {
        uint64_t r1 = r0 + step < l->rows ? r0 + step : l->rows;
        mf_wpack_rows(t, l, 0, r0, r1, m + r0 * l->code_row);
        mf_wpack_rows(t, l, 1, r0, r1, m + l->soff + r0 * l->scale_row);
        mf_wpack_rows(t, l, 2, r0, r1, m + l->boff + r0 * l->scale_row);
        report(fn, user, r1, l->rows);
    }
}

/* Recorded copy of one chunk with the barrier that makes it visible to
 * every later dispatch on the queue. */
static VkResult record_chunk(VkCommandBuffer cb, VkBuffer src, VkBuffer dst,
                             const VkBufferCopy *copies, uint32_t n)
{
    VkResult r = vkResetCommandBuffer(cb, 0);
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    if (r == VK_SUCCESS)
        r = vkBeginCommandBuffer(cb, &bi);
    if (r != VK_SUCCESS)
        return r;
    vkCmdCopyBuffer(cb, src, dst, n, copies);
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT};
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0,
                         NULL, 0, NULL);
    return vkEndCommandBuffer(cb);
}

static mf_status submit(mf_vk *vk, mf_vk_prog *p)
{
    if (vk->lost)
        return MF_ERR_DEVICE_LOST;
    if (vk->fault == MF_VK_FAULT_LOST) {
        vk->fault = MF_VK_FAULT_NONE;
        vk->lost = 1;
        return MF_ERR_DEVICE_LOST;
    }
    VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
                       .commandBufferCount = 1,
                       .pCommandBuffers = &p->cb};
    return mf_vk_status(vk, vkQueueSubmit(vk->queue, 1, &si, p->fence));
}

static mf_status wait(mf_vk *vk, mf_vk_prog *p)
{
    VkResult r = vkWaitForFences(vk->dev, 1, &p->fence, VK_TRUE, UINT64_MAX);
    if (r == VK_SUCCESS)
        r = vkResetFences(vk->dev, 1, &p->fence);
    return mf_vk_status(vk, r);
}

/* Image through two staging buffers: chunk i + 1 is packed while chunk i
 * is copied. */
static mf_status upload_staged(mf_gpu *g, const mf_tensor *t,
                               const mf_wlayout *l, mf_vk_buf *img,
                               mf_progress_fn fn, void *user)
{
    mf_vk *vk = &g->vk;
    uint64_t step = chunk_rows(l, t, g->quant->stage_bytes);
    uint64_t per = l->code_row + 2 * l->scale_row;
    size_t cap = (size_t)(step * per);
    if (cap > (size_t)l->total)
        cap = (size_t)l->total;
    mf_vk_buf stage[2];
    mf_vk_prog prog[2];
    int busy[2] = {0, 0};
    memset(stage, 0, sizeof stage);
    memset(prog, 0, sizeof prog);
    uint64_t nchunks = (l->rows + step - 1) / step;
    int nbuf = nchunks > 1 ? 2 : 1;
    mf_status st = MF_OK;
    for (int i = 0; i < nbuf && st == MF_OK; i++) {
        st = mf_vk_buf_create(vk, cap, MF_VK_MEM_STAGING, &stage[i]);
        if (st == MF_OK)
            st = mf_vk_prog_init(vk, &prog[i], 0);
    }
    for (uint64_t c = 0; c < nchunks && st == MF_OK; c++) {
        int s = (int)(c % (uint64_t)nbuf);
        if (busy[s]) {
            st = wait(vk, &prog[s]);
            busy[s] = 0;
            if (st != MF_OK)
                break;
            /* chunk c - nbuf has landed */
            report(fn, user, (c - (uint64_t)nbuf + 1) * step, l->rows);
        }
        uint64_t r0 = c * step, r1 = r0 + step < l->rows ? r0 + step : l->rows;
        VkBufferCopy copies[3];
        uint32_t n = pack_chunk(t, l, r0, r1, stage[s].map, copies);
        st = mf_vk_status(vk, record_chunk(prog[s].cb, stage[s].buf,
                                           img->buf, copies, n));
        if (st == MF_OK)
            st = submit(vk, &prog[s]);
        if (st == MF_OK)
            busy[s] = 1;
    }
    /* Drain in submission order (also after an error: nothing may still
     * read the staging buffers when they are freed). */
    for (uint64_t c = nchunks > (uint64_t)nbuf ? nchunks - (uint64_t)nbuf : 0;
         c < nchunks; c++) {
        int s = (int)(c % (uint64_t)nbuf);
        if (!busy[s])
            continue;
        mf_status w = wait(vk, &prog[s]);
        busy[s] = 0;
        if (st == MF_OK)
            st = w;
        if (st == MF_OK)
            report(fn, user, (c + 1) * step, l->rows);
    }
    if (st != MF_OK && !vk->lost)
        vkQueueWaitIdle(vk->queue);
    for (int i = 0; i < 2; i++) {
        mf_vk_prog_free(vk, &prog[i]);
        mf_vk_buf_destroy(vk, &stage[i]);
    }
    return st;
}

uint64_t mf_wcache_part_bytes(const mf_gpu *g)
{
    uint64_t lim = g->vk.max_binding;
    if (g->quant && g->quant->part_bytes && g->quant->part_bytes < lim)
        lim = g->quant->part_bytes;
    return lim;
}

mf_status mf_gpu_part_bytes_set(mf_gpu *g, uint64_t bytes)
{
    if (bytes > 0 && bytes < 4096)
        return MF_ERR_INVALID_ARG;
    mf_gpu_quant *q = mf_gpu_quant_of(g);
    if (!q)
        return MF_ERR_OUT_OF_MEMORY;
    q->part_bytes = bytes;
    return MF_OK;
}

/* Rows [r0, r0 + rows) of t as a tensor of their own: whole experts
 * (by_expert: n divides r0 and rows) or rows of one. */
static mf_tensor sub_tensor(const mf_tensor *t, uint64_t r0, uint64_t rows,
                            uint64_t scale_row, int by_expert)
{
    mf_tensor s = *t;
    size_t stride = t->row_stride ? t->row_stride
                                  : mf_tensor_row_bytes(t->type, t->k);
    s.data = (const unsigned char *)t->data + (size_t)r0 * stride;
    if (t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8) {
        s.scales = (const unsigned char *)t->scales + (size_t)(r0 * scale_row);
        s.biases = (const unsigned char *)t->biases + (size_t)(r0 * scale_row);
    }
    if (by_expert) {
        s.e = (int64_t)(rows / (uint64_t)t->n);
    } else {
        s.e = 1;
        s.n = (int64_t)rows;
    }
    return s;
}

/* How t splits into parts of at most `limit` image bytes: units (experts,
 * or rows of a one-expert tensor) per part, the fewest parts, each as
 * large as the others but the last. 0 when it cannot. */
static int plan_parts(const mf_tensor *t, uint64_t limit, int *by_expert,
                      uint64_t *per_units)
{
    mf_wlayout one;
    mf_tensor t1 = *t;
    t1.e = 1;
    t1.n = 1;
    if (!mf_wlayout_of(&t1, &one))
        return 0;
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: whole experts; pass 1 (e = 1 only): whole rows */
        const int be = pass == 0;
        if (!be && t->e != 1)
            break;
        const uint64_t units = be ? (uint64_t)t->e : (uint64_t)t->n;
        const uint64_t unit_rows = be ? (uint64_t)t->n : 1;
        for (uint64_t np = 1; np <= MF_WPARTS_MAX && np <= units; np++) {
            uint64_t per = (units + np - 1) / np;
            mf_tensor s = sub_tensor(t, 0, per * unit_rows, one.scale_row, be);
            mf_wlayout l;
            if (mf_wlayout_of(&s, &l) && l.total <= limit) {
                *by_expert = be;
                *per_units = per;
                return 1;
            }
        }
    }
    return 0;
}

/* Upload progress over several parts: a part's fraction scaled to its
 * rows' share of the tensor (the last part's 1.0 is exactly 1.0). */
typedef struct part_progress {
    mf_progress_fn fn;
    void *user;
    uint64_t done, rows, total;
} part_progress;

static void part_report(void *u, double f)
{
    part_progress *pp = u;
    double at = (double)pp->done + f * (double)pp->rows;
    pp->fn(pp->user, pp->done + pp->rows >= pp->total && f >= 1.0
                         ? 1.0
                         : at / (double)pp->total);
}

/* Allocates and fills part p (its lay, rows and experts set). */
static mf_status upload_part(mf_gpu *g, const mf_tensor *s, mf_wpart *p,
                             mf_progress_fn fn, void *user)
{
    mf_vk *vk = &g->vk;
    int direct = vk->host_reads_device && vk->zero_copy &&
                 !g->quant->force_staged;
    mf_status st = alloc_image(g, (size_t)p->lay.total, direct, &p->buf);
    if (st == MF_ERR_UNSUPPORTED && direct) {
        direct = 0;
        st = alloc_image(g, (size_t)p->lay.total, 0, &p->buf);
    }
    if (st != MF_OK)
        return st;
    if (direct)
        upload_direct(s, &p->lay, &p->buf, g->quant->stage_bytes, fn, user);
    else
        st = upload_staged(g, s, &p->lay, &p->buf, fn, user);
    return st;
}

/* Uploads t into a new entry; whole: in one buffer (bias arrays, which
 * the shaders bind whole; the binding limit alone applies). */
static mf_status upload(mf_gpu *g, const mf_tensor *t, int pinned, int whole,
                        mf_progress_fn fn, void *user, mf_wres **out)
{
    mf_vk *vk = &g->vk;
    mf_wcache *c = &g->quant->wc;
    int by_expert;
    uint64_t per;
    if (!plan_parts(t, whole ? vk->max_binding : mf_wcache_part_bytes(g),
                    &by_expert, &per) ||
        (whole && !(by_expert && per == (uint64_t)t->e)))
        return MF_ERR_DEVICE_OOM;
    const uint64_t units = by_expert ? (uint64_t)t->e : (uint64_t)t->n;
    const uint64_t unit_rows = by_expert ? (uint64_t)t->n : 1;
    const uint64_t total_rows = (uint64_t)t->e * (uint64_t)t->n;
    const uint32_t np = (uint32_t)((units + per - 1) / per);
    mf_wres *e = calloc(1, sizeof *e);
    if (e)
        e->part = calloc(np, sizeof *e->part);
    if (!e || !e->part) {
        free(e);
        return MF_ERR_OUT_OF_MEMORY;
    }
    e->key = key_of(t);
    fingerprint(&e->key, e->fp);
    mf_status st = MF_OK;
    uint64_t scale_row = 0;
    for (uint32_t i = 0; i < np && st == MF_OK; i++) {
        mf_wpart *p = &e->part[i];
        const uint64_t u0 = (uint64_t)i * per;
        const uint64_t nu = units - u0 < per ? units - u0 : per;
        p->r0 = u0 * unit_rows;
        p->rows = nu * unit_rows;
        p->e0 = by_expert ? (uint32_t)u0 : 0;
        p->ne = by_expert ? (uint32_t)nu : 0;
        mf_tensor s = np == 1 ? *t
                              : sub_tensor(t, p->r0, p->rows, scale_row,
                                           by_expert);
        if (!mf_wlayout_of(&s, &p->lay)) {
            st = MF_ERR_DEVICE_OOM;
            break;
        }
        if (i == 0)
            scale_row = p->lay.scale_row;
        part_progress pp = {fn, user, p->r0, p->rows, total_rows};
        st = upload_part(g, &s, p, np > 1 && fn ? part_report : fn,
                         np > 1 && fn ? (void *)&pp : user);
        e->nparts = i + 1; /* its buffer (if any) is freed on error */
    }
    if (st != MF_OK) {
        free_parts(vk, e);
        return st;
    }
    e->lay = e->part[0].lay;
    e->id = c->next_id++;
    if (c->next_id == 0)
        c->next_id = 1;
    e->pinned = pinned;
    e->last_use = c->clock;
    unsigned b = bucket_of(e->key.data);
    e->next = c->bucket[b];
    c->bucket[b] = e;
    c->count++;
    c->uploads++;
    c->buffers += np;
    for (uint32_t i = 0; i < np; i++) {
        c->uploaded_bytes += e->part[i].lay.total;
        e->bytes += e->part[i].buf.size;
    }
    c->resident_bytes += e->bytes;
    *out = e;
    return MF_OK;
}

void mf_wcache_begin(mf_gpu *g)
{
    mf_gpu_quant *q = mf_gpu_quant_of(g);
    if (q)
        q->wc.clock++;
}

static mf_status get(mf_gpu *g, const mf_tensor *t, int whole,
                     const mf_wres **out)
{
    mf_gpu_quant *q = mf_gpu_quant_of(g);
    if (!q)
        return MF_ERR_OUT_OF_MEMORY;
    if (g->vk.lost)
        return MF_ERR_DEVICE_LOST;
    mf_wkey k = key_of(t);
    mf_wres *e = find(&q->wc, &k);
    if (e && !e->pinned) {
        unsigned char fp[32];
        fingerprint(&k, fp);
        if (memcmp(fp, e->fp, sizeof fp) != 0) {
            /* the memory now holds another tensor: the copy is stale */
            vkDeviceWaitIdle(g->vk.dev);
            destroy_entry(g, e);
            e = NULL;
        }
    }
    if (!e) {
        mf_status st = upload(g, t, 0, whole, NULL, NULL, &e);
        if (st != MF_OK)
            return st;
    }
    e->last_use = q->wc.clock;
    *out = e;
    return MF_OK;
}

mf_status mf_wcache_get_f32(mf_gpu *g, const float *p, int64_t n,
                            const mf_wres **out)
{
    mf_tensor t = mf_tensor_dense(MF_TYPE_F32, 1, 1, n, p);
    return get(g, &t, 1, out);
}

mf_status mf_wcache_get(mf_gpu *g, const mf_tensor *t, const mf_wres **out)
{
    return get(g, t, 0, out);
}

mf_status mf_gpu_weights_upload(mf_gpu *g, const mf_tensor *t,
                                mf_progress_fn progress, void *user)
{
    mf_gpu_quant *q = mf_gpu_quant_of(g);
    if (!q)
        return MF_ERR_OUT_OF_MEMORY;
    if (g->vk.lost)
        return MF_ERR_DEVICE_LOST;
    q->wc.clock++;
    mf_wkey k = key_of(t);
    mf_wres *e = find(&q->wc, &k);
    if (e) {
        e->pinned = 1;
        e->last_use = q->wc.clock;
        if (progress)
            progress(user, 1.0);
        return MF_OK;
    }
    return upload(g, t, 1, 0, progress, user, &e);
}

mf_status mf_gpu_weights_evict(mf_gpu *g, const mf_tensor *t)
{
    if (!g->quant)
        return MF_OK;
    mf_wcache *c = &g->quant->wc;
    vkDeviceWaitIdle(g->vk.dev);
    if (!t) {
        for (int b = 0; b < MF_WCACHE_BUCKETS; b++)
            while (c->bucket[b])
                destroy_entry(g, c->bucket[b]);
        return MF_OK;
    }
    mf_wkey k = key_of(t);
    mf_wres *e = find(c, &k);
    if (e)
        destroy_entry(g, e);
    return MF_OK;
}

static int in_range(const void *a, size_t na, const void *p, size_t bytes)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)p;
    return a && na && x < y + bytes && y < x + na;
}

/* Whether entry e reads any byte of [p, p + bytes). */
static int reads(const mf_wres *e, const void *p, size_t bytes)
{
    const mf_wkey *k = &e->key;
    size_t rows = (size_t)k->e * (size_t)k->n;
    if (in_range(k->data, code_span(k), p, bytes))
        return 1;
    if (k->type != MF_TYPE_MLX_Q4 && k->type != MF_TYPE_MLX_Q8)
        return 0;
    size_t sb = (size_t)(rows * e->lay.scale_row); /* the same in every part */
    return in_range(k->scales, sb, p, bytes) ||
           in_range(k->biases, sb, p, bytes);
}

mf_status mf_gpu_weights_evict_range(mf_gpu *g, const void *p, size_t bytes)
{
    if (!g->quant)
        return MF_OK;
    mf_wcache *c = &g->quant->wc;
    vkDeviceWaitIdle(g->vk.dev);
    for (int b = 0; b < MF_WCACHE_BUCKETS; b++) {
        mf_wres *r = c->bucket[b];
        while (r) {
            mf_wres *next = r->next;
            if (reads(r, p, bytes))
                destroy_entry(g, r);
            r = next;
        }
    }
    return MF_OK;
}

void mf_gpu_weights_stats(const mf_gpu *g, mf_weights_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!g || !g->quant)
        return;
    const mf_wcache *c = &g->quant->wc;
    out->tensors = c->count;
    out->resident_bytes = c->resident_bytes;
    out->uploads = c->uploads;
    out->uploaded_bytes = c->uploaded_bytes;
    out->evictions = c->evictions;
    out->buffers = c->buffers;
}

void mf_gpu_quant_free(mf_gpu *g)
{
    mf_gpu_quant *q = g->quant;
    if (!q)
        return;
    if (q->chains)
        mf_chain_plans_free(g, q->chains);
    q->chains = NULL;
    mf_wcache *c = &q->wc;
    for (int b = 0; b < MF_WCACHE_BUCKETS; b++)
        while (c->bucket[b]) {
            mf_wres *e = c->bucket[b];
            c->bucket[b] = e->next;
            free_parts(&g->vk, e);
        }
    free(q);
    g->quant = NULL;
}
