/* Expert grouping, call scratch and byte extents for the fused expert ops. */
#include "moe_plan.h"

#include <stdlib.h>

/* Up to this many pairs an insertion sort groups them (decode: T * k is a
 * few dozen); above, a counting sort over the E experts. */
#define SMALL_PAIRS 64

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

size_t mf_moe_groups_bytes(int64_t n_pairs, int64_t E)
{
    size_t n = (size_t)n_pairs;
    size_t u = (size_t)(n_pairs < E ? n_pairs : E);
    size_t b = round64(n * 4) + round64(u * 4) + round64((u + 1) * 4);
    if (n_pairs > SMALL_PAIRS)
        b += round64(((size_t)E + 1) * 4);
    return b;
}

void mf_moe_groups_build(const int32_t *idx, int64_t n_pairs, int64_t E,
                         void *mem, mf_moe_groups *g)
{
    size_t n = (size_t)n_pairs;
    size_t u = (size_t)(n_pairs < E ? n_pairs : E);
    unsigned char *m = mem;
    g->pair = (int32_t *)m;
    m += round64(n * 4);
    g->expert = (int32_t *)m;
    m += round64(u * 4);
    g->start = (int32_t *)m;
    m += round64((u + 1) * 4);

    int32_t *pair = g->pair;
    if (n_pairs <= SMALL_PAIRS) {
        /* Stable insertion sort of pair numbers by expert. */
        for (int32_t p = 0; p < (int32_t)n; p++) {
            int32_t q = p;
            while (q > 0 && idx[pair[q - 1]] > idx[p]) {
                pair[q] = pair[q - 1];
                q--;
            }
            pair[q] = p;
        }
    } else {
        /* Counting sort: count[e + 1] = pairs of expert e, prefix sums give
         * each expert's first slot; pairs placed in ascending order. */
        int32_t *count = (int32_t *)m;
        for (int64_t e = 0; e <= E; e++)
            count[e] = 0;
        for (size_t p = 0; p < n; p++)
            count[idx[p] + 1]++;
        for (int64_t e = 0; e < E; e++)
            count[e + 1] += count[e];
        for (size_t p = 0; p < n; p++)
            pair[count[idx[p]]++] = (int32_t)p;
    }
    int32_t ng = 0;
    for (int32_t i = 0; i < (int32_t)n; i++) {
        if (i == 0 || idx[pair[i]] != idx[pair[i - 1]]) {
            g->expert[ng] = idx[pair[i]];
            g->start[ng] = i;
            ng++;
        }
    }
    g->start[ng] = (int32_t)n;
    g->n_groups = ng;
}

void *mf_moe_take(mf_moe_carve *c, size_t bytes, int *ok)
{
    size_t r = round64(bytes);
    if (r < bytes || c->used + r < c->used) {
        *ok = 0;
        return NULL;
    }
    void *p = c->base ? c->base + c->used : NULL;
    c->used += r;
    return p;
}

void *mf_moe_scratch_get(size_t bytes, unsigned char *stack, void **heap)
{
    *heap = NULL;
    if (bytes <= MF_MOE_STACK_BYTES)
        return stack;
    if (bytes > SIZE_MAX - 64)
        return NULL;
    unsigned char *raw = malloc(bytes + 64);
    if (!raw)
        return NULL;
    *heap = raw;
    uintptr_t a = ((uintptr_t)raw + 63) & ~(uintptr_t)63;
    return raw + (a - (uintptr_t)raw);
}

void mf_moe_scratch_free(void *heap) { free(heap); }

static size_t scale_size(mf_type st) { return st == MF_TYPE_F32 ? 4 : 2; }

int mf_moe_tensor_overlaps(const mf_tensor *t, const void *p, size_t bytes)
{
    size_t rb = mf_tensor_row_bytes(t->type, t->k);
    size_t stride = t->row_stride ? t->row_stride : rb;
    size_t rows = (size_t)t->e * (size_t)t->n;
    if (mf_overlap(t->data, (rows - 1) * stride + rb, p, bytes))
        return 1;
    if (t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8) {
        size_t n = rows * (size_t)(t->k / t->group_size) *
                   scale_size(t->scale_type);
        if (mf_overlap(t->scales, n, p, bytes) ||
            mf_overlap(t->biases, n, p, bytes))
            return 1;
    }
    return 0;
}

size_t mf_moe_row_cost(const mf_tensor *t)
{
    size_t b = mf_tensor_row_bytes(t->type, t->k);
    if (t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8)
        b += 2 * (size_t)(t->k / t->group_size) * scale_size(t->scale_type);
    return b;
}

static void prefetch_span(const void *p, size_t n)
{
    const char *c = p;
    for (size_t o = 0; o < n; o += 64)
        __builtin_prefetch(c + o, 0, 3);
    __builtin_prefetch(c + n - 1, 0, 3);
}

size_t mf_moe_prefetch(const mf_moe_rows *r)
{
    const mf_tensor *t = r->w;
    size_t rb = mf_tensor_row_bytes(t->type, t->k);
    size_t stride = t->row_stride ? t->row_stride : rb;
    size_t nr = (size_t)r->nr;
    prefetch_span((const char *)t->data + (size_t)r->r0 * stride,
                  (nr - 1) * stride + rb);
    if (t->type == MF_TYPE_MLX_Q4 || t->type == MF_TYPE_MLX_Q8) {
        size_t gb = (size_t)(t->k / t->group_size) * scale_size(t->scale_type);
        prefetch_span((const char *)t->scales + (size_t)r->r0 * gb, nr * gb);
        prefetch_span((const char *)t->biases + (size_t)r->r0 * gb, nr * gb);
    }
    return nr * mf_moe_row_cost(t);
}

int mf_moe_idx_valid(const int32_t *idx, int64_t n, int64_t E)
{
    int ok = 1;
    for (int64_t i = 0; i < n; i++)
        ok &= idx[i] >= 0 && idx[i] < E;
    return ok;
}
