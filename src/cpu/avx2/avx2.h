/* avx2 kernel families. Only files of this directory include this header;
 * they are compiled with the avx2 flags. */
#ifndef MF_CPU_AVX2_H
#define MF_CPU_AVX2_H

#include "../kernels.h"

#endif
