/* CHECK for the C test programs of tools/capi (one translation unit each): on a false condition, prints
 * the place, the condition and kvcache_last_error(), and counts a failure in `failures`. */
#ifndef KVCACHE_CAPI_CHECK_H
#define KVCACHE_CAPI_CHECK_H

#include <stdio.h>

#include "kvcache.h"

static int failures = 0;
#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, kvcache_last_error()); \
            failures++;                                                                \
        }                                                                              \
    } while (0)

#endif
