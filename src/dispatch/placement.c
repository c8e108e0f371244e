/* The placement cache in memory: shape keys, points, decisions. */
#include <stdlib.h>
#include <string.h>

#include "cache.h"

static const char *const op_names[MF_OP_COUNT_] = {
    "gating", "combine", "glu", "dequant_act", "qmv", "moe_gate_up",
    "moe_down_combine"};

const char *mf_op_name(int op)
{
    return (op >= 0 && op < MF_OP_COUNT_) ? op_names[op] : "?";
}

int mf_op_parse(const char *name)
{
    for (int i = 0; i < MF_OP_COUNT_; i++)
        if (strcmp(name, op_names[i]) == 0)
            return i;
    return -1;
}

static int cmp64(int64_t a, int64_t b) { return (a > b) - (a < b); }

int mf_shape_cmp(const mf_op_shape *a, const mf_op_shape *b)
{
    int c;
    if ((c = cmp64(a->op, b->op)) || (c = cmp64(a->mode, b->mode)) ||
        (c = cmp64(a->wtype, b->wtype)) || (c = cmp64(a->E, b->E)) ||
        (c = cmp64(a->k, b->k)) || (c = cmp64(a->N, b->N)) ||
        (c = cmp64(a->K, b->K)))
        return c;
    return cmp64(a->T, b->T);
}

mf_op_shape mf_shape_bucket(const mf_op_shape *s)
{
    mf_op_shape b = *s;
    if (b.T < 1)
        b.T = 1;
    if (b.T > 32) {
        int64_t p = 64;
        while (p < b.T)
            p *= 2;
        b.T = p;
    }
    return b;
}

static int cmp_point(const void *x, const void *y)
{
    const mf_pc_point *a = x, *b = y;
    int c = mf_shape_cmp(&a->s, &b->s);
    return c ? c : cmp64(a->dev, b->dev);
}

mf_status mf_placement_add_point(mf_placement *p, const mf_pc_point *pt)
{
    size_t n = p->n_pts;
    if (n == p->cap_pts) {
        size_t cap = n ? n * 2 : 64;
        mf_pc_point *np = realloc(p->pts, cap * sizeof *np);
        if (!np)
            return MF_ERR_OUT_OF_MEMORY;
        p->pts = np;
        p->cap_pts = cap;
    }
    p->pts[n] = *pt;
    p->pts[n].s = mf_shape_bucket(&pt->s);
    p->n_pts = n + 1;
    return MF_OK;
}

typedef struct tagged {
    mf_pc_point pt;
    size_t pos;
} tagged;

static int cmp_tagged(const void *x, const void *y)
{
    const tagged *a = x, *b = y;
    int c = cmp_point(&a->pt, &b->pt);
    return c ? c : (a->pos > b->pos) - (a->pos < b->pos);
}

mf_status mf_placement_finish(mf_placement *p)
{
    /* Sort by (key, position added) so that of duplicates the last added
     * one is kept. */
    size_t n = p->n_pts, m = 0;
    tagged *t = NULL;
    if (n) {
        t = malloc(n * sizeof *t);
        if (!t)
            return MF_ERR_OUT_OF_MEMORY;
        for (size_t i = 0; i < n; i++)
            t[i] = (tagged){.pt = p->pts[i], .pos = i};
        qsort(t, n, sizeof *t, cmp_tagged);
        for (size_t i = 0; i < n; i++) {
            if (m && cmp_point(&p->pts[m - 1], &t[i].pt) == 0)
                p->pts[m - 1] = t[i].pt;
            else
                p->pts[m++] = t[i].pt;
        }
        free(t);
    }
    p->n_pts = m;
    mf_placement_forms_finish(p);

    /* Decisions: every shape measured on the CPU. */
    free(p->dec);
    p->dec = NULL;
    p->n_dec = 0;
    if (!m)
        return MF_OK;
    p->dec = malloc(m * sizeof *p->dec);
    if (!p->dec)
        return MF_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < m; i++) {
        const mf_pc_point *pt = &p->pts[i];
        if (pt->dev != MF_DEVICE_CPU)
            continue;
        mf_pc_decision d = {.s = pt->s, .dev = MF_DEVICE_CPU,
                            .cpu_us = pt->median_us, .gpu_us = -1};
        if (i + 1 < m && p->pts[i + 1].dev == MF_DEVICE_GPU &&
            mf_shape_cmp(&p->pts[i + 1].s, &pt->s) == 0) {
            d.gpu_us = p->pts[i + 1].median_us;
            if (d.gpu_us < d.cpu_us)
                d.dev = MF_DEVICE_GPU;
        }
        p->dec[p->n_dec++] = d;
    }
    return MF_OK;
}

const mf_pc_point *mf_placement_find(const mf_placement *p,
                                     const mf_op_shape *s, int dev)
{
    if (!p || !p->n_pts)
        return NULL;
    mf_pc_point key = {.s = mf_shape_bucket(s), .dev = dev};
    return bsearch(&key, p->pts, p->n_pts, sizeof key, cmp_point);
}

static int cmp_dec(const void *x, const void *y)
{
    const mf_pc_decision *a = x, *b = y;
    return mf_shape_cmp(&a->s, &b->s);
}

const mf_pc_decision *mf_placement_decision(const mf_placement *p,
                                            const mf_op_shape *s)
{
    if (!p || !p->n_dec)
        return NULL;
    mf_pc_decision key = {.s = mf_shape_bucket(s)};
    return bsearch(&key, p->dec, p->n_dec, sizeof key, cmp_dec);
}

void mf_placement_free(mf_placement *p)
{
    if (!p)
        return;
    free(p->pts);
    free(p->models);
    free(p->dec);
    free(p->forms);
    free(p);
}
