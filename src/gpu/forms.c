/* Kernel form names and their ops: shared by the Vulkan build and the
 * build without Vulkan (the placement cache names forms either way). */
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

static const struct {
    const char *name;
    mf_route_op op;
} forms[MF_GPU_FORM_COUNT_] = {
    [MF_GPU_FORM_GATING_RANK] = {"gating_rank", MF_ROUTE_GATING},
    [MF_GPU_FORM_GU_XSTAGE] = {"gu_xstage", MF_ROUTE_MOE_GATE_UP},
    [MF_GPU_FORM_GU_GROUP] = {"gu_group", MF_ROUTE_MOE_GATE_UP},
    [MF_GPU_FORM_DN_SLOTS] = {"dn_slots", MF_ROUTE_MOE_DOWN_COMBINE},
    [MF_GPU_FORM_DN_XSTAGE] = {"dn_xstage", MF_ROUTE_MOE_DOWN_COMBINE},
    [MF_GPU_FORM_QMV_XSTAGE] = {"qmv_xstage", MF_ROUTE_QMV},
};

void mf_gpu_forms_auto(mf_gpu_forms *f)
{
    memset(f->v, MF_GPU_FORM_AUTO, sizeof f->v);
}

const char *mf_gpu_form_name(int id)
{
    return id >= 0 && id < MF_GPU_FORM_COUNT_ ? forms[id].name : NULL;
}

int mf_gpu_form_parse(const char *name)
{
    for (int i = 0; name && i < MF_GPU_FORM_COUNT_; i++)
        if (strcmp(name, forms[i].name) == 0)
            return i;
    return -1;
}

int mf_gpu_form_op(int id)
{
    return id >= 0 && id < MF_GPU_FORM_COUNT_ ? (int)forms[id].op : -1;
}

int mf_gpu_form_env(int id)
{
    const char *e = NULL;
    switch (id) {
    case MF_GPU_FORM_GATING_RANK:
        e = getenv("MOEFUSE_GPU_GATING_RANK");
        break;
    case MF_GPU_FORM_GU_XSTAGE:
    case MF_GPU_FORM_DN_XSTAGE:
    case MF_GPU_FORM_QMV_XSTAGE:
        e = getenv("MOEFUSE_GPU_XSTAGE");
        break;
    case MF_GPU_FORM_GU_GROUP: {
        /* 0: per pair; a power of two up to 16: grouped with that M */
        e = getenv("MOEFUSE_GPU_MOE_GROUP");
        long v = e ? strtol(e, NULL, 10) : -1;
        if (e && strcmp(e, "0") == 0)
            return 0;
        return v >= 1 && v <= 16 && (v & (v - 1)) == 0 ? 1 : MF_GPU_FORM_AUTO;
    }
    case MF_GPU_FORM_DN_SLOTS:
        e = getenv("MOEFUSE_GPU_DN_SLOTS");
        break;
    default:
        return MF_GPU_FORM_AUTO;
    }
    if (e && strcmp(e, "0") == 0)
        return 0;
    if (e && strcmp(e, "1") == 0)
        return 1;
    return MF_GPU_FORM_AUTO;
}
