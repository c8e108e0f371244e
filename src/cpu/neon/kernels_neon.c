/* The neon kernel set: each family file defines mf_neon_init_<family>. */
#include "neon.h"

void mf_kernels_init_neon(mf_kernels *k)
{
    (void)k;
    mf_neon_init_gating(k);
    mf_neon_init_combine(k);
    mf_neon_init_glu(k);
    mf_neon_init_act(k);
    mf_neon_init_quant(k);
}
