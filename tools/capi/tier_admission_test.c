/* A prompt's tier leg through kvcache.h from C: a cache with a tier manager attached (kvcache_tiers_attach)
 * over the engine's own copy callbacks, whose "device" is a byte array in host memory. Request A is
 * computed and recorded (kvcache_tiers_record_stored); request B evicts it, so its blocks are copied to
 * host through device_to_host; A's prompt again is loaded back through host_to_device
 * (kvcache_tiers_admit: loaded, not computed, its bytes the ones A wrote), and once more is a device hit.
 * The figures are checked; exits non-zero on any unexpected one. Built and run by tools/capi/smoke.sh. */
#include "kvcache.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

enum { BLOCK_TOKENS = 4, BLOCKS = 8, BLOCK_BYTES = 2 * 2 * 1 * 4 * 2 * BLOCK_TOKENS };

/* The engine: its device memory and the copies it performed. */
static struct {
    uint8_t memory[BLOCKS * BLOCK_BYTES];
    kvcache_tiers_t *tiers;
    int to_host, to_device;
} engine;

static void device_to_host(void *context, kvcache_block_id block, size_t offset, size_t length, void *host,
                           uint64_t token) {
    (void)context;
    memcpy(host, engine.memory + (size_t)block * BLOCK_BYTES + offset, length);
    engine.to_host++;
    CHECK(kvcache_tiers_copy_done(engine.tiers, token, true) == KVCACHE_OK);
}

static void host_to_device(void *context, kvcache_block_id block, size_t offset, size_t length, void *host,
                           uint64_t token) {
    (void)context;
    memcpy(engine.memory + (size_t)block * BLOCK_BYTES + offset, host, length);
    engine.to_device++;
    CHECK(kvcache_tiers_copy_done(engine.tiers, token, true) == KVCACHE_OK);
}

/* The byte the engine writes at `i` of the block holding `key`. */
static uint8_t pattern(kvcache_key key, size_t i) { return (uint8_t)(key.lo >> (8 * (i % 8))) ^ (uint8_t)i; }

/* Admits prompt `tokens` as sequence `id` computing every prompt token, "computes" what the admission
 * leaves (writing each full block's pattern), commits, records, checks the bytes of every block that came
 * from a cache, and frees the sequence. Returns the admission. */
static kvcache_tier_admission serve(kvcache_t *cache, kvcache_seq_id id, const uint32_t *tokens, size_t n) {
    kvcache_tier_admission a = {0};
    CHECK(kvcache_add_sequence(cache, id, tokens, n, NULL, NULL, NULL, 0) == KVCACHE_OK);
    CHECK(kvcache_tiers_admit(cache, engine.tiers, id, (int64_t)n, &a) == KVCACHE_OK);
    kvcache_key keys[16];
    kvcache_block_id table[16];
    size_t n_keys = 0, n_blocks = 0;
    CHECK(kvcache_prompt_keys(cache, id, keys, 16, &n_keys) == KVCACHE_OK);
    CHECK(kvcache_block_table(cache, id, table, 16, &n_blocks) == KVCACHE_OK);
    size_t from_cache = (size_t)(a.device_tokens + a.loaded_tokens) / BLOCK_TOKENS;
    for (size_t b = 0; b < n_keys; b++) {
        uint8_t *bytes = engine.memory + (size_t)table[b] * BLOCK_BYTES;
        for (size_t i = 0; i < BLOCK_BYTES; i++) {
            if (b < from_cache) {
                if (bytes[i] != pattern(keys[b], i)) { CHECK(!"a block from a cache holds its key's bytes"); break; }
            } else {
                bytes[i] = pattern(keys[b], i);
            }
        }
    }
    CHECK(kvcache_commit(cache, id, a.compute_tokens) == KVCACHE_OK);
    CHECK(kvcache_tiers_record_stored(cache, engine.tiers, id, a.device_tokens / BLOCK_TOKENS) == KVCACHE_OK);
    /* An admitted sequence is not admitted twice (nothing changes). */
    kvcache_tier_admission again = a;
    CHECK(kvcache_tiers_admit(cache, engine.tiers, id, (int64_t)n, &again) == KVCACHE_ERR_INVALID_ARGUMENT);
    CHECK(memcmp(&again, &a, sizeof a) == 0);
    CHECK(kvcache_free_sequence(cache, id) == KVCACHE_OK);
    CHECK(kvcache_validate(cache) == KVCACHE_OK && kvcache_tiers_validate(engine.tiers) == KVCACHE_OK);
    return a;
}

