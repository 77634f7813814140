#pragma once
// The streaming state's layout is needed only for its size: BlockHasher keeps one on the stack.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

/// sizeof(XXH3_state_t) of the libxxhash the package was built against.
static inline size_t kv_xxh3_state_size(void) { return sizeof(XXH3_state_t); }
