/* Synthetic placement caches for the dispatch tests: a made-up machine
 * (optionally with a GPU) whose CPU and GPU costs follow known formulas, so
 * decisions and crossovers are known in advance. */
#ifndef MFT_PLACEMENT_FIXTURE_H
#define MFT_PLACEMENT_FIXTURE_H

#include "src/dispatch/cache.h"

/* The made-up machine: "Fixture CPU", avx2, 4 threads, and when with_gpu one
 * GPU (vendor 0x10de, device 0x2330, uuid 00112233...). */
mf_fingerprint pcf_fingerprint(int with_gpu);

/* Synthetic costs in microseconds for a shape on a device, host inputs and
 * outputs included (the GPU: a 40 us submit + copies at 10 GB/s + the device
 * at 100x the CPU's rate), and the GPU's device-only part. */
double pcf_cpu_us(const mf_op_shape *s);
double pcf_gpu_us(const mf_op_shape *s);
double pcf_gpu_device_us(const mf_op_shape *s);
#define PCF_ROUNDTRIP_US 40.0
#define PCF_US_PER_BYTE 1e-4 /* 10 GB/s copies */

/* qmv q4_0 N=2048 K=768 and glu n=768 at T = 1, 2, 4, 8, 16, 32, 64 and
 * gating E=128 k=8 at T = 1, 4, 16 on the CPU (and the GPU when with_gpu),
 * GPU curves, models fitted by the profiler's fit; finished (sorted,
 * decisions derived). */
mf_placement *pcf_make(int with_gpu);

/* 1 when p satisfies every invariant a loaded cache must: ranges, order,
 * uniqueness, decisions equal to what the measurements give. */
int pcf_valid(const mf_placement *p);

/* Recomputes the checksum of a cache text in place (after an edit), when
 * the text still ends in a checksum member; returns 1 if it did. */
int pcf_resign(char *text, size_t len);

#endif