int main(void) {
    kvcache_config config;
    CHECK(kvcache_config_init(&config) == KVCACHE_OK);
    config.block_tokens = BLOCK_TOKENS;
    config.capacity_blocks = BLOCKS;
    kvcache_t *cache = NULL;
    CHECK(kvcache_create(&config, &cache) == KVCACHE_OK);
    kvcache_tiers_config tc;
    CHECK(kvcache_tiers_config_init(&tc) == KVCACHE_OK);
    tc.layers = 2; tc.kv_heads = 1; tc.head_dim = 4; tc.dtype_bytes = 2; tc.block_tokens = BLOCK_TOKENS;
    tc.device_blocks = BLOCKS;
    tc.host_blocks = 16;
    tc.layer_groups = 2;
    tc.synchronous_eviction_copies = true;
    tc.device_to_host = device_to_host;
    tc.host_to_device = host_to_device;
    CHECK(kvcache_tiers_create(&tc, &engine.tiers) == KVCACHE_OK);
    if (failures) return 1;

    /* No admission before the tiers are attached; attached once only. */
    uint32_t a_prompt[30], b_prompt[30];
    for (uint32_t i = 0; i < 30; i++) { a_prompt[i] = i; b_prompt[i] = 100 + i; }
    kvcache_tier_admission out;
    CHECK(kvcache_add_sequence(cache, 9, a_prompt, 30, NULL, NULL, NULL, 0) == KVCACHE_OK);
    CHECK(kvcache_tiers_admit(cache, engine.tiers, 9, 30, &out) == KVCACHE_ERR_INVALID_ARGUMENT);
    CHECK(kvcache_free_sequence(cache, 9) == KVCACHE_OK);
    CHECK(kvcache_tiers_attach(cache, engine.tiers) == KVCACHE_OK);
    CHECK(kvcache_tiers_attach(cache, engine.tiers) == KVCACHE_ERR_INVALID_ARGUMENT);

    /* A: nothing cached, all 30 tokens computed. */
    kvcache_tier_admission a = serve(cache, 1, a_prompt, 30);
    CHECK(a.device_tokens == 0 && a.loaded_tokens == 0 && a.compute_tokens == 30);
    /* B takes all 8 blocks: A's 7 cached full blocks are evicted, each copied to host (2 layer groups). */
    kvcache_tier_admission b = serve(cache, 2, b_prompt, 30);
    CHECK(b.device_tokens == 0 && b.loaded_tokens == 0 && b.compute_tokens == 30);
    CHECK(engine.to_host == 7 * 2);
    /* A again: its 7 blocks come back from host (7 x 2 copies), the last 2 tokens are computed. */
    kvcache_tier_admission c = serve(cache, 3, a_prompt, 30);
    CHECK(c.device_tokens == 0 && c.loaded_tokens == 28 && c.host_blocks == 7 && c.disk_blocks == 0);
    CHECK(c.failed_blocks == 0 && c.compute_tokens == 2);
    CHECK(engine.to_device == 7 * 2);
    /* And once more: a device hit, nothing loaded. */
    kvcache_tier_admission d = serve(cache, 4, a_prompt, 30);
    CHECK(d.device_tokens == 28 && d.loaded_tokens == 0 && d.compute_tokens == 2);
    kvcache_tier_stats stats;
    CHECK(kvcache_tiers_get_stats(engine.tiers, &stats) == KVCACHE_OK);
    CHECK(stats.host.loaded_blocks == 7 && stats.host.hits == 7);
    printf("tier admission: computed %lld, evicted to host %d copies, loaded %lld tokens (%d copies), device hit %lld tokens\n",
           (long long)(a.compute_tokens + b.compute_tokens), engine.to_host, (long long)c.loaded_tokens,
           engine.to_device, (long long)d.device_tokens);

    /* The tiers destroyed first: the cache keeps them until it goes. */
    CHECK(kvcache_tiers_destroy(engine.tiers) == KVCACHE_OK);
    CHECK(kvcache_destroy(cache) == KVCACHE_OK);
    if (failures) {
        fprintf(stderr, "tier_admission_test: %d failures\n", failures);
        return 1;
    }
    return 0;
}
