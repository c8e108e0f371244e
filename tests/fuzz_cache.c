/* libFuzzer entry for the placement cache parser (built with clang only,
 * see tests/meson.build; not part of the test suite). Its mutator re-signs
 * half of the mutants so that the checks behind the checksum are reached.
 *   ninja -C build fuzz_cache && build/tests/fuzz_cache -max_total_time=60
 * Start it from a real cache file as corpus for the best coverage. */
#include <stdint.h>
#include <stdlib.h>

#include "placement_fixture.h"

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mf_placement *p = NULL;
    mf_status st = mf_placement_parse((const char *)data, size, NULL, &p);
    if (st == MF_OK) {
        if (!pcf_valid(p))
            abort(); /* a loaded cache must satisfy every invariant */
        mf_placement_free(p);
    } else if (st != MF_ERR_CACHE_FORMAT && st != MF_ERR_CACHE_MISMATCH &&
               st != MF_ERR_OUT_OF_MEMORY) {
        abort();
    }
    return 0;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size,
                               unsigned int seed)
{
    if (size == 0 && max_size > 0) {
        /* Start from a valid synthetic cache. */
        size_t len;
        mf_placement *p = pcf_make(seed & 1);
        char *t = mf_placement_to_json(p, &len);
        mf_placement_free(p);
        if (t && len <= max_size) {
            for (size_t i = 0; i < len; i++)
                data[i] = (uint8_t)t[i];
            size = len;
        }
        free(t);
    }
    size = LLVMFuzzerMutate(data, size, max_size);
    if (seed & 2)
        pcf_resign((char *)data, size);
    return size;
}
