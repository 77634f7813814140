/*
 * kvcache.h - the C ABI of swift-kvcache's KVCacheManager, for C, C++ and Python (ctypes) servers.
 *
 * Link with -lkvcache_c (libkvcache_c.so.KVCACHE_ABI_VERSION, installed by `tools/install.sh PREFIX`;
 * `pkg-config --cflags --libs kvcache`). See docs/C_API.md for building, versioning, linking and a
 * minimal serving loop.
 *
 * Conventions
 *   - Every function that can fail returns a kvcache_status; KVCACHE_OK (0) is success. Results
 *     come back through out-parameters, which must not be NULL unless the function says so.
 *   - A call that fails changes nothing: neither the cache nor the caller's out-parameters, except
 *     the lengths that KVCACHE_ERR_BUFFER_TOO_SMALL and KVCACHE_ERR_INSUFFICIENT_BLOCKS report.
 *   - No call traps on bad input (NULL handle or pointer, negative count, unknown sequence, ...): it
 *     returns a status, and kvcache_last_error() says what was wrong in words. A live handle of
 *     another kind (a kvcache_t passed where a kvcache_tiers_t or kvcache_hybrid_t is expected, or
 *     the other way round) is refused with INVALID_ARGUMENT. A handle that was already destroyed is
 *     not detected (as with free()).
 *   - Counts of tokens are int64_t so that a negative one is reported, not misread; lengths of
 *     caller arrays and buffers are size_t (one above PTRDIFF_MAX is KVCACHE_ERR_INVALID_ARGUMENT).
 *   - Strings are NUL-terminated UTF-8 and are copied or hashed during the call; NULL means "".
 *
 * Threading
 *   A handle is single-threaded, like the scheduler loop of vLLM or SGLang: never call two functions
 *   on the same handle at once (a handle may move between threads with the caller's own
 *   synchronisation). Distinct handles share nothing and may be used from different threads at the
 *   same time. kvcache_version, kvcache_version_string, kvcache_abi_version, kvcache_status_name and
 *   kvcache_last_error may be called from any thread at any time; the last error is kept per thread.
 *
 * Allocation
 *   The hot calls (lookup, allocate, commit, append, free, block_table, computed_tokens,
 *   drain_copies, stats) allocate nothing in steady state (measured: tools/capi/bench.c); adding a
 *   sequence allocates only while the handle's buffers grow, for multimodal items, and for salt or
 *   lora strings longer than 15 bytes.
 */
#ifndef KVCACHE_H
#define KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* MARK: Version */

/* The release version of the library and this header (semantic versioning). */
#define KVCACHE_VERSION_MAJOR 0
#define KVCACHE_VERSION_MINOR 3
#define KVCACHE_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH of this header; compare with kvcache_version(). */
#define KVCACHE_VERSION_NUMBER \
    (KVCACHE_VERSION_MAJOR * 10000 + KVCACHE_VERSION_MINOR * 100 + KVCACHE_VERSION_PATCH)

/** The ABI this header describes: raised whenever a declaration, a struct layout or an enum value
 *  changes incompatibly (adding functions, statuses or enum values is compatible). It is the number
 *  in the library's SONAME, libkvcache_c.so.KVCACHE_ABI_VERSION, and kvcache_create checks it. */
#define KVCACHE_ABI_VERSION 1

/** The library's version number, in the form of KVCACHE_VERSION_NUMBER. O(1); any thread. */
uint32_t kvcache_version(void);

/** The library's version as text, "MAJOR.MINOR.PATCH" (what `kvcache --version` prints). Static
 *  storage; never NULL. O(1); any thread. */
const char *kvcache_version_string(void);

/** The library's ABI version: a caller compiled against a header whose KVCACHE_ABI_VERSION differs
 *  must not use it (kvcache_create refuses it). O(1); any thread. */
uint32_t kvcache_abi_version(void);

/* MARK: Statuses */

/** The result of every fallible call: one of enum kvcache_status_code. */
typedef int32_t kvcache_status;

enum kvcache_status_code {
    KVCACHE_OK = 0,
    /** The handle argument is NULL. */
    KVCACHE_ERR_NULL_HANDLE = 1,
    /** A required pointer argument (out-parameter, array with a non-zero length) is NULL. */
    KVCACHE_ERR_NULL_POINTER = 2,
    /** An argument is out of its documented range (negative count, bad config, invalid UTF-8,
     *  more new tokens than are not computed, lookup after allocate, ...). */
    KVCACHE_ERR_INVALID_ARGUMENT = 3,
    /** The sequence id was never added, or was already freed. */
    KVCACHE_ERR_UNKNOWN_SEQUENCE = 4,
    /** add_sequence or fork named a sequence id that is live. */
    KVCACHE_ERR_DUPLICATE_SEQUENCE = 5,
    /** allocate: the pool cannot supply the blocks now; needed and available are reported. */
    KVCACHE_ERR_INSUFFICIENT_BLOCKS = 6,
    /** reset while sequences still hold blocks. */
    KVCACHE_ERR_BLOCKS_IN_USE = 7,
    /** A caller buffer is too short; the length it needs is reported, nothing was consumed. */
    KVCACHE_ERR_BUFFER_TOO_SMALL = 8,
    /** A block id outside 0..capacity-1 (the pool's own misuse statuses, never expected from the
     *  sequence-level calls of this header; kept so every library error has a status). */
    KVCACHE_ERR_INVALID_BLOCK = 9,
    /** A block freed twice (pool misuse, see above). */
    KVCACHE_ERR_DOUBLE_FREE = 10,
    /** A block freed while it still has holders (pool misuse, see above). */
    KVCACHE_ERR_BLOCK_STILL_REFERENCED = 11,
    /** A block released that nobody holds (pool misuse, see above). */
    KVCACHE_ERR_BLOCK_NOT_REFERENCED = 12,
    /** validate found a broken internal invariant (a library bug: please report it). */
    KVCACHE_ERR_INVARIANT_VIOLATION = 13,
    /** create: the pool's index would not fit in memory (see kvcache_create); nothing allocated. */
    KVCACHE_ERR_OUT_OF_MEMORY = 14,
};

/** Tokens one sequence may hold at most (prompt plus appended). A count above it is refused with
 *  INVALID_ARGUMENT before the array it describes is read. */
#define KVCACHE_MAX_SEQUENCE_TOKENS ((int64_t)1 << 48)

/** The constant's name, e.g. "KVCACHE_ERR_UNKNOWN_SEQUENCE" ("KVCACHE_STATUS_UNKNOWN" for a value
 *  that is not a status). Static storage; never NULL. O(1); any thread. */
const char *kvcache_status_name(kvcache_status status);

/** A readable sentence about the calling thread's most recent failed call, e.g.
 *  "kvcache_allocate: need 5 blocks, 3 available"; "" if none failed yet. Successful calls do not
 *  clear it (like errno). The text stays valid until the next failed call on this thread.
 *  Never NULL. O(length of the message); any thread. */
const char *kvcache_last_error(void);

/* MARK: Types */

/** An open cache: a KV block pool with its prefix cache and live sequences. Opaque. */
typedef struct kvcache kvcache_t;

/** A sequence (request, or one sample of a forked request) as the server names it. */
typedef int64_t kvcache_seq_id;

/** A block's index in the pool, dense in 0..capacity_blocks-1: copy block tables straight into the
 *  engine's block-table tensor. */
typedef int32_t kvcache_block_id;

/** A 128-bit block key: the chained XXH3-128 hash of a full block and every token before it (see
 *  docs/BLOCK_KEYS.md). Same halves as XXH128_hash_t. The all-zero key is reserved. */
typedef struct kvcache_key {
    uint64_t lo;
    uint64_t hi;
} kvcache_key;

/** Eviction order of cached blocks nobody holds. */
enum kvcache_eviction_policy {
    KVCACHE_EVICTION_LRU = 0,  /**< least recently used (ties: deepest first) */
    KVCACHE_EVICTION_FIFO = 1, /**< first cached, first evicted */
    KVCACHE_EVICTION_LFU = 2,  /**< least frequently used */
    KVCACHE_EVICTION_PGDSF = 3, /**< RAGCache's prefix-aware greedy-dual-size-frequency: clock +
                                     hits x recompute cost (deeper blocks cost more) / size */
    KVCACHE_EVICTION_PROBATION = 4, /**< a key's first use on probation (evicted before keys seen
                                         before), returning keys protected for 3 pool-fulls of
                                         publications (S3-FIFO with TinyLFU's memory) */
    KVCACHE_EVICTION_PGDSF_PROBATION = 5, /**< PGDSF whose first use of a key counts 0.25 in the
                                               frequency; needs the recompute cost as PGDSF does */
    KVCACHE_EVICTION_MARKING = 6, /**< a marking algorithm choosing among unmarked blocks by an
                                       online reuse predictor (paging with predictions) */
};

/** How to build a cache. Fill it with kvcache_config_init, then change what you need. */
typedef struct kvcache_config {
    /** Tokens per block, 1...1024 (default 16). */
    int64_t block_tokens;
    /** Blocks in the device pool, 1...INT32_MAX (no default: set it). */
    int64_t capacity_blocks;
    /** Model id mixed into every key, so caches of different models never match (NULL: ""). */
    const char *key_namespace;
    /** One of enum kvcache_eviction_policy (default LRU). */
    int32_t eviction_policy;
    /** When false nothing is cached: lookups miss, full blocks are not published (default true). */
    bool enable_prefix_caching;
    /** Keep an event log for kvcache_drain_events (default false). */
    bool record_events;
    /** PGDSF's (and PGDSF_PROBATION's) recompute cost: seconds per recomputed token (linear layers)
     *  and per query-key pair attention visits; only their ratio changes the eviction order. The
     *  library knows no model, so the defaults are 0 and 0, meaning "not given": both then refuse to be
     *  created
     *  (KVCACHE_ERR_INVALID_ARGUMENT). For Llama-3-8B on one H100: 2.706e-5 and 1.325e-9. Both finite
     *  and >= 0. Ignored by the other policies. */
    double recompute_seconds_per_token;
    double recompute_seconds_per_context_pair;
} kvcache_config;

/** A multimodal item (image, audio) inside a prompt: its content hash is mixed into the keys of the
 *  blocks covering tokens [start, start + length), so equal placeholder tokens with different
 *  images never share a block. */
typedef struct kvcache_multimodal_item {
    kvcache_key hash;
    int64_t start;
    int64_t length;
} kvcache_multimodal_item;

