/* The event publisher of kvcache.h from C, for tools/capi/events_test.py: opens a cache, its tiers (a disk
 * tier) and its publisher from the configuration file given (events.enabled, the endpoints there), the
 * tiers' events added to the publisher, and a twin cache and twin tiers from the same file (the twin's disk
 * folder the one given) whose events are taken with kvcache_drain_events and kvcache_tiers_take_events
 * instead. Prints "ready", waits for a line on stdin (the subscriber is connected), then runs a seeded
 * random serving sequence on both (prompts over a few shared prefixes, lookups, prefill, decode, frees,
 * evictions in a small pool, blocks put on the disk tier), publishing after every step. Last it prints one
 * JSON line: the last batch's sequence number, the evictions, the blocks put on disk, and the twin's events
 * in order ([kind, tier, block_tokens, parent or null, [keys]], keys as 32 hex digits, hi then lo); then
 * waits for a second line before it closes the publisher (the replay socket stays up until then). Exits
 * non-zero on any unexpected status.
 * usage: events_driver CONFIG.yaml TWIN_DISK_FOLDER SEED STEPS */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "kvcache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { LIVE = 6, MAX_TOKENS = 256, FAMILIES = 4 };

static uint64_t state;
static uint32_t next_random(uint32_t bound) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((state >> 33) % bound);
}

/* One serving step on `cache`: prefill request `id` (tokens[0 ..< n]) then `decode` tokens; false when the
 * pool had no room (the request is freed again). */
static bool serve(kvcache_t *cache, kvcache_seq_id id, const uint32_t *tokens, size_t n, int decode) {
    kvcache_prefix_hit hit;
    kvcache_allocation alloc;
    CHECK(kvcache_add_sequence(cache, id, tokens, n, NULL, NULL, NULL, 0) == KVCACHE_OK);
    CHECK(kvcache_lookup(cache, id, &hit) == KVCACHE_OK);
    int64_t todo = (int64_t)n - hit.cached_tokens;
    if (kvcache_allocate(cache, id, todo, 1, &alloc) != KVCACHE_OK) {
        CHECK(kvcache_free_sequence(cache, id) == KVCACHE_OK);
        return false;
    }
    CHECK(kvcache_commit(cache, id, todo) == KVCACHE_OK);
    for (int i = 0; i < decode; i++) {
        uint32_t t = 50000 + (uint32_t)(id * 31 + i);
        CHECK(kvcache_append_tokens(cache, id, &t, 1) == KVCACHE_OK);
        if (kvcache_allocate(cache, id, 1, 0, &alloc) != KVCACHE_OK) break;
        CHECK(kvcache_commit(cache, id, 1) == KVCACHE_OK);
    }
    return true;
}

