/* Names: version, status codes, types, impls, ISAs. */
#include <string.h>

#include "internal.h"

const char *mf_version(void) { return MF_VERSION_STRING; }

const char *mf_status_str(mf_status s)
{
    switch (s) {
    case MF_OK: return "ok";
    case MF_ERR_INVALID_ARG: return "invalid argument";
    case MF_ERR_UNSUPPORTED: return "unsupported";
    case MF_ERR_OUT_OF_MEMORY: return "out of memory";
    case MF_ERR_DEVICE: return "device error";
    case MF_ERR_DEVICE_LOST: return "device lost";
    case MF_ERR_DEVICE_OOM: return "out of device memory";
    case MF_ERR_IO: return "i/o error";
    case MF_ERR_CACHE_FORMAT: return "placement cache format error";
    case MF_ERR_CACHE_MISMATCH: return "placement cache from another machine or version";
    case MF_ERR_FILE_FORMAT: return "malformed file";
    case MF_STATUS_COUNT_: break;
    }
    return "unknown status";
}

static const char *const type_names[MF_TYPE_COUNT_] = {
    "f32", "f16", "bf16", "q4_0", "q8_0", "mlx_q4", "mlx_q8"};

const char *mf_type_name(mf_type t)
{
    return ((unsigned)t < MF_TYPE_COUNT_) ? type_names[t] : "?";
}

static const char *const impl_names[MF_IMPL_COUNT_] = {
    "auto", "ref", "unfused", "cpu", "scalar", "avx2", "avx512", "neon", "gpu"};

const char *mf_impl_name(mf_impl i)
{
    return ((unsigned)i < MF_IMPL_COUNT_) ? impl_names[i] : "?";
}

static const char *const isa_names[MF_ISA_COUNT_] = {
    "auto", "scalar", "avx2", "avx512", "neon"};

const char *mf_isa_name(mf_isa isa)
{
    return ((unsigned)isa < MF_ISA_COUNT_) ? isa_names[isa] : "?";
}

mf_status mf_isa_parse(const char *name, mf_isa *out)
{
    if (!name || !out)
        return MF_ERR_INVALID_ARG;
    for (int i = 0; i < MF_ISA_COUNT_; i++) {
        if (strcmp(name, isa_names[i]) == 0) {
            *out = (mf_isa)i;
            return MF_OK;
        }
    }
    return MF_ERR_INVALID_ARG;
}
