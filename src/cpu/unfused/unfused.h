/* Unfused baselines: the op sequences a plain C engine runs (separate passes,
 * full sorts, whole-matrix dequantization + OpenBLAS). Same functions as the
 * fused ops, other rounding; benchmarks compare against them and tests check
 * fused == unfused within tolerance. Single-threaded except where OpenBLAS
 * threads itself. Arguments arrive validated by the front door. One file per
 * op; each declares its entry here. */
#ifndef MF_CPU_UNFUSED_H
#define MF_CPU_UNFUSED_H

#include <moefuse/moefuse.h>

#endif
