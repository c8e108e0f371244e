/* The avx512 kernel set: each family file defines mf_avx512_init_<family>. */
#include "avx512.h"

void mf_kernels_init_avx512(mf_kernels *k)
{
    (void)k;
    mf_avx512_init_quant(k);
    mf_avx512_init_gating(k);
    mf_avx512_init_combine(k);
    mf_avx512_init_glu(k);
    mf_avx512_init_act(k);
}