/** The longest cached prefix of a prompt. */
typedef struct kvcache_prefix_hit {
    /** Leading prompt blocks found in the cache. */
    int64_t cached_blocks;
    /** Prompt tokens whose KV need not be computed (never the last prompt token). */
    int64_t cached_tokens;
} kvcache_prefix_hit;

/** The outcome of kvcache_allocate. */
typedef struct kvcache_allocation {
    /** KVCACHE_OK: blocks taken from the pool by this call (copy-on-write copies included). */
    int64_t new_blocks;
    /** KVCACHE_ERR_INSUFFICIENT_BLOCKS: blocks the call needed and blocks it could have had. */
    int64_t needed_blocks;
    int64_t available_blocks;
} kvcache_allocation;

/** A block copy the engine must perform before its next step (copy-on-write after a fork). */
typedef struct kvcache_block_copy {
    kvcache_block_id src;
    kvcache_block_id dst;
} kvcache_block_copy;

/** Counters of a cache. */
typedef struct kvcache_stats {
    int64_t capacity_blocks;
    /** Blocks with at least one holder. */
    int64_t used_blocks;
    /** Blocks in the prefix cache (held or not). */
    int64_t cached_blocks;
    /** Blocks on the free list (never cached, or evicted). */
    int64_t free_blocks;
    /** lookup calls, the prompt tokens they asked about and those found cached. */
    int64_t lookups;
    int64_t query_tokens;
    int64_t hit_tokens;
    /** Blocks published, reused instead of a duplicate, evicted, copied on write. */
    int64_t inserted_blocks;
    int64_t deduplicated_blocks;
    int64_t evicted_blocks;
    int64_t copied_blocks;
    /** used_blocks / capacity_blocks, and hit_tokens / query_tokens (0 when nothing was asked). */
    double usage;
    double hit_rate;
} kvcache_stats;

/** Kinds of kvcache_event (the shape of vLLM's KV events, for routers). */
enum kvcache_event_kind {
    KVCACHE_EVENT_BLOCK_STORED = 0,       /**< keys published to a tier, in chain order */
    KVCACHE_EVENT_BLOCK_REMOVED = 1,      /**< keys that left a tier */
    KVCACHE_EVENT_ALL_BLOCKS_CLEARED = 2, /**< every block of the cache dropped (reset) */
};

/** Where a copy of a block lives. */
enum kvcache_tier {
    KVCACHE_TIER_DEVICE = 0,
    KVCACHE_TIER_HOST = 1,
    KVCACHE_TIER_DISK = 2,
    KVCACHE_TIER_REMOTE = 3,
};

/** One KV event. Its keys are keys[first_key ..< first_key + key_count] of the key buffer passed to
 *  the same kvcache_drain_events call. */
typedef struct kvcache_event {
    /** One of enum kvcache_event_kind. */
    int32_t kind;
    /** One of enum kvcache_tier (DEVICE for ALL_BLOCKS_CLEARED). */
    int32_t tier;
    /** BLOCK_STORED: tokens per block; 0 otherwise. */
    int64_t block_tokens;
    /** BLOCK_STORED: the first key's parent, valid when has_parent (false for a first block). */
    kvcache_key parent;
    bool has_parent;
    size_t first_key;
    size_t key_count;
} kvcache_event;

/* MARK: Lifecycle */

/** Fills `config` with the defaults (block_tokens 16, capacity_blocks 0, LRU, prefix caching on,
 *  no events, empty namespace). O(1). */
kvcache_status kvcache_config_init(kvcache_config *config);

/** Opens a cache: allocates its pool and index, O(capacity_blocks) time and memory.
 *  On KVCACHE_OK *out is a new handle owned by the caller (release it with kvcache_destroy).
 *  Statuses: NULL_POINTER, INVALID_ARGUMENT (block_tokens, capacity_blocks, eviction_policy, a
 *  recompute cost that is negative or not finite, a namespace that is not UTF-8), OUT_OF_MEMORY
 *  (capacity_blocks x KVCACHE_INDEX_BYTES_PER_BLOCK above half of the smaller of physical memory and
 *  the address-space limit, RLIMIT_AS: refused before anything is allocated). */
kvcache_status kvcache_create(const kvcache_config *config, kvcache_t **out);

/** kvcache_create after checking that the caller was compiled against this library's ABI:
 *  `abi_version` must be kvcache_abi_version() and `config_size` the library's
 *  sizeof(kvcache_config), else INVALID_ARGUMENT and nothing is allocated (a header of another ABI
 *  would have the library misread the config). Every C and C++ caller goes through it: the macro
 *  below passes the header's own KVCACHE_ABI_VERSION and sizeof(kvcache_config). Binaries compiled
 *  before it existed call kvcache_create unchecked and keep working; bindings that load the library
 *  at run time (ctypes, cffi) call this function with the ABI version they were written for.
 *  Statuses: those of kvcache_create. */
kvcache_status kvcache_create_checked(uint32_t abi_version, size_t config_size, const kvcache_config *config,
                                      kvcache_t **out);
#define kvcache_create(config, out) \
    kvcache_create_checked(KVCACHE_ABI_VERSION, sizeof(kvcache_config), (config), (out))

/** Bytes of index, pool and policy state per block that kvcache_create reserves (an upper bound)
 *  with LRU, FIFO, LFU and PGDSF; PROBATION and PGDSF_PROBATION add their frequency sketch,
 *  KVCACHE_POLICY_SKETCH_BYTES_PER_BLOCK, and MARKING that and its predictor's table,
 *  KVCACHE_POLICY_PREDICTOR_BYTES_PER_BLOCK (the OUT_OF_MEMORY check counts them). */
#define KVCACHE_INDEX_BYTES_PER_BLOCK 128
#define KVCACHE_POLICY_SKETCH_BYTES_PER_BLOCK 520
#define KVCACHE_POLICY_PREDICTOR_BYTES_PER_BLOCK 960

/** Releases a handle and everything it owns; the handle must not be used again. O(capacity).
 *  Statuses: NULL_HANDLE (nothing done). */
kvcache_status kvcache_destroy(kvcache_t *cache);

/* MARK: Configuration from the environment or a file */

/*
 * A cache opened from its settings rather than a kvcache_config: KVCACHE_* environment variables and
 * a YAML file (docs/CONFIGURATION.md lists every key: KVCACHE_CAPACITY_BLOCKS, KVCACHE_POLICY,
 * KVCACHE_FIRST_USE_WEIGHT, ...; in the file capacity_blocks:, policy:, ...). A variable overrides the
 * file's key, the file overrides the default. These calls also validate the file's tiers: and events:
 * sections, which configure the tier manager (kvcache_tiers_create_from_config opens it) and the event
 * publisher of the embedding server.
 * Every bad key fails the call with INVALID_ARGUMENT, and kvcache_last_error names the key, its
 * variable and the value, e.g. "kvcache_create_from_env: invalid argument: configuration key
 * tiers.host_blocks (KVCACHE_TIERS_HOST_BLOCKS): must be in 0...2147483647, got -3".
 */

/** Opens a cache from the KVCACHE_* variables of the process environment, over the YAML file that
 *  KVCACHE_CONFIG_FILE names (if set). KVCACHE_CAPACITY_BLOCKS (or capacity_blocks:) is required.
 *  Statuses: NULL_POINTER (out), INVALID_ARGUMENT (a key out of range, of the wrong type or missing;
 *  the file unreadable or not a YAML mapping), OUT_OF_MEMORY as kvcache_create, CONFIG_LIBRARY
 *  (libkvcache_config.so could not be loaded: see kvcache_events_open_from_config). The cache records its
 *  events when record_events or events.enabled is set. */
kvcache_status kvcache_create_from_env(kvcache_t **out);

/** Opens a cache from the YAML file at `path` (UTF-8), the environment's KVCACHE_* variables
 *  overriding its keys. Statuses: NULL_POINTER (path, out), those of kvcache_create_from_env. */
kvcache_status kvcache_create_from_file(const char *path, kvcache_t **out);

/* MARK: Events to a ZMQ subscriber, from the configuration */

/*
 * The event publisher of the events: section (docs/CONFIGURATION.md: events.enabled, events.endpoint,
 * events.replay_endpoint, events.topic, events.buffer_steps, events.hwm, events.data_parallel_rank):
 * batches of the cache's events, vLLM's msgpack KVEventBatch over a ZMQ PUB socket with a replay
 * socket, so a router written for vLLM subscribes unchanged (docs/EVENTS.md). A cache opened from the
 * same configuration records its events when events.enabled is set.
 *
 * The configuration calls (kvcache_create_from_env, kvcache_create_from_file,
 * kvcache_tiers_create_from_config, kvcache_events_open_from_config) are implemented by
 * libkvcache_config.so (Foundation, swift-configuration, Yams, libzmq), which this library opens with
 * dlopen on the first such call: the file that KVCACHE_CONFIG_LIBRARY names, else
 * libkvcache_config.so.<ABI> next to this library. When it cannot be loaded they fail with
 * KVCACHE_ERR_CONFIG_LIBRARY and kvcache_last_error names the files tried and the loader's reason; the
 * rest of this header never needs it.
 */
enum kvcache_config_status_code {
    /** libkvcache_config.so could not be loaded (missing, unreadable, of another interface). */
    KVCACHE_ERR_CONFIG_LIBRARY = 16,
};

/** An event publisher (kvcache_events_open_from_config). One caller thread at a time, with its cache. */
typedef struct kvcache_events kvcache_events_t;

/** Opens the publisher that the events: section describes, read from the YAML file at `path` (UTF-8)
 *  with the KVCACHE_* variables over it as kvcache_create_from_file does, or, when `path` is NULL, from
 *  the environment as kvcache_create_from_env does; it publishes the events of `cache` (which must
 *  record them: open it from the same configuration, or with record_events). On KVCACHE_OK *out is a new
 *  handle owned by the caller (kvcache_events_close), or NULL when events.enabled is false. The
 *  publisher keeps `cache` alive until it is closed.
 *  Statuses: NULL_HANDLE (cache), NULL_POINTER (out), INVALID_ARGUMENT (a bad key, named as by
 *  kvcache_create_from_env; an address that cannot be bound, named as events.endpoint or
 *  events.replay_endpoint with libzmq's reason), CONFIG_LIBRARY. */
kvcache_status kvcache_events_open_from_config(kvcache_t *cache, const char *path, kvcache_events_t **out);

/** Drains the cache's events, then those of the tiers added (kvcache_events_add_tiers), so that
 *  kvcache_drain_events and kvcache_tiers_take_events find none of them, and queues them as one batch
 *  stamped now; the publisher's thread encodes and sends it. *sequence (may be NULL) is the
 *  batch's sequence number, or -1 when there was nothing to publish. Call it once per scheduler step.
 *  O(events + keys); allocates only as the batch's events are rebuilt.
 *  Statuses: NULL_HANDLE, INVALID_ARGUMENT (a handle of another kind). */
