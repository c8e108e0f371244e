/* avx2 kernel families. Only files of this directory include this header;
 * they are compiled with the avx2 flags. */
#ifndef MF_CPU_AVX2_H
#define MF_CPU_AVX2_H

#include "../kernels.h"

void mf_avx2_init_gating(mf_kernels *k);
void mf_avx2_init_quant(mf_kernels *k);
void mf_avx2_init_combine(mf_kernels *k);
void mf_avx2_init_glu(mf_kernels *k);
void mf_avx2_init_act(mf_kernels *k);

#endif
