/* Kernel tables, built once per ISA. */
#include "kernels.h"

#include <pthread.h>

#include "mf_config.h"

static mf_kernels tables[MF_ISA_COUNT_];
static int table_ok[MF_ISA_COUNT_];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void build(void)
{
    mf_kernels_init_ref(&tables[MF_ISA_SCALAR]);
    tables[MF_ISA_SCALAR].isa = MF_ISA_SCALAR;
    table_ok[MF_ISA_SCALAR] = 1;
#if MF_HAVE_AVX2
    tables[MF_ISA_AVX2] = tables[MF_ISA_SCALAR];
    mf_kernels_init_avx2(&tables[MF_ISA_AVX2]);
    tables[MF_ISA_AVX2].isa = MF_ISA_AVX2;
    table_ok[MF_ISA_AVX2] = 1;
#endif
#if MF_HAVE_AVX512
    /* AVX-512 machines have AVX2: start from that set, override. */
    tables[MF_ISA_AVX512] = table_ok[MF_ISA_AVX2] ? tables[MF_ISA_AVX2]
                                                  : tables[MF_ISA_SCALAR];
    mf_kernels_init_avx512(&tables[MF_ISA_AVX512]);
    tables[MF_ISA_AVX512].isa = MF_ISA_AVX512;
    table_ok[MF_ISA_AVX512] = 1;
#endif
#if MF_HAVE_NEON
    tables[MF_ISA_NEON] = tables[MF_ISA_SCALAR];
    mf_kernels_init_neon(&tables[MF_ISA_NEON]);
    tables[MF_ISA_NEON].isa = MF_ISA_NEON;
    table_ok[MF_ISA_NEON] = 1;
#endif
}

const mf_kernels *mf_kernels_get(mf_isa isa)
{
    if ((int)isa <= MF_ISA_AUTO || isa >= MF_ISA_COUNT_)
        return NULL;
    pthread_once(&once, build);
    return table_ok[isa] ? &tables[isa] : NULL;
}