kvcache_status kvcache_events_publish(kvcache_events_t *events, int64_t *sequence);

/** Publishes what is pending, sends what is queued, closes the sockets and releases the handle (and its
 *  reference to the cache); the handle must not be used again. Statuses: NULL_HANDLE. */
kvcache_status kvcache_events_close(kvcache_events_t *events);

/* MARK: Sequences */

/** Registers a sequence by its prompt token ids and keys its full blocks, chained from the root of
 *  (namespace, lora, salt). `items` (may be NULL when n_items is 0) are multimodal spans.
 *  O(n_tokens). Statuses: NULL_HANDLE, NULL_POINTER, DUPLICATE_SEQUENCE, INVALID_ARGUMENT (no
 *  tokens, n_tokens above KVCACHE_MAX_SEQUENCE_TOKENS, a multimodal span outside the prompt, salt or
 *  lora not UTF-8). */
kvcache_status kvcache_add_sequence(kvcache_t *cache, kvcache_seq_id id, const uint32_t *tokens,
                                    size_t n_tokens, const char *salt, const char *lora,
                                    const kvcache_multimodal_item *items, size_t n_items);

/** Registers a sequence known by precomputed block keys (from a router, another node, a trace);
 *  blocks past the keys are never cached. `keys` may be NULL when n_keys is 0.
 *  O(n_keys). Statuses: NULL_HANDLE, NULL_POINTER, DUPLICATE_SEQUENCE, INVALID_ARGUMENT
 *  (prompt_tokens < 1 or above KVCACHE_MAX_SEQUENCE_TOKENS, n_keys x block_tokens above
 *  prompt_tokens, a zero key). */
kvcache_status kvcache_add_sequence_keys(kvcache_t *cache, kvcache_seq_id id, const kvcache_key *keys,
                                         size_t n_keys, int64_t prompt_tokens);

/** The longest cached prefix of the sequence's prompt in whole blocks (the last prompt token never
 *  counts: its logits must be computed). Counts the query in the stats; pins nothing (the first
 *  allocate does). Call before the first allocate. O(matched blocks) hash probes.
 *  Statuses: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE, INVALID_ARGUMENT (after allocate). */
kvcache_status kvcache_lookup(kvcache_t *cache, kvcache_seq_id id, kvcache_prefix_hit *out);

/** How many leading `keys` are cached here (for a router). Changes nothing. O(matched) probes.
 *  Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_match_length(kvcache_t *cache, const kvcache_key *keys, size_t n_keys,
                                    size_t *out);

/** Ensures KV slots for `new_tokens` tokens to compute this step plus `lookahead` more. The first
 *  call pins the prefix found by lookup. Takes free blocks, then evicts unheld cached blocks in
 *  policy order; a partial block shared after a fork is copied first (see kvcache_drain_copies).
 *  O(new blocks x log cached); allocates nothing.
 *  KVCACHE_ERR_INSUFFICIENT_BLOCKS: out->needed_blocks and out->available_blocks are set and
 *  nothing else changed (preempt or wait). Statuses also: NULL_HANDLE, NULL_POINTER,
 *  UNKNOWN_SEQUENCE, INVALID_ARGUMENT (negative count, more new tokens than are not computed). */
kvcache_status kvcache_allocate(kvcache_t *cache, kvcache_seq_id id, int64_t new_tokens,
                                int64_t lookahead, kvcache_allocation *out);

/** Records that the engine wrote KV for `computed_tokens` more tokens and publishes each newly full
 *  block to the prefix cache (a block already cached elsewhere is replaced by that one).
 *  O(new full blocks x log cached). Statuses: NULL_HANDLE, UNKNOWN_SEQUENCE, INVALID_ARGUMENT
 *  (negative, or past the allocated and known tokens). */
kvcache_status kvcache_commit(kvcache_t *cache, kvcache_seq_id id, int64_t computed_tokens);

/** Adds sampled tokens to the sequence; each block they fill gets its key. `tokens` may be NULL
 *  when n_tokens is 0. O(n_tokens). Statuses: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE. */
kvcache_status kvcache_append_tokens(kvcache_t *cache, kvcache_seq_id id, const uint32_t *tokens,
                                     size_t n_tokens);

/** Adds `count` tokens whose ids are not known; the blocks they touch are never cached. O(1).
 *  Statuses: NULL_HANDLE, UNKNOWN_SEQUENCE, INVALID_ARGUMENT (negative). */
kvcache_status kvcache_append_count(kvcache_t *cache, kvcache_seq_id id, int64_t count);

/** Releases every block of a finished or preempted sequence and forgets it; cached blocks stay
 *  cached (evictable once nobody holds them). O(blocks x log cached).
 *  Statuses: NULL_HANDLE, UNKNOWN_SEQUENCE. */
kvcache_status kvcache_free_sequence(kvcache_t *cache, kvcache_seq_id id);

/** Starts `child` as a copy of `parent` (parallel sampling, beam search), sharing every block that
 *  holds computed tokens; the partial last block is copied on write at the next allocate of
 *  whichever sequence writes into it first. O(blocks).
 *  Statuses: NULL_HANDLE, UNKNOWN_SEQUENCE (parent), DUPLICATE_SEQUENCE (child). */
kvcache_status kvcache_fork(kvcache_t *cache, kvcache_seq_id parent, kvcache_seq_id child);

/* MARK: Engine-side queries */

/** Copies the sequence's block table into out[0 ..< *length]: block i holds tokens
 *  [i x block_tokens, (i+1) x block_tokens). *length is always set to the table's length; when
 *  capacity < *length the status is BUFFER_TOO_SMALL and nothing is written (`out` may be NULL
 *  when capacity is 0: ask for the length first). O(table length).
 *  Statuses: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE, BUFFER_TOO_SMALL. */
kvcache_status kvcache_block_table(kvcache_t *cache, kvcache_seq_id id, kvcache_block_id *out,
                                   size_t capacity, size_t *length);

/** Copies the keys of the sequence's full prompt blocks (as `kvcache_lookup` matches them, salted by
 *  the namespace, LoRA and salt the sequence was added with) into out[0 ..< *length]. A router or a
 *  lower tier asks `kvcache_match_length` of other caches with them. *length is always set; when
 *  capacity < *length the status is BUFFER_TOO_SMALL and nothing is written. O(prompt blocks).
 *  Statuses: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE, BUFFER_TOO_SMALL. */
kvcache_status kvcache_prompt_keys(kvcache_t *cache, kvcache_seq_id id, kvcache_key *out,
                                   size_t capacity, size_t *length);

/** Tokens of the sequence whose KV is written (cached prefix included). O(1).
 *  Statuses: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE. */
kvcache_status kvcache_computed_tokens(kvcache_t *cache, kvcache_seq_id id, int64_t *out);

/** Tokens known for the sequence (prompt plus appended). O(1).
 *  Statuses: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE. */
kvcache_status kvcache_token_count(kvcache_t *cache, kvcache_seq_id id, int64_t *out);

/** Moves the pending block copies (copy-on-write after a fork) into out[0 ..< *count], in order;
 *  perform them before the next engine step. *count is always set to the number pending; when
 *  capacity < *count the status is BUFFER_TOO_SMALL and nothing is moved (`out` may be NULL when
 *  capacity is 0). O(pending); allocates nothing.
 *  Statuses: NULL_HANDLE, NULL_POINTER, BUFFER_TOO_SMALL. */
kvcache_status kvcache_drain_copies(kvcache_t *cache, kvcache_block_copy *out, size_t capacity,
                                    size_t *count);

/** Moves the recorded events (empty unless config.record_events) into events[0 ..< *event_count],
 *  their keys into keys[0 ..< *key_count]. Both counts are always set to what is pending; when
 *  either buffer is too short the status is BUFFER_TOO_SMALL and nothing is moved (a buffer may be
 *  NULL when its capacity is 0). O(events + keys).
 *  Statuses: NULL_HANDLE, NULL_POINTER, BUFFER_TOO_SMALL. */
kvcache_status kvcache_drain_events(kvcache_t *cache, kvcache_event *events, size_t events_capacity,
                                    size_t *event_count, kvcache_key *keys, size_t keys_capacity,
                                    size_t *key_count);

/* MARK: Cache-wide */

/** The cache's counters. O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_get_stats(kvcache_t *cache, kvcache_stats *out);

/** Tokens per block (as configured: block_tokens, or the configuration's for a cache opened with
 *  kvcache_create_from_env / _from_file). O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_block_tokens(kvcache_t *cache, int64_t *out);

/** Blocks an allocation can get now: free ones plus cached ones nobody holds. O(1).
 *  Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_free_block_count(kvcache_t *cache, int64_t *out);

/** Live sequences. O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_sequence_count(kvcache_t *cache, int64_t *out);

/** Drops every cached block (vLLM's reset_prefix_cache); only when no block is held.
 *  O(capacity). Statuses: NULL_HANDLE, BLOCKS_IN_USE (nothing changed). */
kvcache_status kvcache_reset(kvcache_t *cache);

/** Checks every internal invariant of the cache (for tests and debugging; changes nothing).
 *  O(capacity + total block-table length); allocates.
 *  Statuses: NULL_HANDLE, INVARIANT_VIOLATION (with the broken invariant in kvcache_last_error). */
kvcache_status kvcache_validate(kvcache_t *cache);

/* MARK: Hybrid attention + SSM models */

/* Prefix caching for hybrid models (Jamba, Nemotron-H, Mamba-2 hybrids): a radix tree over token ids
 * whose nodes may hold an SSM-state checkpoint (a slot of the engine's fixed-size state pool) plus the
 * attention KV of their edge, under a byte budget, with the library's adaptive policy (Marconi's
 * admission and utility, recurrence-gated branch checkpoints). The engine contract, per request:
 *   1. kvcache_hybrid_plan_prefill(prompt): restore the SSM state from `restore_slot` and the KV of the first
 *      `hit_tokens` tokens, prefill from there (a missing state means recomputing from the nearest
 *      checkpoint, which is what `hit_tokens` already is);
 *   2. during prefill save the SSM state after `save_branch_at` tokens (when >= 0), and after the
 *      last decoded token;
 *   3. kvcache_hybrid_commit(prompt + output, plan, saved_branch, saved_end), then drain the events:
 *      STORED names the slot that receives the state saved after `tokens` tokens, REMOVED a slot
 *      freed.
 * Token ids are int32_t. Single-threaded, like kvcache_t. Every refused call changes nothing. */

