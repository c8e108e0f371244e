/* The avx2 kernel set: each family file defines mf_avx2_init_<family>. */
#include "avx2.h"

void mf_kernels_init_avx2(mf_kernels *k)
{
    (void)k;
    mf_avx2_init_gating(k);
    mf_avx2_init_combine(k);
    mf_avx2_init_glu(k);
    mf_avx2_init_act(k);
    mf_avx2_init_quant(k);
}
