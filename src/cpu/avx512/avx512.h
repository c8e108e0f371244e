/* avx512 kernel families. Only files of this directory include this header;
 * they are compiled with the avx512 flags. */
#ifndef MF_CPU_AVX512_H
#define MF_CPU_AVX512_H

#include "../kernels.h"

#endif