/** An opaque hybrid prefix cache. */
typedef struct kvcache_hybrid kvcache_hybrid_t;

/** The longest sequence the hybrid cache takes. */
#define KVCACHE_HYBRID_MAX_SEQUENCE_TOKENS ((int64_t)1 << 30)

/** What the engine does for one request (see above). */
typedef struct kvcache_hybrid_plan {
    /** Tokens served from the cache; the state after them is in `restore_slot` (-1 when 0). */
    int64_t hit_tokens;
    int32_t restore_slot;
    /** Prompt tokens whose KV the cache holds (>= hit_tokens; no state past hit_tokens). */
    int64_t raw_tokens;
    /** Save the SSM state after this many prompt tokens during prefill; -1: none. */
    int64_t save_branch_at;
    /** The cache state the plan was made for; a commit after another change is refused. */
    uint64_t generation;
} kvcache_hybrid_plan;

/** Sizes and counters of a hybrid cache. */
typedef struct kvcache_hybrid_stats {
    int64_t capacity_bytes;
    /** checkpoints x checkpoint bytes + cached_tokens x KV bytes per token; never above capacity. */
    int64_t bytes;
    int64_t checkpoints;
    int64_t cached_tokens;
    int64_t nodes;
    int64_t evicted_nodes;
    int64_t checkpoint_bytes;
    int64_t kv_bytes_per_token;
    /** Times online tuning changed the policy's settings (0 without it). */
    int64_t setting_switches;
} kvcache_hybrid_stats;

enum kvcache_hybrid_event_kind {
    KVCACHE_HYBRID_CHECKPOINT_STORED = 1,
    KVCACHE_HYBRID_CHECKPOINT_REMOVED = 2,
};

/** One checkpoint event: kind, the state-pool slot, the tokens the state summarises. */
typedef struct kvcache_hybrid_event {
    int32_t kind;
    int32_t slot;
    int64_t tokens;
} kvcache_hybrid_event;

/** Creates a hybrid cache for a model preset ("hybrid-7b", "jamba-1.5-mini", "nemotron-h-8b") holding
 *  at most `capacity_bytes`; `record_events` turns on checkpoint events; `online_tuning` re-tunes the
 *  policy's weights every 25 commits on 17 shadow caches (token ids only; each commit then costs one
 *  lookup and one insert per shadow).
 *  Release with kvcache_hybrid_destroy. Statuses: NULL_POINTER (out), INVALID_ARGUMENT (unknown or
 *  non-UTF-8 model, capacity_bytes < 1). */
kvcache_status kvcache_hybrid_create(const char *model, int64_t capacity_bytes, bool record_events,
                                     bool online_tuning, kvcache_hybrid_t **out);

/** Releases the cache. Statuses: NULL_HANDLE. */
kvcache_status kvcache_hybrid_destroy(kvcache_hybrid_t *cache);

/** Plans a request for `prompt` (a lookup: refreshes recency and counts the prefix's recurrence).
 *  O(n_tokens); allocates nothing. Statuses: NULL_HANDLE, NULL_POINTER (out; prompt when n_tokens > 0),
 *  INVALID_ARGUMENT (n_tokens above KVCACHE_HYBRID_MAX_SEQUENCE_TOKENS). */
kvcache_status kvcache_hybrid_plan_prefill(kvcache_hybrid_t *cache, const int32_t *prompt, size_t n_tokens,
                                           kvcache_hybrid_plan *out);

/** Caches `tokens` (prompt + output) as `plan` said, with the branch and end states the engine saved
 *  (a state not saved is not admitted: without the end state only the prefix up to a saved branch
 *  point is cached). Evicts first; never over capacity. Statuses: NULL_HANDLE, NULL_POINTER,
 *  INVALID_ARGUMENT (a stale plan, save_branch_at outside [-1, n_tokens] or 0, a sequence that cannot
 *  fit even in an empty cache, n_tokens above the maximum). */
kvcache_status kvcache_hybrid_commit(kvcache_hybrid_t *cache, const int32_t *tokens, size_t n_tokens,
                                     const kvcache_hybrid_plan *plan, bool saved_branch, bool saved_end);

/** Moves up to `capacity` pending checkpoint events, oldest first, into `events`; `*count` says how
 *  many (fewer than `capacity`: none left). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_hybrid_drain_events(kvcache_hybrid_t *cache, kvcache_hybrid_event *events,
                                           size_t capacity, size_t *count);

/** The cache's sizes and counters. O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_hybrid_get_stats(kvcache_hybrid_t *cache, kvcache_hybrid_stats *out);

/** Checks the tree's and the policy's invariants (changes nothing). O(nodes + tokens).
 *  Statuses: NULL_HANDLE, INVARIANT_VIOLATION. */
kvcache_status kvcache_hybrid_validate(kvcache_hybrid_t *cache);

/* MARK: Chunk reuse */

/*
 * A chunk store and the engine-neutral prefill plan of a prompt that reuses chunks at any position
 * (CacheBlend, Cache-Craft, PIE): the KV of position-independent chunks (retrieved passages, tool
 * results) held in the store's own pool of blocks, several variants per chunk (the same tokens' KV
 * computed after different contexts). A serving cycle:
 *   1. kvcache_chunks_key(tokens) for each reusable segment of a prompt;
 *   2. kvcache_chunks_plan(segments): the reused spans (chunk key, variant, tier, source and target
 *      positions, recompute budget), the prompt positions to recompute inside them (selections RANDOM,
 *      LEADING and CONTEXT_IMPACT fix them; under HKVD the engine picks `recompute_budget` tokens per
 *      span by its own check layer), and the fresh ranges computed in full (fresh segments and chunks
 *      the store does not hold). The plan holds its variants: they are not evicted or removed;
 *   3. the engine reads each span's blocks (kvcache_chunks_blocks), re-rotates its keys by
 *      target_start - source_start, recomputes the selected tokens and computes the fresh ranges;
 *   4. kvcache_chunks_commit(plan_id) reports it done and ends the hold; kvcache_chunks_insert stores
 *      a chunk the engine computed (it writes the KV into the blocks insert returns).
 * A store made by kvcache_chunks_create_tiered (below, after the tiers) spills evicted variants to host
 * memory and disk with their KV and loads them back for a plan.
 * Same conventions as the cache: statuses, kvcache_last_error, nothing changed on failure, caller
 * buffers, one thread at a time per handle. Allocation: kvcache_chunks_plan, _commit, _key and
 * _blocks allocate nothing once the handle's scratch has grown to the largest prompt (selections
 * RANDOM and CONTEXT_IMPACT allocate scratch per call); insert may allocate. Costs: plan is
 * O(segments + recomputed positions) plus one hash probe per chunk segment.
 */

/** An opaque chunk store. */
typedef struct kvcache_chunks kvcache_chunks_t;

/** What a prompt segment is. */
enum kvcache_segment_kind {
    /** Computed in full (the question, template text). */
    KVCACHE_SEGMENT_FRESH = 0,
    /** Served by the prefix cache (kvcache_t): the first segment only. */
    KVCACHE_SEGMENT_CACHED_PREFIX = 1,
    /** A chunk that may be in the store, named by `chunk` (kvcache_chunks_key). */
    KVCACHE_SEGMENT_CHUNK = 2,
};

/** One segment of a prompt, in prompt order. */
typedef struct kvcache_prompt_segment {
    /** One of enum kvcache_segment_kind. */
    int32_t kind;
    /** Tokens in the segment, >= 1. */
    int64_t tokens;
    /** The chunk's key (KVCACHE_SEGMENT_CHUNK only; ignored otherwise). */
    kvcache_key chunk;
} kvcache_prompt_segment;

/** How the tokens recomputed inside reused chunks are chosen. */
enum kvcache_recompute_selection {
    /** None: full reuse. */
    KVCACHE_SELECT_NONE = 0,
    /** CacheBlend's high-KV-deviation tokens: the plan carries each span's budget; the engine picks. */
    KVCACHE_SELECT_HKVD = 1,
    /** ceil(ratio x tokens) positions per span drawn uniformly from `seed` (the ablation). */
    KVCACHE_SELECT_RANDOM = 2,
    /** The first ceil(ratio x tokens) positions of each span. */
    KVCACHE_SELECT_LEADING = 3,
    /** Cache-Craft: the prompt's budget split over the spans by each variant's context impact, within a
     *  span the tokens of highest recorded impact. */
    KVCACHE_SELECT_CONTEXT_IMPACT = 4,
};

/** A chunk's cached KV placed at new prompt positions. */
typedef struct kvcache_reused_span {
    kvcache_key chunk;
    /** The stored variant (kvcache_chunks_blocks). */
    uint64_t variant;
    /** One of enum kvcache_tier: where the variant's KV was when planned (KVCACHE_TIER_DEVICE: in the
     *  store's pool; KVCACHE_TIER_HOST or _DISK: a tiered store loaded it into the pool from there). */
    int32_t tier;
    /** The KV is exactly what a full prefill computes here (computed at this position after this context
     *  right behind the cached prefix): nothing to re-rotate or recompute. */
    bool exact;
    /** Positions source_start ..< source_start + tokens the KV was computed at, and the prompt positions
     *  target_start ..< target_start + tokens it now occupies (re-rotate keys by the difference). */
    int64_t source_start;
    int64_t target_start;
    int64_t tokens;
    /** Tokens of the span to recompute: ceil(ratio x tokens), 0 when exact; for a chunk a tiered store
     *  loaded for this plan under a loading controller (kvcache_chunks_set_loading_controller), at the
     *  larger of `ratio` and the controller's ratio for it (the load's time pays for that recompute;
     *  not under KVCACHE_SELECT_NONE). */
    int64_t recompute_budget;
} kvcache_reused_span;

/** Prompt positions start ..< end. */
typedef struct kvcache_token_range {
    int64_t start;
    int64_t end;
} kvcache_token_range;

/** The summary of a plan and the lengths of its three arrays. */
typedef struct kvcache_chunk_plan {
    /** Names the plan for kvcache_chunks_commit (never 0 for a plan made; 0 when none was). */
    uint64_t plan_id;
    int64_t prompt_tokens;
    /** Leading tokens served by the prefix cache. */
    int64_t prefix_tokens;
    /** Tokens in reused spans, and chunk segments the store does not hold (computed as fresh). */
    int64_t reused_tokens;
    int64_t missing_chunks;
    /** Elements of spans, recompute and fresh the plan has (written when the buffers hold them). */
    size_t n_spans;
    size_t n_recompute;
    size_t n_fresh;
} kvcache_chunk_plan;

