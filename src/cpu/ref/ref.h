/* The scalar reference kernels, one family per file. Each family file
 * defines its kernels and an mf_ref_init_<family> that puts them into a
 * table. Compiled without SIMD flags. */
#ifndef MF_CPU_REF_H
#define MF_CPU_REF_H

#include "../kernels.h"

void mf_ref_init_gating(mf_kernels *k);
void mf_ref_init_combine(mf_kernels *k);
void mf_ref_init_glu(mf_kernels *k);
void mf_ref_init_act(mf_kernels *k);
void mf_ref_init_quant(mf_kernels *k);

#endif
