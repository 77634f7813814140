/*
 * Compile-time checks that the structs of kvcache.h have the layout the documentation and the Python
 * example (tools/capi/example.py) rely on, on every 64-bit platform. The functions themselves are
 * implemented in Swift (Sources/KVCacheC).
 */
#include "kvcache.h"

#include <stddef.h>

_Static_assert(sizeof(kvcache_key) == 16 && offsetof(kvcache_key, hi) == 8, "kvcache_key layout");
_Static_assert(sizeof(kvcache_block_copy) == 8, "kvcache_block_copy layout");
_Static_assert(sizeof(kvcache_prefix_hit) == 16, "kvcache_prefix_hit layout");
_Static_assert(sizeof(kvcache_allocation) == 24, "kvcache_allocation layout");
_Static_assert(sizeof(kvcache_multimodal_item) == 32, "kvcache_multimodal_item layout");
_Static_assert(sizeof(kvcache_stats) == 11 * 8 + 2 * 8, "kvcache_stats layout");
_Static_assert(offsetof(kvcache_config, key_namespace) == 16 &&
                   offsetof(kvcache_config, recompute_seconds_per_token) == 32 && sizeof(kvcache_config) == 48,
               "kvcache_config layout");
_Static_assert(offsetof(kvcache_event, parent) == 16 && offsetof(kvcache_event, first_key) == 40 &&
                   sizeof(kvcache_event) == 56,
               "kvcache_event layout");
_Static_assert(sizeof(kvcache_tier_admission) == 6 * 8 && offsetof(kvcache_tier_admission, host_blocks) == 24,
               "kvcache_tier_admission layout");