/** Sizes and counters of a chunk store. */
typedef struct kvcache_chunks_stats {
    int64_t capacity_blocks;
    int64_t free_blocks;
    int64_t block_tokens;
    /** Stored variants, variants evicted to make room so far, plans not yet committed. */
    int64_t variants;
    int64_t evicted_variants;
    int64_t open_plans;
} kvcache_chunks_stats;

/** Creates a chunk store of `capacity_blocks` blocks of `block_tokens` tokens keeping at most
 *  `max_variants` variants per chunk; chunk keys are computed under `key_namespace` (NULL: "") as
 *  block keys are. Release with kvcache_chunks_destroy. Statuses: NULL_POINTER (out), INVALID_ARGUMENT
 *  (a count below 1, capacity above INT32_MAX blocks, a namespace that is not UTF-8). */
kvcache_status kvcache_chunks_create(int64_t capacity_blocks, int64_t block_tokens, int64_t max_variants,
                                     const char *key_namespace, kvcache_chunks_t **out);

/** Releases the store (open plans included). Statuses: NULL_HANDLE. */
kvcache_status kvcache_chunks_destroy(kvcache_chunks_t *chunks);

/** The position-independent key of tokens[0 ..< n_tokens] (docs/BLOCK_KEYS.md, "Chunk keys").
 *  O(n_tokens), no allocation for chunks that fit the stack. Statuses: NULL_HANDLE, NULL_POINTER,
 *  INVALID_ARGUMENT (no tokens, or more than KVCACHE_MAX_SEQUENCE_TOKENS). */
kvcache_status kvcache_chunks_key(kvcache_chunks_t *chunks, const uint32_t *tokens, size_t n_tokens,
                                  kvcache_key *out);

/** Stores a variant of `chunk`: `tokens` tokens whose KV was computed at positions starting at
 *  `computed_at` after the context `context` (the key of what preceded it; the engine's choice, used
 *  consistently), with Cache-Craft's context impact (>= 0; NaN: not measured). *variant names it and
 *  blocks[0 ..< *n_blocks] are the store's blocks the engine writes the KV into (token t in block
 *  t / block_tokens). A variant of the same chunk and context is returned instead when stored. Evicts
 *  unheld variants least recently used first when short of blocks. *n_blocks is always set to the
 *  blocks the chunk needs. O(blocks + evicted). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT
 *  (tokens < 1, computed_at < 0, a negative or infinite impact, every variant of the chunk held),
 *  BUFFER_TOO_SMALL, INSUFFICIENT_BLOCKS (held variants leave too few). */
kvcache_status kvcache_chunks_insert(kvcache_chunks_t *chunks, kvcache_key chunk, int64_t tokens,
                                     int64_t computed_at, kvcache_key context, double context_impact,
                                     uint64_t *variant, kvcache_block_id *blocks, size_t capacity,
                                     size_t *n_blocks);

/** The blocks of a stored variant, in token order; *n_blocks is always set when the variant is known.
 *  O(blocks). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (unknown variant: never stored,
 *  or evicted or removed since), BUFFER_TOO_SMALL. */
kvcache_status kvcache_chunks_blocks(kvcache_chunks_t *chunks, uint64_t variant, kvcache_block_id *blocks,
                                     size_t capacity, size_t *n_blocks);

/** Drops a variant and frees its blocks. O(blocks). Statuses: NULL_HANDLE, INVALID_ARGUMENT (unknown
 *  variant), BLOCKS_IN_USE (an open plan holds it). */
kvcache_status kvcache_chunks_remove(kvcache_chunks_t *chunks, uint64_t variant);

/** Plans the prefill of a prompt given as segments[0 ..< n_segments] against the store: `context` is
 *  the key of what precedes the chunks (variants computed after it are preferred), `selection` one of
 *  enum kvcache_recompute_selection with `ratio` in [0, 1] and `seed` (RANDOM). Writes the reused spans
 *  in prompt order, the recomputed prompt positions ascending and the fresh ranges ascending into the
 *  caller's buffers, and *out. out->n_spans, n_recompute and n_fresh are always set when the segments
 *  are valid; when a buffer is too short the status is BUFFER_TOO_SMALL and no plan is made (plan_id
 *  0, nothing held). On KVCACHE_OK the plan's variants are held until kvcache_chunks_commit.
 *  Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (an unknown kind or selection, a segment of
 *  fewer than 1 token, a cached prefix that is not first, a prompt above KVCACHE_MAX_SEQUENCE_TOKENS, a
 *  ratio outside [0, 1], a stored chunk whose length differs from its segment's), BUFFER_TOO_SMALL. */
kvcache_status kvcache_chunks_plan(kvcache_chunks_t *chunks, const kvcache_prompt_segment *segments,
                                   size_t n_segments, kvcache_key context, int32_t selection, double ratio,
                                   uint64_t seed, kvcache_reused_span *spans, size_t spans_capacity,
                                   int64_t *recompute, size_t recompute_capacity, kvcache_token_range *fresh,
                                   size_t fresh_capacity, kvcache_chunk_plan *out);

/** The engine has executed plan `plan_id` (or given it up): its variants are no longer held. O(spans).
 *  Statuses: NULL_HANDLE, INVALID_ARGUMENT (a plan not open: never made, or committed already). */
kvcache_status kvcache_chunks_commit(kvcache_chunks_t *chunks, uint64_t plan_id);

/** The store's sizes and counters. O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_chunks_get_stats(kvcache_chunks_t *chunks, kvcache_chunks_stats *out);

/** Checks the store's invariants and that the open plans hold exactly the held variants (tests).
 *  Statuses: NULL_HANDLE, INVARIANT_VIOLATION. */
kvcache_status kvcache_chunks_validate(kvcache_chunks_t *chunks);

/* MARK: Tiers (host memory and disk below the device pool) */

/*
 * A tier manager: the engine's KV blocks copied out of the device pool into page-aligned host memory
 * (NUMA placed) and a zstd-compressed disk store below it, looked up by block key and brought back on
 * demand: the verbs of vLLM's OffloadingManager and of SGLang's HiCache storage. The host memory and
 * the disk bytes are the library's own; the device copies are the engine's: the library asks for each
 * one through a callback with a completion token, and the engine reports it done with
 * kvcache_tiers_copy_done (at once, or later from a CUDA stream callback). Without callbacks the
 * library keeps a stand-in device pool in host memory (tests, CPU engines; kvcache_tiers_device_block).
 *
 * Same conventions as above: statuses, kvcache_last_error, nothing changed on failure, caller buffers.
 * Threading: kvcache_tiers_copy_done may be called from any thread (the copy callbacks run on the
 * library's transfer threads and may call it before they return); every other call on one handle must
 * come from one thread at a time, as with kvcache_t. Allocation: none per call in steady state for
 * lookup, prepare_load, complete_load, prepare_store, complete_store, touch and take_events, on any
 * thread (the keys are copied into buffers the handle keeps; loads and stores are pooled jobs; events
 * are flat records; tools/capi/allocs.sh counts it); a load that finds every host slot pinned
 * allocates its staging buffer, and a load or store beyond 8 in flight at once allocates its job.
 * Sizes and counts are those of a device pool of
 * device_blocks blocks of bytes_per_block bytes (layers x 2 x kv_heads x head_dim x dtype_bytes x
 * block_tokens).
 */

/** An open tier manager. Opaque. */
typedef struct kvcache_tiers kvcache_tiers_t;

/** A copy between one device block and host memory that the engine performs: `length` bytes at byte
 *  `offset` of device block `block`, from or to `host` (which stays valid and untouched until the copy
 *  is reported). Call kvcache_tiers_copy_done(tiers, token, ok) exactly once when it has finished.
 *  Runs on a library thread; must not call other kvcache_tiers_* functions than copy_done. */
typedef void (*kvcache_tier_copy_fn)(void *context, kvcache_block_id block, size_t offset, size_t length,
                                     void *host, uint64_t token);

/** Statuses of the tier calls besides those of enum kvcache_status_code. */
enum kvcache_tier_status_code {
    /** A system call, zstd or the disk directory failed (create: the directory is locked, unreadable,
     *  full); kvcache_last_error names the call and the path. */
    KVCACHE_ERR_TIER_SYSTEM = 15,
};

/** How to build a tier manager. Fill it with kvcache_tiers_config_init, then set the geometry and
 *  sizes. */
typedef struct kvcache_tiers_config {
    /** The engine's KV geometry: a block is layers x 2 (K, V) x kv_heads x head_dim elements of
     *  dtype_bytes (1, 2 or 4) per token, block_tokens tokens; below 1 GiB. */
    int64_t layers;
    int64_t kv_heads;
    int64_t head_dim;
    int64_t dtype_bytes;
    int64_t block_tokens;
    /** Blocks of the device pool that copies address, 1...INT32_MAX. */
    int64_t device_blocks;
    /** Blocks of host memory (0: no host tier). */
    int64_t host_blocks;
    /** Folder of the disk tier (created if missing; NULL: no disk tier) and its size in bytes. */
    const char *disk_directory;
    int64_t disk_capacity_bytes;
    /** Loads complete per layer group: each block is copied as this many byte ranges (default 1). */
    int64_t layer_groups;
    /** Transfer threads (default 2). */
    int64_t workers;
    /** Host occupancy (0...1] above which cold host blocks are written to disk in the background
     *  (default 0.9; 1: only when evicted from host). */
    double spill_watermark;
    /** Keep events for kvcache_tiers_take_events (default false). */
    bool record_events;
    /** Page-lock the host tier where permitted (default false). */
    bool lock_host_memory;
    /** kvcache_tiers_will_evict returns only once the evicted block's copy to host has finished
     *  (default false: the engine must not overwrite the block before its device_to_host copies are
     *  reported; with callbacks that complete later, true would wait for them). */
    bool synchronous_eviction_copies;
    /** The engine's copies (both NULL: the library's stand-in device pool; one NULL: INVALID_ARGUMENT). */
    kvcache_tier_copy_fn device_to_host;
    kvcache_tier_copy_fn host_to_device;
    /** Passed as the first argument of both callbacks. */
    void *copy_context;
} kvcache_tiers_config;

/** The result of kvcache_tiers_lookup: the longest prefix of the keys found across tiers. */
typedef struct kvcache_tier_lookup {
    /** Leading blocks the caller said are in the device pool. */
    int64_t device_blocks;
    /** The blocks after them found on host and on disk; load_blocks = host_blocks + disk_blocks. */
    int64_t host_blocks;
    int64_t disk_blocks;
    int64_t load_blocks;
} kvcache_tier_lookup;

