#pragma once
// xxHash compiled into each module that uses it (XXH_INLINE_ALL: every XXH_* function static inline from
// the system's xxhash.h), so nothing links libxxhash: libkvcache_c.so carries no run-time dependency on it.
// The streaming state's layout is needed only for its size: BlockHasher keeps one on the stack.
#define XXH_INLINE_ALL
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

// XXH_INLINE_ALL names the functions XXH_INLINE_* through macros, which Swift does not import: the ones
// the package calls, under their usual names.
#undef XXH3_64bits
#undef XXH3_128bits
#undef XXH3_128bits_reset
#undef XXH3_128bits_update
#undef XXH3_128bits_digest
static inline XXH64_hash_t XXH3_64bits(const void *data, size_t length) {
    return XXH_INLINE_XXH3_64bits(data, length);
}
static inline XXH128_hash_t XXH3_128bits(const void *data, size_t length) {
    return XXH_INLINE_XXH3_128bits(data, length);
}
static inline XXH_errorcode XXH3_128bits_reset(XXH3_state_t *state) { return XXH_INLINE_XXH3_128bits_reset(state); }
static inline XXH_errorcode XXH3_128bits_update(XXH3_state_t *state, const void *input, size_t length) {
    return XXH_INLINE_XXH3_128bits_update(state, input, length);
}
static inline XXH128_hash_t XXH3_128bits_digest(const XXH3_state_t *state) {
    return XXH_INLINE_XXH3_128bits_digest(state);
}

/// sizeof(XXH3_state_t) of the xxhash.h the package is built against.
static inline size_t kv_xxh3_state_size(void) { return sizeof(XXH3_state_t); }
