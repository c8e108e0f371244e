#include "ref.h"

void mf_kernels_init_ref(mf_kernels *k)
{
    *k = (mf_kernels){.isa = MF_ISA_SCALAR};
    mf_ref_init_quant(k);
}