/** Counters of one tier. */
typedef struct kvcache_tier_counters {
    /** Blocks of lookups served from this tier; blocks written into it and removed from it. */
    int64_t hits;
    int64_t stored_blocks;
    int64_t removed_blocks;
    /** Bytes moved into the tier, and out of it towards the device. */
    int64_t bytes_in;
    int64_t bytes_out;
    /** Blocks held now, and the most it can hold. */
    int64_t occupancy;
    int64_t capacity;
    /** Blocks loaded from it; blocks that could not be stored or loaded; evicted without a copy below. */
    int64_t loaded_blocks;
    int64_t not_stored;
    int64_t failed_loads;
    int64_t dropped_blocks;
} kvcache_tier_counters;

/** Counters of a tier manager. */
typedef struct kvcache_tier_stats {
    /** Bytes of one block. */
    int64_t block_bytes;
    kvcache_tier_counters device;
    kvcache_tier_counters host;
    kvcache_tier_counters disk;
} kvcache_tier_stats;

/** Fills `config` with the defaults (geometry and sizes 0, layer_groups 1, workers 2, spill 0.9, no
 *  disk, no events, no callbacks). O(1). Statuses: NULL_POINTER. */
kvcache_status kvcache_tiers_config_init(kvcache_tiers_config *config);

/** Opens a tier manager: maps the host tier, opens (or recovers) the disk directory, starts the
 *  transfer threads. On KVCACHE_OK *out is a new handle owned by the caller (kvcache_tiers_destroy).
 *  `abi_version` and `config_size` as for kvcache_create_checked (the macro passes them).
 *  Statuses: NULL_POINTER, INVALID_ARGUMENT (geometry, sizes, one callback without the other, a
 *  directory that is not UTF-8, another ABI), TIER_SYSTEM (mmap, the directory). */
kvcache_status kvcache_tiers_create_checked(uint32_t abi_version, size_t config_size,
                                            const kvcache_tiers_config *config, kvcache_tiers_t **out);
#define kvcache_tiers_create(config, out) \
    kvcache_tiers_create_checked(KVCACHE_ABI_VERSION, sizeof(kvcache_tiers_config), (config), (out))

/** Opens the tier manager that the tiers: and layout: sections of the configuration describe
 *  (docs/CONFIGURATION.md: tiers.host_blocks, tiers.disk_path, tiers.disk_bytes, tiers.compress,
 *  tiers.numa_node, tiers.lock_host_memory, tiers.write_policy, tiers.layer_groups, tiers.workers,
 *  tiers.spill_watermark, layout.* with block_tokens), read from the YAML file at `path` (UTF-8) with the
 *  KVCACHE_* variables over it as kvcache_create_from_file does, or, when `path` is NULL, from the
 *  environment as kvcache_create_from_env does. The device pool it copies to and from is
 *  capacity_blocks blocks; the engine's copies are `device_to_host` and `host_to_device` (both NULL: the
 *  library's stand-in device pool; one NULL: INVALID_ARGUMENT) with `copy_context`, as in
 *  kvcache_tiers_config. Tier events are kept when record_events or events.enabled is set. On
 *  KVCACHE_OK *out is a new handle owned by the caller (kvcache_tiers_destroy), or NULL when the
 *  configuration names no tier (neither tiers.host_blocks nor tiers.disk_path).
 *  Statuses: NULL_POINTER (out), INVALID_ARGUMENT (a bad key, named with its variable as by
 *  kvcache_create_from_env; a tier without layout.layers...; one callback), TIER_SYSTEM (mmap, the
 *  directory), CONFIG_LIBRARY. */
kvcache_status kvcache_tiers_create_from_config(const char *path, kvcache_tier_copy_fn device_to_host,
                                                kvcache_tier_copy_fn host_to_device, void *copy_context,
                                                kvcache_tiers_t **out);

/** Adds the events of `tiers` (BLOCK_STORED / BLOCK_REMOVED on HOST and DISK, kept when its
 *  configuration records events) to every batch of the publisher `events` (kvcache_events_open_from_config)
 *  from now on, after the cache's, as the Swift publisher
 *  does for a manager with lower tiers; kvcache_tiers_take_events then finds none of them. A second call
 *  replaces the first. The publisher keeps `tiers` alive until it is closed; do not call into `tiers`
 *  from another thread during kvcache_events_publish. O(1).
 *  Statuses: NULL_HANDLE (events, tiers), INVALID_ARGUMENT (a handle of another kind). */
kvcache_status kvcache_events_add_tiers(kvcache_events_t *events, kvcache_tiers_t *tiers);

/** Finishes the queued transfers (the engine must complete the copies it was handed), closes the disk
 *  directory and releases the handle. Statuses: NULL_HANDLE. */
kvcache_status kvcache_tiers_destroy(kvcache_tiers_t *tiers);

/** The longest prefix of keys[0 ..< n_keys] available: the first `device_blocks` are in the device
 *  pool (the caller's own lookup said so), the following ones are looked up on host, then on disk,
 *  up to `max_blocks` blocks in all. Writes the tier of each block to load (KVCACHE_TIER_HOST or
 *  _DISK) into locations[0 ..< out->load_blocks]; `locations` may be NULL when capacity is 0, else
 *  capacity must hold min(n_keys, max_blocks) - device_blocks (checked first: BUFFER_TOO_SMALL).
 *  Counts hits per tier. O(n_keys) probes. Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT
 *  (negative device_blocks or max_blocks, device_blocks > n_keys), BUFFER_TOO_SMALL. */
kvcache_status kvcache_tiers_lookup(kvcache_tiers_t *tiers, const kvcache_key *keys, size_t n_keys,
                                    int64_t device_blocks, int64_t max_blocks, int32_t *locations,
                                    size_t capacity, kvcache_tier_lookup *out);

/** Where `key` can be loaded from now: *tier is KVCACHE_TIER_HOST, KVCACHE_TIER_DISK or -1 (neither).
 *  Counts nothing, changes nothing. O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_tiers_loadable(kvcache_tiers_t *tiers, kvcache_key key, int32_t *tier);

/** Starts loading keys[first ..< first + n_blocks] (keys[0 ..< first] are the prompt's blocks before
 *  them, for the parents) into device blocks dst[0 ..< n_blocks]: disk blocks come up through host,
 *  then one host_to_device copy per block and layer group. Host copies are pinned until the load
 *  completes. A block found nowhere any more, and every block after it, completes as failed.
 *  *load_id names the load for kvcache_tiers_complete_load. O(n_blocks).
 *  Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (first + n_blocks > n_keys, a device block
 *  out of range). */
kvcache_status kvcache_tiers_prepare_load(kvcache_tiers_t *tiers, const kvcache_key *keys, size_t n_keys,
                                          size_t first, const kvcache_block_id *dst, size_t n_blocks,
                                          uint64_t *load_id);

/** Whether every copy of a load or store (`id` from prepare_load or prepare_store) has finished.
 *  Does not wait. O(1). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (unknown id). */
kvcache_status kvcache_tiers_is_complete(kvcache_tiers_t *tiers, uint64_t id, bool *complete);

/** Which blocks of a load or store (`id`) have failed so far, without waiting: failed[i] is 1 for a
 *  block that failed (no host slot, found nowhere, a copy reported failed), 0 otherwise; *count is the
 *  transfer's block count (`failed` may be NULL when capacity is 0, else capacity must hold them).
 *  Right after prepare_load or prepare_store it names the blocks for which no copy will be asked.
 *  O(blocks). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (unknown id), BUFFER_TOO_SMALL. */
kvcache_status kvcache_tiers_failed_blocks(kvcache_tiers_t *tiers, uint64_t id, uint8_t *failed, size_t capacity,
                                           size_t *count);

/** Waits for a load to finish and forgets it: block_ok[i] is 1 when block i arrived, 0 when it failed
 *  (`block_ok` may be NULL when capacity is 0, else capacity must hold the load's blocks);
 *  *loaded_prefix is the number of leading blocks that arrived, the ones the engine may treat as
 *  computed. O(blocks). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (unknown id),
 *  BUFFER_TOO_SMALL (nothing waited for, the load is kept). */
kvcache_status kvcache_tiers_complete_load(kvcache_tiers_t *tiers, uint64_t load_id, uint8_t *block_ok,
                                           size_t capacity, size_t *loaded_prefix);

/** Offloads: device blocks blocks[0 ..< n] hold keys[0 ..< n], a chain whose first key's parent is
 *  *first_parent (NULL: a first block). Each key not on host yet gets a host slot (evicting the
 *  coldest host block, written to disk first when it is not there) and a device_to_host copy.
 *  *store_id names the store for kvcache_tiers_complete_store. O(n).
 *  Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (a zero key, a device block out of range). */
kvcache_status kvcache_tiers_prepare_store(kvcache_tiers_t *tiers, const kvcache_block_id *blocks,
                                           const kvcache_key *keys, size_t n, const kvcache_key *first_parent,
                                           uint64_t *store_id);

/** Waits for a store to finish and forgets it: block_ok[i] is 1 when key i is on host now (copied, or
 *  there already), 0 when no slot was free or the copy failed; *stored counts the ones. O(n).
 *  Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (unknown id), BUFFER_TOO_SMALL (nothing
 *  waited for, the store is kept). */
kvcache_status kvcache_tiers_complete_store(kvcache_tiers_t *tiers, uint64_t store_id, uint8_t *block_ok,
                                            size_t capacity, size_t *stored);

/** The engine finished the copy of `token` (ok false: it failed). Any thread, also inside the
 *  callback. O(1). Statuses: NULL_HANDLE, INVALID_ARGUMENT (a token not pending: never handed out,
 *  or reported already). */
kvcache_status kvcache_tiers_copy_done(kvcache_tiers_t *tiers, uint64_t token, bool ok);

/** Starts bringing the disk blocks among keys[0 ..< n] up to host in the background (no copy to the
 *  device; nothing waits for the disk), so that a later load of them finds them on host; *pending (may
 *  be NULL) counts the keys on their way up now, by this call or an earlier one (kvcache_tiers_loadable
 *  says KVCACHE_TIER_HOST once one has arrived). A disk block that finds no host slot free or evictable
 *  stays on disk (a load reads it from there). O(n). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_tiers_prefetch(kvcache_tiers_t *tiers, const kvcache_key *keys, size_t n, size_t *pending);

/** Marks the host copies of keys[0 ..< n] as just used (last to be evicted); *found counts those on
 *  host (may be NULL). O(n). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_tiers_touch(kvcache_tiers_t *tiers, const kvcache_key *keys, size_t n, size_t *found);

/** The device pool is about to reuse `block`, which held `key` (as prepare_store or a load said): it
 *  stops being device-resident, and when the key is not on host yet its bytes are copied there first
 *  (one device_to_host copy per layer group; see synchronous_eviction_copies). O(1).
 *  Statuses: NULL_HANDLE, INVALID_ARGUMENT (block out of range). */
