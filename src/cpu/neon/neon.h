/* neon kernel families. Only files of this directory include this header;
 * they are compiled with the neon flags. */
#ifndef MF_CPU_NEON_H
#define MF_CPU_NEON_H

#include "../kernels.h"

void mf_neon_init_gating(mf_kernels *k);
void mf_neon_init_combine(mf_kernels *k);
void mf_neon_init_glu(mf_kernels *k);
void mf_neon_init_act(mf_kernels *k);
void mf_neon_init_quant(mf_kernels *k);

#endif
