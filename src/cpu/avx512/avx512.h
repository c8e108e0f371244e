/* avx512 kernel families. Only files of this directory include this header;
 * they are compiled with the avx512 flags. */
#ifndef MF_CPU_AVX512_H
#define MF_CPU_AVX512_H

#include "../kernels.h"

void mf_avx512_init_quant(mf_kernels *k);
void mf_avx512_init_gating(mf_kernels *k);
void mf_avx512_init_combine(mf_kernels *k);
void mf_avx512_init_glu(mf_kernels *k);
void mf_avx512_init_act(mf_kernels *k);

#endif
