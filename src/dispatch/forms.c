/* Kernel forms (src/gpu/gpu.h): the ones the placement cache measured per
 * GPU shape bucket, and handing them to the GPU before its calls. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

_Static_assert((int)MF_OP_GATING == (int)MF_ROUTE_GATING &&
                   (int)MF_OP_QMV == (int)MF_ROUTE_QMV &&
                   (int)MF_OP_MOE_GATE_UP == (int)MF_ROUTE_MOE_GATE_UP &&
                   (int)MF_OP_MOE_DOWN == (int)MF_ROUTE_MOE_DOWN_COMBINE,
               "op ids follow the route op ids");

int mf_pc_form_pick(const double us[2])
{
    if (us[0] < (1 - MF_PC_FORM_MARGIN) * us[1])
        return 0;
    if (us[1] < (1 - MF_PC_FORM_MARGIN) * us[0])
        return 1;
    return MF_GPU_FORM_AUTO;
}

mf_status mf_placement_add_form(mf_placement *p, const mf_pc_form *f)
{
    if (mf_gpu_form_op(f->form) != (int)f->s.op)
        return MF_ERR_INVALID_ARG;
    if (p->n_forms == p->cap_forms) {
        size_t cap = p->cap_forms ? p->cap_forms * 2 : 32;
        mf_pc_form *nf = realloc(p->forms, cap * sizeof *nf);
        if (!nf)
            return MF_ERR_OUT_OF_MEMORY;
        p->forms = nf;
        p->cap_forms = cap;
    }
    mf_pc_form *d = &p->forms[p->n_forms++];
    *d = *f;
    d->s = mf_shape_bucket(&f->s);
    d->value = mf_pc_form_pick(f->us);
    return MF_OK;
}

static int cmp_form(const void *x, const void *y)
{
    const mf_pc_form *a = x, *b = y;
    int c = mf_shape_cmp(&a->s, &b->s);
    return c ? c : (a->form > b->form) - (a->form < b->form);
}

/* Insertion sort: stable, so that of duplicates the last added is the
 * last of its run (a profile adds a few hundred at most). */
void mf_placement_forms_finish(mf_placement *p)
{
    mf_pc_form *f = p->forms;
    for (size_t i = 1; i < p->n_forms; i++) {
        mf_pc_form x = f[i];
        size_t j = i;
        for (; j > 0 && cmp_form(&f[j - 1], &x) > 0; j--)
            f[j] = f[j - 1];
        f[j] = x;
    }
    size_t m = 0;
    for (size_t i = 0; i < p->n_forms; i++) {
        if (m && cmp_form(&f[m - 1], &f[i]) == 0)
            f[m - 1] = f[i];
        else
            f[m++] = f[i];
    }
    p->n_forms = m;
}

void mf_placement_forms(const mf_placement *p, const mf_op_shape *s,
                        mf_gpu_forms *out)
{
    mf_gpu_forms_auto(out);
    if (!p || !p->n_forms)
        return;
    const mf_op_shape b = mf_shape_bucket(s);
    /* the first entry of the bucket: binary search on the shape alone */
    size_t lo = 0, hi = p->n_forms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mf_shape_cmp(&p->forms[mid].s, &b) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < p->n_forms; i++) {
        const mf_pc_form *f = &p->forms[i];
        if (mf_shape_cmp(&f->s, &b) != 0)
            break;
        if (f->form >= 0 && f->form < MF_GPU_FORM_COUNT_)
            out->v[f->form] = (int8_t)f->value;
    }
}

void mf_ctx_gpu_forms_n(mf_ctx *ctx, const mf_op_shape *s, int n)
{
    if (!ctx->gpu)
        return;
    if (ctx->forms_forced) {
        mf_gpu_forms_use(ctx->gpu, &ctx->forms);
        return;
    }
    mf_gpu_forms all, one;
    mf_gpu_forms_auto(&all);
    for (int i = 0; i < n && ctx->placement; i++) {
        mf_placement_forms(ctx->placement, &s[i], &one);
        for (int f = 0; f < MF_GPU_FORM_COUNT_; f++)
            if (mf_gpu_form_op(f) == (int)s[i].op)
                all.v[f] = one.v[f];
    }
    mf_gpu_forms_use(ctx->gpu, &all);
}

void mf_ctx_gpu_forms(mf_ctx *ctx, const mf_op_shape *s)
{
    mf_ctx_gpu_forms_n(ctx, s, 1);
}
