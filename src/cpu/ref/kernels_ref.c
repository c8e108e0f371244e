#include "ref.h"

void mf_kernels_init_ref(mf_kernels *k)
{
    *k = (mf_kernels){.isa = MF_ISA_SCALAR};
    mf_ref_init_gating(k);
    mf_ref_init_quant(k);
    mf_ref_init_combine(k);
    mf_ref_init_glu(k);
    mf_ref_init_act(k);
}