kvcache_status kvcache_tiers_will_evict(kvcache_tiers_t *tiers, kvcache_block_id block, kvcache_key key);

/** Writes `length` bytes (exactly the block size) under `key` straight to the disk tier (SGLang's
 *  HiCache storage set); *stored is true when written now, false when the key was there already.
 *  O(length). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (no disk tier, a zero key, another
 *  length), TIER_SYSTEM (the disk refused it: full, I/O error). */
kvcache_status kvcache_tiers_disk_put(kvcache_tiers_t *tiers, kvcache_key key, const kvcache_key *parent,
                                      const void *bytes, size_t length, bool *stored);

/** Reads the block `key` from the disk tier into bytes[0 ..< length] (exactly the block size), after
 *  checking its checksum and key; *hit is false (bytes untouched) when it is not there or failed its
 *  check. O(length). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (no disk tier, length). */
kvcache_status kvcache_tiers_disk_get(kvcache_tiers_t *tiers, kvcache_key key, void *bytes, size_t length,
                                      bool *hit);

/** How many leading keys[0 ..< n] the disk tier holds. O(matched). Statuses: NULL_HANDLE,
 *  NULL_POINTER, INVALID_ARGUMENT (no disk tier). */
kvcache_status kvcache_tiers_disk_contains(kvcache_tiers_t *tiers, const kvcache_key *keys, size_t n,
                                           size_t *leading);

/** Moves the tier events (BLOCK_STORED / BLOCK_REMOVED with tier HOST or DISK; empty unless
 *  config.record_events) into the caller's buffers, exactly as kvcache_drain_events does.
 *  Statuses: NULL_HANDLE, NULL_POINTER, BUFFER_TOO_SMALL. */
kvcache_status kvcache_tiers_take_events(kvcache_tiers_t *tiers, kvcache_event *events, size_t events_capacity,
                                         size_t *event_count, kvcache_key *keys, size_t keys_capacity,
                                         size_t *key_count);

/** The tier manager's counters. O(1). Statuses: NULL_HANDLE, NULL_POINTER. */
kvcache_status kvcache_tiers_get_stats(kvcache_tiers_t *tiers, kvcache_tier_stats *out);

/** The stand-in device pool's block `block` (only without copy callbacks): *data and *length address
 *  its bytes, valid until the handle is destroyed. Statuses: NULL_HANDLE, NULL_POINTER,
 *  INVALID_ARGUMENT (block out of range, or the engine's callbacks are set). */
kvcache_status kvcache_tiers_device_block(kvcache_tiers_t *tiers, kvcache_block_id block, void **data,
                                          size_t *length);

/** The host tier's memory, for another process (an engine's worker) to copy into and out of it
 *  directly: the host blocks live in one shared-memory file (a memfd) of `*size` bytes, open as
 *  descriptor *fd in this process (owned by the handle; valid until kvcache_tiers_destroy) and mapped
 *  here at *base. A host address the library hands out (a copy callback's `host`) lies at byte offset
 *  `host - *base` of the file; another process maps the file, e.g. with open("/proc/<pid>/fd/<fd>")
 *  and mmap(MAP_SHARED), and copies at those offsets while the copy is pending (the library keeps the
 *  block pinned until kvcache_tiers_copy_done). O(1). Statuses: NULL_HANDLE, NULL_POINTER,
 *  INVALID_ARGUMENT (no host tier). */
kvcache_status kvcache_tiers_host_region(kvcache_tiers_t *tiers, int32_t *fd, void **base, size_t *size);

/** Checks the tier index's invariants (tests). Statuses: NULL_HANDLE, INVARIANT_VIOLATION. */
kvcache_status kvcache_tiers_validate(kvcache_tiers_t *tiers);

/* MARK: A prompt's tier leg through the library (a cache with its tiers attached) */

/*
 * The tier calls above are verbs for an engine that composes them with a scheduler of its own. An engine
 * that wants the library's own order of them, the one its serving loop runs for every prompt (device
 * lookup, tier lookup, allocate, wait for the eviction copies, load, commit, record the computed blocks),
 * attaches a tier manager to a cache once and then, per request:
 *   1. kvcache_add_sequence (or kvcache_add_sequence_keys), as without tiers;
 *   2. kvcache_tiers_admit: the device hit; the blocks after it found on host or disk, loaded into the
 *      sequence's new blocks through the tier handle's copies (host_to_device callbacks, or the stand-in
 *      device pool), waited for and committed; KV slots allocated for the rest. out->compute_tokens is
 *      what is left for the engine;
 *   3. the engine computes those tokens and calls kvcache_commit;
 *   4. kvcache_tiers_record_stored: the tiers learn which device block holds each computed prompt block,
 *      so that when the cache evicts it its bytes are copied to host first.
 * Decode, append and free as usual. The cache's block ids are the tier manager's device blocks.
 * admit (and the allocations of a cache with tiers attached, which copy evicted blocks down) may wait for
 * the engine's copies: with callbacks, kvcache_tiers_copy_done must come from another thread or from the
 * callback itself, never from the thread that is inside admit.
 */

/** The outcome of kvcache_tiers_admit, in prompt tokens. */
typedef struct kvcache_tier_admission {
    /** Tokens the device pool held (whole blocks; kvcache_lookup's cached_tokens). */
    int64_t device_tokens;
    /** Tokens loaded from host and disk, committed as computed: (host_blocks + disk_blocks) x block_tokens. */
    int64_t loaded_tokens;
    /** Tokens the engine computes now, their KV slots allocated: kv_tokens - device_tokens - loaded_tokens. */
    int64_t compute_tokens;
    /** Blocks loaded from host and from disk, and planned loads that failed (the block vanished or a copy
     *  was reported failed; it and every block after it are computed instead). */
    int64_t host_blocks;
    int64_t disk_blocks;
    int64_t failed_blocks;
} kvcache_tier_admission;

/** Wires `tiers` below `cache`, as the library's serving loop does: blocks the cache evicts are handed to
 *  the tiers (kvcache_tiers_will_evict, copied to host when not there yet), and kvcache_drain_events also
 *  moves the tier events (after the cache's own). The cache keeps a reference to the tier handle until
 *  kvcache_tiers_detach or kvcache_destroy, so either handle may be destroyed first (the tier manager
 *  closes when neither the caller nor a cache holds it). From then on the two handles are used as one:
 *  one thread at a time for both (kvcache_tiers_copy_done excepted). O(1).
 *  Statuses: NULL_HANDLE, INVALID_ARGUMENT (a handle of another kind; the cache has tiers attached
 *  already, or the tiers are attached to a cache; block_tokens differ; the tiers' device_blocks are fewer
 *  than the cache's capacity_blocks). Nothing changes on failure. */
kvcache_status kvcache_tiers_attach(kvcache_t *cache, kvcache_tiers_t *tiers);

/** Unwires the tiers kvcache_tiers_attach set below `cache`, after waiting for the eviction copies it
 *  started (so a block the cache hands out next is not still being copied), and drops the cache's
 *  reference to them. Sequences keep their blocks. O(pending eviction copies).
 *  Statuses: NULL_HANDLE, INVALID_ARGUMENT (no tiers attached). */
kvcache_status kvcache_tiers_detach(kvcache_t *cache);

/** Admits sequence `id` (added, not allocated yet) through the tiers attached to `cache`: the device
 *  lookup, the tiers' lookup of the prompt blocks after the device hit (up to the block before the last
 *  prompt token), the allocation of kv_tokens - device_tokens tokens (its evictions copy blocks down),
 *  the wait for those eviction copies, the load of the planned blocks into the sequence's new blocks, and
 *  the commit of the leading blocks that arrived. `kv_tokens` are the prompt tokens whose KV the sequence
 *  holds after its prefill: n_tokens of the prompt for an engine that computes every prompt token, from
 *  the prompt's full blocks before its last token (min(n_keys, (n_tokens - 1) / block_tokens) x
 *  block_tokens, the most the caches can supply) up to n_tokens. Counts the query in both handles'
 *  counters, as kvcache_lookup and kvcache_tiers_lookup do. O(prompt blocks) plus the copies.
 *  KVCACHE_ERR_INSUFFICIENT_BLOCKS: the pool cannot take the request now; the sequence is as it was
 *  (only the counters counted the query): admit it again later or free it.
 *  Statuses also: NULL_HANDLE, NULL_POINTER, UNKNOWN_SEQUENCE, INVALID_ARGUMENT (a handle of another
 *  kind; `tiers` are not the ones attached to `cache`; the sequence is allocated already; kv_tokens out
 *  of range), nothing changed; TIER_SYSTEM (a load could not start: the sequence holds its new blocks,
 *  free it). */
kvcache_status kvcache_tiers_admit(kvcache_t *cache, kvcache_tiers_t *tiers, kvcache_seq_id id, int64_t kv_tokens,
                                   kvcache_tier_admission *out);

/** Tells the tiers attached to `cache` which device block holds each full prompt block of `id` from block
 *  `first_block` up to the computed ones (call it after kvcache_commit of the computed prompt; pass
 *  device_tokens / block_tokens of the admission, whose blocks the tiers know already, or 0). Reads the
 *  block table after the commits, so blocks the commit deduplicated are named by the cached copy.
 *  O(blocks). Statuses: NULL_HANDLE, UNKNOWN_SEQUENCE, INVALID_ARGUMENT (a handle of another kind; `tiers`
 *  are not the ones attached to `cache`; a negative first_block). */
kvcache_status kvcache_tiers_record_stored(kvcache_t *cache, kvcache_tiers_t *tiers, kvcache_seq_id id,
                                           int64_t first_block);

/* MARK: Chunk reuse over the tiers */