static void print_key(kvcache_key k) { printf("\"%016" PRIx64 "%016" PRIx64 "\"", k.hi, k.lo); }

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: events_driver CONFIG.yaml TWIN_DISK_FOLDER SEED STEPS\n"); return 2; }
    const char *path = argv[1];
    state = strtoull(argv[3], NULL, 10) * 2654435761ULL + 1;
    int steps = atoi(argv[4]);
    kvcache_t *cache = NULL, *twin = NULL;
    kvcache_tiers_t *tiers = NULL, *twin_tiers = NULL;
    kvcache_events_t *publisher = NULL;
    if (kvcache_create_from_file(path, &cache) != KVCACHE_OK || kvcache_create_from_file(path, &twin) != KVCACHE_OK
        || kvcache_tiers_create_from_config(path, NULL, NULL, NULL, &tiers) != KVCACHE_OK || !tiers
        || setenv("KVCACHE_TIERS_DISK_PATH", argv[2], 1) != 0
        || kvcache_tiers_create_from_config(path, NULL, NULL, NULL, &twin_tiers) != KVCACHE_OK || !twin_tiers
        || kvcache_events_open_from_config(cache, path, &publisher) != KVCACHE_OK || !publisher
        || kvcache_events_add_tiers(publisher, tiers) != KVCACHE_OK) {
        fprintf(stderr, "events_driver: %s\n", kvcache_last_error());
        return 1;
    }
    kvcache_tier_stats tier_stats;
    CHECK(kvcache_tiers_get_stats(tiers, &tier_stats) == KVCACHE_OK);
    static unsigned char block[1 << 16];
    if ((size_t)tier_stats.block_bytes > sizeof block) { fprintf(stderr, "events_driver: a block is too large\n"); return 1; }
    int disk_blocks = 0;
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 1;

    static kvcache_event events[1 << 14];
    static kvcache_key keys[1 << 16];
    static uint32_t tokens[MAX_TOKENS];
    kvcache_seq_id live[LIVE] = {0};
    kvcache_seq_id next_id = 1;
    int64_t last = -1;
    printf("{\"events\": [");
    bool first = true;
    for (int step = 0; step < steps; step++) {
        int slot = (int)next_random(LIVE);
        if (live[slot]) {  /* the request in this slot finishes */
            CHECK(kvcache_free_sequence(cache, live[slot]) == KVCACHE_OK);
            CHECK(kvcache_free_sequence(twin, live[slot]) == KVCACHE_OK);
            live[slot] = 0;
        } else {  /* a new request over one of the shared prefixes */
            uint32_t family = next_random(FAMILIES), prefix = 16 * (1 + next_random(4)), suffix = next_random(40);
            size_t n = 0;
            for (uint32_t i = 0; i < prefix; i++) tokens[n++] = 1000 * (family + 1) + i;
            for (uint32_t i = 0; i < suffix; i++) tokens[n++] = next_random(32000);
            int decode = (int)next_random(24);
            bool a = serve(cache, next_id, tokens, n, decode), b = serve(twin, next_id, tokens, n, decode);
            CHECK(a == b);
            if (a) live[slot] = next_id;
            next_id++;
        }
        if (next_random(4) == 0) {  /* a block written to the disk tier (a chain of one) */
            kvcache_key key = {((uint64_t)next_random(1u << 30) << 32) | 1, (uint64_t)step + 1};
            bool stored = false, twin_stored = false;
            CHECK(kvcache_tiers_disk_put(tiers, key, NULL, block, (size_t)tier_stats.block_bytes, &stored) == KVCACHE_OK);
            CHECK(kvcache_tiers_disk_put(twin_tiers, key, NULL, block, (size_t)tier_stats.block_bytes, &twin_stored)
                  == KVCACHE_OK);
            CHECK(stored && twin_stored);
            disk_blocks++;
        }
        int64_t seq = -2;
        CHECK(kvcache_events_publish(publisher, &seq) == KVCACHE_OK);
        if (seq >= 0) {
            CHECK(seq == last + 1);
            last = seq;
        }
        size_t n_events = 0, n_keys = 0, n_tier_events = 0, n_tier_keys = 0;
        const size_t events_room = sizeof events / sizeof *events, keys_room = sizeof keys / sizeof *keys;
        CHECK(kvcache_drain_events(twin, events, events_room, &n_events, keys, keys_room, &n_keys) == KVCACHE_OK);
        /* The tiers' events after the cache's, their keys after the cache's keys. */
        CHECK(kvcache_tiers_take_events(twin_tiers, events + n_events, events_room - n_events, &n_tier_events, keys + n_keys,
                                        keys_room - n_keys, &n_tier_keys) == KVCACHE_OK);
        for (size_t i = n_events; i < n_events + n_tier_events; i++) events[i].first_key += n_keys;
        n_events += n_tier_events;
        CHECK((n_events > 0) == (seq >= 0));
        for (size_t i = 0; i < n_events; i++) {
            const kvcache_event *e = &events[i];
            printf("%s[%d, %d, %" PRId64 ", ", first ? "" : ", ", e->kind, e->tier, e->block_tokens);
            first = false;
            if (e->has_parent) print_key(e->parent); else printf("null");
            printf(", [");
            for (size_t k = 0; k < e->key_count; k++) {
                if (k) printf(", ");
                print_key(keys[e->first_key + k]);
            }
            printf("]]");
        }
    }
    kvcache_stats twin_stats;
    CHECK(kvcache_get_stats(twin, &twin_stats) == KVCACHE_OK);
    printf("], \"last_seq\": %" PRId64 ", \"evicted_blocks\": %" PRId64 ", \"disk_blocks\": %d}\n", last,
           twin_stats.evicted_blocks, disk_blocks);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 1;  /* the subscriber has every batch (replay included) */
    CHECK(kvcache_events_close(publisher) == KVCACHE_OK);
    CHECK(kvcache_tiers_destroy(tiers) == KVCACHE_OK);  /* the publisher has let go of it */
    CHECK(kvcache_tiers_destroy(twin_tiers) == KVCACHE_OK);
    CHECK(kvcache_destroy(cache) == KVCACHE_OK);
    CHECK(kvcache_destroy(twin) == KVCACHE_OK);
    if (failures) { fprintf(stderr, "events_driver: %d failures\n", failures); return 1; }
    return 0;
}
