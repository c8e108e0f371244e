/* mf_glu on the device: not in this backend yet (the front door runs it
 * on the CPU; MF_IMPL_GPU gets MF_ERR_UNSUPPORTED). */
#include "gpu_internal.h"

mf_status mf_gpu_glu(mf_gpu *g, const mf_glu_desc *d, int64_t T, int64_t n,
                     const void *gate, const void *up, void *out)
{
    (void)g, (void)d, (void)T, (void)n, (void)gate, (void)up, (void)out;
    return MF_ERR_UNSUPPORTED;
}
