/*
 * A tiny serving loop over the C ABI of swift-kvcache (kvcache.h): two requests sharing a system
 * prompt, the second one hitting the prefix cache; a fork for parallel sampling with its
 * copy-on-write block copy; a refused allocation; events; stats. Exits non-zero on any status it
 * did not expect. Build and run: bash tools/capi/smoke.sh
 */
#include "kvcache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Every call must return `want`; otherwise print the status and the library's sentence and fail. */
#define EXPECT_STATUS(want, call)                                                                  \
    do {                                                                                           \
        kvcache_status got_ = (call);                                                              \
        if (got_ != (want)) {                                                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s: %s\n", __FILE__, __LINE__, #call, \
                    kvcache_status_name(got_), kvcache_status_name(want), kvcache_last_error());   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)
#define CHECK(call) EXPECT_STATUS(KVCACHE_OK, call)
#define REQUIRE(cond)                                                                     \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);           \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

enum { BLOCK_TOKENS = 16, SYSTEM_TOKENS = 48, MAX_PROMPT = 128 };

/* One prefill as a scheduler step would run it: register, ask the cache, allocate what is not
 * cached (plus one slot of lookahead for the first sampled token), "compute" it, commit. */
static kvcache_prefix_hit prefill(kvcache_t *cache, kvcache_seq_id id, const uint32_t *prompt, size_t n) {
    kvcache_prefix_hit hit;
    kvcache_allocation alloc;
    CHECK(kvcache_add_sequence(cache, id, prompt, n, "tenant-a", NULL, NULL, 0));
    CHECK(kvcache_lookup(cache, id, &hit));
    int64_t todo = (int64_t)n - hit.cached_tokens;
    CHECK(kvcache_allocate(cache, id, todo, 1, &alloc));
    /* ... the engine would run the forward pass over `todo` tokens here ... */
    CHECK(kvcache_commit(cache, id, todo));
    printf("request %" PRId64 ": %zu prompt tokens, %" PRId64 " cached, %" PRId64 " new blocks\n", id, n,
           hit.cached_tokens, alloc.new_blocks);
    return hit;
}

/* One decode step: the sampled token joins the sequence, gets a slot, is computed, committed. */
static void decode(kvcache_t *cache, kvcache_seq_id id, uint32_t token) {
    kvcache_allocation alloc;
    CHECK(kvcache_append_tokens(cache, id, &token, 1));
    CHECK(kvcache_allocate(cache, id, 1, 0, &alloc));
    CHECK(kvcache_commit(cache, id, 1));
}

int main(void) {
    REQUIRE(kvcache_abi_version() == KVCACHE_ABI_VERSION); /* kvcache_create checks it too */
    REQUIRE(kvcache_version() / 10000 == KVCACHE_VERSION_MAJOR);
    printf("libkvcache_c %s (ABI %u)\n", kvcache_version_string(), (unsigned)kvcache_abi_version());

    kvcache_config config;
    CHECK(kvcache_config_init(&config));
    config.block_tokens = BLOCK_TOKENS;
    config.capacity_blocks = 24;
    config.key_namespace = "SmolLM2-135M";
    config.record_events = true;
    kvcache_t *cache = NULL;
    CHECK(kvcache_create(&config, &cache));

    uint32_t a[MAX_PROMPT], b[MAX_PROMPT];
    for (int i = 0; i < SYSTEM_TOKENS; i++) a[i] = b[i] = 1000 + (uint32_t)i; /* shared system prompt */
    for (int i = 0; i < 20; i++) a[SYSTEM_TOKENS + i] = 5000 + (uint32_t)i;
    for (int i = 0; i < 12; i++) b[SYSTEM_TOKENS + i] = 7000 + (uint32_t)i;

    kvcache_prefix_hit hit = prefill(cache, 1, a, SYSTEM_TOKENS + 20);
    REQUIRE(hit.cached_tokens == 0);
    for (uint32_t t = 0; t < 5; t++) decode(cache, 1, 42 + t);
    hit = prefill(cache, 2, b, SYSTEM_TOKENS + 12);
    REQUIRE(hit.cached_tokens == SYSTEM_TOKENS); /* the second request hits the shared system prompt */

    /* Parallel sampling: request 2's second sample shares its blocks; the partial last block is
     * copied when the child writes into it. */
    CHECK(kvcache_fork(cache, 2, 3));
    decode(cache, 3, 99);
    size_t n_copies = 0;
    EXPECT_STATUS(KVCACHE_ERR_BUFFER_TOO_SMALL, kvcache_drain_copies(cache, NULL, 0, &n_copies));
    REQUIRE(n_copies == 1);
    kvcache_block_copy copies[4];
    CHECK(kvcache_drain_copies(cache, copies, 4, &n_copies));
    printf("copy-on-write: block %d -> block %d\n", copies[0].src, copies[0].dst);

    size_t table_len = 0;
    EXPECT_STATUS(KVCACHE_ERR_BUFFER_TOO_SMALL, kvcache_block_table(cache, 3, NULL, 0, &table_len));
    kvcache_block_id table[16];
    REQUIRE(table_len <= 16);
    CHECK(kvcache_block_table(cache, 3, table, 16, &table_len));
    printf("request 3 block table:");
    for (size_t i = 0; i < table_len; i++) printf(" %d", table[i]);
    printf("\n");
    REQUIRE(table[table_len - 1] == copies[0].dst);

    /* A request that does not fit is refused with nothing changed. */
    kvcache_allocation alloc;
    CHECK(kvcache_add_sequence(cache, 4, a, 100, NULL, NULL, NULL, 0));
    EXPECT_STATUS(KVCACHE_ERR_INSUFFICIENT_BLOCKS, kvcache_allocate(cache, 4, 100, 400, &alloc));
    printf("refused: %s\n", kvcache_last_error());
    REQUIRE(alloc.needed_blocks > alloc.available_blocks);
    EXPECT_STATUS(KVCACHE_ERR_UNKNOWN_SEQUENCE, kvcache_free_sequence(cache, 77));
    EXPECT_STATUS(KVCACHE_ERR_NULL_HANDLE, kvcache_commit(NULL, 1, 1));

    kvcache_event events[32];
    kvcache_key keys[64];
    size_t n_events = 0, n_keys = 0;
    CHECK(kvcache_drain_events(cache, events, 32, &n_events, keys, 64, &n_keys));
    printf("%zu events, %zu keys; first stored key %016" PRIx64 "%016" PRIx64 "\n", n_events, n_keys,
           keys[0].hi, keys[0].lo);
    REQUIRE(n_events > 0 && events[0].kind == KVCACHE_EVENT_BLOCK_STORED);

    for (kvcache_seq_id id = 1; id <= 4; id++) CHECK(kvcache_free_sequence(cache, id));
    CHECK(kvcache_validate(cache));
    kvcache_stats stats;
    CHECK(kvcache_get_stats(cache, &stats));
    printf("stats: %" PRId64 " lookups, hit rate %.3f, %" PRId64 " cached blocks, %" PRId64
           " copied, %" PRId64 " used of %" PRId64 "\n",
           stats.lookups, stats.hit_rate, stats.cached_blocks, stats.copied_blocks, stats.used_blocks,
           stats.capacity_blocks);
    REQUIRE(stats.used_blocks == 0 && stats.copied_blocks == 1 && stats.hit_tokens == SYSTEM_TOKENS);
    CHECK(kvcache_destroy(cache));
    printf("ok\n");
    return 0;
}