/*
 * A chunk store whose variants leave its pool for host memory (and, past the host tier, disk) with their
 * KV instead of being dropped, and come back when a plan reuses them. Without copy callbacks the store
 * keeps the device KV in the library's own device pool (the engine writes a variant's KV with
 * kvcache_chunks_put and reads it with kvcache_chunks_fetch). With the config's copy callbacks the pool's
 * blocks are the engine's own device memory: the engine writes a variant's KV into the blocks
 * kvcache_chunks_insert returns and says so with kvcache_chunks_mark_written, reads a span's blocks
 * (kvcache_chunks_blocks) where they are, and performs every copy between its blocks and host memory in
 * its callbacks, each reported with kvcache_chunks_copy_done (as kvcache_tiers_copy_done; put and fetch
 * are refused). Evictions and loads wait for their copies, so a callback must not wait for the thread
 * that made the call (complete it inside the callback, or on the engine's copy thread). Every other
 * kvcache_chunks_* call works on a tiered store as on a plain store, except:
 *   - kvcache_chunks_insert copies the KV of the variants it evicts (those put) to host before
 *     returning; kvcache_chunks_remove moves the variant to host as an eviction does;
 *   - kvcache_chunks_plan first loads every chunk of the prompt that is not in the pool but whole in a
 *     tier back into the pool (disk blocks through host; every block's checksum and key checked: a
 *     variant with any bad block is dropped, never served, and its segment is planned as missing), then
 *     plans; a span's `tier` is KVCACHE_TIER_HOST or _DISK when its variant was loaded from there for
 *     this plan. With a loading controller (kvcache_chunks_set_loading_controller) a chunk whose load
 *     would not pay is left in its tier and planned as missing (computed as fresh) instead;
 *     kvcache_chunks_plan_loads says per chunk segment which was done. Buffer sizes are checked before
 *     anything is loaded (BUFFER_TOO_SMALL changes nothing), except after a load that failed: the plan
 *     then has other counts, which may not fit (the loads that succeeded stay in the pool, unheld; the
 *     failed variant is gone).
 * Allocation: the tiered calls allocate (block keys, load jobs); kvcache_chunks_fetch allocates nothing.
 * Loads are synchronous.
 */

/** Counters of a tiered chunk store. */
typedef struct kvcache_chunks_tier_stats {
    /** Bytes of one block's KV: kvcache_chunks_put and _fetch move n_blocks x block_bytes bytes. */
    int64_t block_bytes;
    /** Variants whose KV left the pool for a tier (some may have been dropped there since), variants
     *  loaded back, loads refused because a block was missing or corrupt. */
    int64_t spilled_variants;
    int64_t loaded_variants;
    int64_t failed_loads;
    /** The tiers' own counters. */
    kvcache_tier_stats tiers;
} kvcache_chunks_tier_stats;

/** Creates a tiered chunk store: the pool is config->device_blocks blocks of config->block_tokens
 *  tokens (the tiers' geometry: a block's KV is layers x 2 x kv_heads x head_dim x dtype_bytes bytes
 *  per token), the library's own or, with copy callbacks, the engine's; the host tier
 *  config->host_blocks blocks (at least 1), the disk tier as configured; at most `max_variants` variants
 *  per chunk; keys under `key_namespace` (NULL: ""). Release with kvcache_chunks_destroy. Statuses:
 *  NULL_POINTER, INVALID_ARGUMENT (as kvcache_tiers_create, no host tier, max_variants outside
 *  1...65536, another ABI), TIER_SYSTEM. */
kvcache_status kvcache_chunks_create_tiered_checked(uint32_t abi_version, size_t config_size,
                                                    const kvcache_tiers_config *config, int64_t max_variants,
                                                    const char *key_namespace, kvcache_chunks_t **out);
#define kvcache_chunks_create_tiered(config, max_variants, key_namespace, out)                          \
    kvcache_chunks_create_tiered_checked(KVCACHE_ABI_VERSION, sizeof(kvcache_tiers_config), (config), \
                                         (max_variants), (key_namespace), (out))

/** Writes the KV the engine computed for `variant` (kvcache_chunks_insert) into its pool blocks, block
 *  after block in token order, and marks it written: from now on an eviction copies it to host.
 *  n_bytes must be n_blocks x block_bytes. O(bytes), no allocation after the first put of a block.
 *  Statuses: NULL_HANDLE, NULL_POINTER (kv), INVALID_ARGUMENT (a store without tiers or with copy
 *  callbacks, an unknown variant, another size). */
kvcache_status kvcache_chunks_put(kvcache_chunks_t *chunks, uint64_t variant, const void *kv, size_t n_bytes);

/** Copies the KV of `variant` (in the pool: one a plan holds, loaded back if it came from a tier) into
 *  kv[0 ..< *n_bytes], block after block in token order. *n_bytes is set to n_blocks x block_bytes
 *  (also on BUFFER_TOO_SMALL). `kv` may be NULL when capacity is 0. O(bytes), no allocation.
 *  Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (a store without tiers or with copy callbacks,
 *  an unknown variant), BUFFER_TOO_SMALL. */
kvcache_status kvcache_chunks_fetch(kvcache_chunks_t *chunks, uint64_t variant, void *kv, size_t capacity,
                                    size_t *n_bytes);

/** The engine has written the KV of `variant` (kvcache_chunks_insert) into the variant's blocks itself
 *  (a store with copy callbacks; on the library's pool kvcache_chunks_put does it): from now on an
 *  eviction copies it to host through device_to_host. O(blocks). Statuses: NULL_HANDLE,
 *  INVALID_ARGUMENT (a store without tiers, an unknown variant). */
kvcache_status kvcache_chunks_mark_written(kvcache_chunks_t *chunks, uint64_t variant);

/** Completes the copy handed to the engine's callback with `token` (`ok` false: it failed; a variant
 *  whose load failed is never served). Any thread, once per token. O(1).
 *  Statuses: NULL_HANDLE, INVALID_ARGUMENT (not a pending copy of this store). */
kvcache_status kvcache_chunks_copy_done(kvcache_chunks_t *chunks, uint64_t token, bool ok);

/** Counters of a tiered store. O(chunks). Statuses: NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT (a store
 *  without tiers). */
kvcache_status kvcache_chunks_get_tier_stats(kvcache_chunks_t *chunks, kvcache_chunks_tier_stats *out);

/** CacheBlend's loading controller for a tiered store's plans. Per chunk a tier holds whole, it models
 *  loading the chunk's KV pipelined layer by layer under the selective recompute (the engine loads layer
 *  l + 1 while it recomputes layer l) and loads only when that is no slower than recomputing every token
 *  of the chunk; otherwise the chunk stays in its tier and the plan computes it as fresh. A loaded
 *  chunk's span is budgeted at the larger of the plan's ratio and the controller's (recompute raised
 *  until it takes as long as the load). Host is tried before disk where both hold it. Times are modelled from the recompute cost and the tiers' read
 *  bandwidths; layers and KV bytes per token are the store's geometry. */
typedef struct kvcache_loading_controller {
    /** The recompute cost: seconds per recomputed token and per attended (token, context token) pair,
     *  finite and >= 0, not both 0 (the figures kvcache_config's recompute_seconds_per_token and
     *  recompute_seconds_per_context_pair give PGDSF). */
    double recompute_seconds_per_token;
    double recompute_seconds_per_context_pair;
    /** The least fraction of a reused chunk recomputed, in [0, 1] (CacheBlend: 0.15). */
    double minimum_ratio;
    /** Read bandwidth into the pool of host memory and of disk (disk blocks pass through host), bytes
     *  per second; 0: the tiers' own estimate, a moving average of the loads they time (one clock),
     *  seeded by a calibration when the store is created. Read once per plan. */
    double host_bytes_per_second;
    double disk_bytes_per_second;
} kvcache_loading_controller;

/** Sets the loading controller of a tiered store's plans (copied), or with NULL removes it: without one
 *  (the default) every chunk a tier holds whole is loaded. O(1). Statuses: NULL_HANDLE,
 *  INVALID_ARGUMENT (a store without tiers, a cost, ratio or bandwidth out of range). */
kvcache_status kvcache_chunks_set_loading_controller(kvcache_chunks_t *chunks, const kvcache_loading_controller *controller);

/** What a tiered plan did with one chunk segment. */
enum kvcache_chunk_action {
    /** The variant was in the pool. */
    KVCACHE_CHUNK_IN_POOL = 0,
    /** Loaded into the pool for this plan from `tier`. */
    KVCACHE_CHUNK_LOADED = 1,
    /** Left in `tier`: the controller found recomputing it cheaper; computed as fresh. */
    KVCACHE_CHUNK_RECOMPUTE = 2,
    /** No tier held a whole variant, or its load failed: computed as fresh. */
    KVCACHE_CHUNK_MISSING = 3,
};

/** One chunk segment of a tiered plan and, when the controller decided, its modelled figures. */
typedef struct kvcache_chunk_load {
    /** Index of the segment in the plan's segments. */
    int64_t segment;
    kvcache_key chunk;
    /** One of enum kvcache_chunk_action. */
    int32_t action;
    /** One of enum kvcache_tier: HOST or DISK for LOADED and RECOMPUTE, DEVICE otherwise. */
    int32_t tier;
    /** Whether a controller decided (a tier held the chunk and a controller is set); the rest is 0 if not. */
    bool decided;
    /** The fraction of the chunk's tokens whose recompute still hides under its load (>= minimum_ratio). */
    double ratio;
    /** Modelled seconds: loading the chunk from the chosen tier; recomputing `ratio` of it; both
     *  pipelined; recomputing all of it (LOADED when pipelined_seconds <= recompute_all_seconds). */
    double load_seconds;
    double recompute_seconds;
    double pipelined_seconds;
    double recompute_all_seconds;
} kvcache_chunk_load;

/** The chunk segments of the open plan `plan_id` of a tiered store, in prompt order, into
 *  loads[0 ..< *n_loads]; *n_loads is set to the plan's chunk segments (also on BUFFER_TOO_SMALL).
 *  `loads` may be NULL when capacity is 0. O(chunk segments), no allocation. Statuses: NULL_HANDLE,
 *  NULL_POINTER, INVALID_ARGUMENT (a store without tiers, a plan that is not open), BUFFER_TOO_SMALL. */
kvcache_status kvcache_chunks_plan_loads(kvcache_chunks_t *chunks, uint64_t plan_id, kvcache_chunk_load *loads,
                                         size_t capacity, size_t *n_loads);

/* MARK: Metrics */

/** The cache's metrics in the Prometheus text exposition format (0.0.4), for a server's /metrics
 *  endpoint: kvcache:prefix_cache_queries and kvcache:prefix_cache_hits (prompt tokens asked about
 *  and found cached, as vLLM's prefix_cache_queries / prefix_cache_hits), kvcache:kv_cache_usage_perc
 *  (0...1) and kvcache:evicted_blocks (docs/METRICS.md). `*length` is always set to the text's length
 *  in bytes without the terminating NUL; the text and a NUL are written when `capacity` holds
 *  `*length + 1` bytes. Call with capacity 0 (out may be NULL) to learn the size. O(metrics); allocates.
 *  Statuses: NULL_HANDLE, NULL_POINTER, BUFFER_TOO_SMALL (nothing written). */
kvcache_status kvcache_metrics_text(kvcache_t *cache, char *out, size_t capacity, size_t *length);

#ifdef __cplusplus
}
#endif

#endif /* KVCACHE_H */
