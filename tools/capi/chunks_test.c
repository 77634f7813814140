/* The chunk store through kvcache.h from C: two passages stored, a prompt planned around them (system
 * prompt as cached prefix, one missing passage, the question), the spans, recomputed positions and fresh
 * ranges checked, the hold until commit, and refusals that change nothing. Then a tiered store: passages
 * evicted to host and on to disk come back in a plan whose spans say HOST and DISK, with the bytes that
 * were put; with a loading controller, a passage on a slow disk is left there and recomputed while one on
 * host loads, and kvcache_chunks_plan_loads says which per segment; and a tiered store over the engine's
 * own device memory through copy callbacks. Exits non-zero on the first unexpected result. Built and run by tools/capi/smoke.sh. */
#define _POSIX_C_SOURCE 200809L  /* mkdtemp */
#include "kvcache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* The KV an engine computed for passage p: distinct bytes per passage. */
static void passage_kv(int p, unsigned char *kv, size_t n) {
    for (size_t i = 0; i < n; i++) kv[i] = (unsigned char)(p * 37 + i * 11 + (i >> 8));
}

/* Plans one chunk segment of passage `key` (8 tokens) and checks the span's tier and fetched bytes. */
static void plan_one(kvcache_chunks_t *c, kvcache_key key, int p, int32_t tier) {
    kvcache_prompt_segment seg[2] = {{KVCACHE_SEGMENT_FRESH, 3, {0, 0}}, {KVCACHE_SEGMENT_CHUNK, 8, {0, 0}}};
    seg[1].chunk = key;
    kvcache_reused_span span;
    int64_t recompute[8];
    kvcache_token_range fresh[2];
    kvcache_chunk_plan plan;
    kvcache_key none = {0, 0};
    CHECK(kvcache_chunks_plan(c, seg, 2, none, KVCACHE_SELECT_LEADING, 0.25, 0, &span, 1, recompute, 8, fresh, 2, &plan)
          == KVCACHE_OK);
    CHECK(plan.n_spans == 1 && plan.missing_chunks == 0 && span.tier == tier && span.target_start == 3);
    unsigned char want[512], got[512];
    size_t n = 0;
    passage_kv(p, want, sizeof want);
    CHECK(kvcache_chunks_fetch(c, span.variant, got, sizeof got, &n) == KVCACHE_OK && n == 512);
    CHECK(memcmp(want, got, sizeof got) == 0);
    CHECK(kvcache_chunks_commit(c, plan.plan_id) == KVCACHE_OK);
}

/* The engine's device memory for engine_copies(): 4 blocks of 256 bytes, and the store its copies report to. */
struct engine {
    unsigned char pool[4 * 256];
    kvcache_chunks_t *store;
    int copies;
};

/* Stores passage p (8 tokens, 2 blocks) in a tiered store as an engine does: key, insert, then on the
 * library's pool (e NULL) put (a wrong size refused) and a short fetch buffer refused with the size, or in
 * the engine's own memory `e` the bytes written there (put refused) and mark_written. */
static kvcache_key store_passage(kvcache_chunks_t *c, int p, struct engine *e) {
    uint32_t tokens[8];
    for (uint32_t i = 0; i < 8; i++) tokens[i] = (uint32_t)(1000 * p) + i;
    kvcache_key key = {0, 0}, none = {0, 0};
    CHECK(kvcache_chunks_key(c, tokens, 8, &key) == KVCACHE_OK);
    unsigned char kv[512];
    kvcache_block_id blocks[2];
    size_t nb = 0, n = 0;
    uint64_t v = 0;
    CHECK(kvcache_chunks_insert(c, key, 8, 0, none, NAN, &v, blocks, 2, &nb) == KVCACHE_OK && nb == 2);
    passage_kv(p, kv, sizeof kv);
    if (e) {
        CHECK(kvcache_chunks_put(c, v, kv, sizeof kv) == KVCACHE_ERR_INVALID_ARGUMENT);  /* the engine's memory */
        for (int b = 0; b < 2; b++) memcpy(e->pool + (size_t)blocks[b] * 256, kv + b * 256, 256);
        CHECK(kvcache_chunks_mark_written(c, v) == KVCACHE_OK);
        return key;
    }
    CHECK(kvcache_chunks_put(c, v, kv, 511) == KVCACHE_ERR_INVALID_ARGUMENT);  /* not n_blocks x block_bytes */
    CHECK(kvcache_chunks_put(c, v, kv, sizeof kv) == KVCACHE_OK);
    CHECK(kvcache_chunks_fetch(c, v, kv, 100, &n) == KVCACHE_ERR_BUFFER_TOO_SMALL && n == 512);
    return key;
}

/* The tiers of both tiered tests: 2-layer fp16 blocks of 4 tokens (256 bytes), a pool of 4 blocks, a
 * host tier of 2, the disk tier in `dir`. */
static void tiers_config(kvcache_tiers_config *config, const char *dir) {
    CHECK(kvcache_tiers_config_init(config) == KVCACHE_OK);
    config->layers = 2; config->kv_heads = 1; config->head_dim = 8; config->dtype_bytes = 2; config->block_tokens = 4;
    config->device_blocks = 4; config->host_blocks = 2; config->workers = 1; config->spill_watermark = 1;
    config->disk_directory = dir; config->disk_capacity_bytes = 1 << 22;
}

static int tiered(void) {
    int before = failures;
    char dir[] = "/tmp/kvcache-chunks-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    kvcache_tiers_config config;
    tiers_config(&config, dir);
    kvcache_chunks_t *c = NULL;
    config.host_blocks = 0;  /* no host tier: refused */
    CHECK(kvcache_chunks_create_tiered(&config, 2, "c-tiered", &c) == KVCACHE_ERR_INVALID_ARGUMENT && c == NULL);
    config.host_blocks = 2;
    CHECK(kvcache_chunks_create_tiered(&config, 2, "c-tiered", &c) == KVCACHE_OK);
    if (!c) return 1;
    kvcache_chunks_tier_stats ts;
    CHECK(kvcache_chunks_get_tier_stats(c, &ts) == KVCACHE_OK && ts.block_bytes == 256);
    /* Passages 0..3 of 8 tokens (2 blocks, 512 bytes): the pool holds 2, the host 1, the disk the rest. */
    kvcache_key keys[4], none = {0, 0};
    for (int p = 0; p < 4; p++) keys[p] = store_passage(c, p, NULL);
    CHECK(kvcache_chunks_get_tier_stats(c, &ts) == KVCACHE_OK && ts.spilled_variants == 2 && ts.loaded_variants == 0);
    CHECK(ts.tiers.disk.stored_blocks >= 2);
    /* A span buffer too short: refused before passage 0 is loaded. */
    kvcache_prompt_segment seg = {KVCACHE_SEGMENT_CHUNK, 8, {0, 0}};
    seg.chunk = keys[0];
    kvcache_chunk_plan plan;
    int64_t recompute[8];
    kvcache_token_range fresh[1];
    CHECK(kvcache_chunks_plan(c, &seg, 1, none, KVCACHE_SELECT_NONE, 0, 0, NULL, 0, recompute, 8, fresh, 1, &plan)
          == KVCACHE_ERR_BUFFER_TOO_SMALL && plan.n_spans == 1);
    CHECK(kvcache_chunks_get_tier_stats(c, &ts) == KVCACHE_OK && ts.loaded_variants == 0);
    plan_one(c, keys[1], 1, KVCACHE_TIER_HOST);  /* the last evicted is on host */
    plan_one(c, keys[0], 0, KVCACHE_TIER_DISK);  /* the first went on to disk */
    plan_one(c, keys[0], 0, KVCACHE_TIER_DEVICE);  /* loaded: in the pool now */
    CHECK(kvcache_chunks_get_tier_stats(c, &ts) == KVCACHE_OK && ts.loaded_variants == 2 && ts.failed_loads == 0);
    CHECK(kvcache_chunks_validate(c) == KVCACHE_OK);
    CHECK(kvcache_chunks_destroy(c) == KVCACHE_OK);
    char remove[64];
    snprintf(remove, sizeof remove, "rm -rf %s", dir);  /* the disk tier's folder */
    CHECK(system(remove) == 0);
    if (failures == before) printf("chunks over the tiers: ok\n");
    return failures != before;
}

/* A tiered store whose plans go through a loading controller: passage 0 on disk, 1 on host, 2 and 3 in
 * the pool (as in tiered()). */
static int controlled(void) {
    int before = failures;
    char dir[] = "/tmp/kvcache-chunks-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    kvcache_tiers_config config;
    tiers_config(&config, dir);
    kvcache_chunks_t *c = NULL, *plain = NULL;
    CHECK(kvcache_chunks_create_tiered(&config, 2, "c-tiered", &c) == KVCACHE_OK);
    if (!c) return 1;
    kvcache_key keys[4], none = {0, 0};
    unsigned char kv[512];
    for (int p = 0; p < 4; p++) keys[p] = store_passage(c, p, NULL);
    /* 1e-4 s per token: recomputing a passage takes 0.8 ms; loading its 512 bytes from a 1 B/s disk 512 s,
     * from 10 GB/s host memory 51 ns. */
    kvcache_loading_controller lc = {1e-4, 0, 0.15, 10e9, 1};
    lc.host_bytes_per_second = -1;
    CHECK(kvcache_chunks_set_loading_controller(c, &lc) == KVCACHE_ERR_INVALID_ARGUMENT);
    lc.host_bytes_per_second = 10e9;
    lc.minimum_ratio = 2;
    CHECK(kvcache_chunks_set_loading_controller(c, &lc) == KVCACHE_ERR_INVALID_ARGUMENT);
    lc.minimum_ratio = 0.15;
    CHECK(kvcache_chunks_create(8, 4, 2, NULL, &plain) == KVCACHE_OK);
    CHECK(kvcache_chunks_set_loading_controller(plain, &lc) == KVCACHE_ERR_INVALID_ARGUMENT);  /* no tiers */
    CHECK(kvcache_chunks_destroy(plain) == KVCACHE_OK);
    CHECK(kvcache_chunks_set_loading_controller(c, &lc) == KVCACHE_OK);
    kvcache_prompt_segment seg[4] = {{KVCACHE_SEGMENT_FRESH, 3, {0, 0}}, {KVCACHE_SEGMENT_CHUNK, 8, {0, 0}},
                                     {KVCACHE_SEGMENT_CHUNK, 8, {0, 0}}, {KVCACHE_SEGMENT_CHUNK, 8, {0, 0}}};
    seg[1].chunk = keys[0]; seg[2].chunk = keys[1]; seg[3].chunk = keys[3];
    kvcache_reused_span spans[3];
    int64_t recompute[32];
    kvcache_token_range fresh[4];
    kvcache_chunk_plan plan;
    CHECK(kvcache_chunks_plan(c, seg, 4, none, KVCACHE_SELECT_LEADING, 0.25, 0, spans, 3, recompute, 32, fresh, 4, &plan)
          == KVCACHE_OK);
    CHECK(plan.n_spans == 2 && plan.missing_chunks == 1);
    CHECK(spans[0].chunk.lo == keys[1].lo && spans[0].tier == KVCACHE_TIER_HOST && spans[1].tier == KVCACHE_TIER_DEVICE);
    CHECK(plan.n_fresh == 1 && fresh[0].start == 0 && fresh[0].end == 11);  /* the fresh text and passage 0 */
    kvcache_chunk_load loads[3];
    size_t n = 0;
    CHECK(kvcache_chunks_plan_loads(c, plan.plan_id, loads, 1, &n) == KVCACHE_ERR_BUFFER_TOO_SMALL && n == 3);
    CHECK(kvcache_chunks_plan_loads(c, plan.plan_id, loads, 3, &n) == KVCACHE_OK && n == 3);
    CHECK(loads[0].segment == 1 && loads[0].action == KVCACHE_CHUNK_RECOMPUTE && loads[0].tier == KVCACHE_TIER_DISK);
    CHECK(loads[0].decided && loads[0].load_seconds > loads[0].recompute_all_seconds);
    CHECK(loads[1].segment == 2 && loads[1].action == KVCACHE_CHUNK_LOADED && loads[1].tier == KVCACHE_TIER_HOST);
    CHECK(loads[1].decided && loads[1].pipelined_seconds <= loads[1].recompute_all_seconds && loads[1].ratio >= 0.15);
    CHECK(loads[2].segment == 3 && loads[2].action == KVCACHE_CHUNK_IN_POOL && !loads[2].decided);
    CHECK(kvcache_chunks_commit(c, plan.plan_id) == KVCACHE_OK);
    CHECK(kvcache_chunks_plan_loads(c, plan.plan_id, loads, 3, &n) == KVCACHE_ERR_INVALID_ARGUMENT);  /* committed */
    /* A fast disk: passage 0 loads from there, with the bytes that were put. */
    lc.disk_bytes_per_second = 100e9;
    CHECK(kvcache_chunks_set_loading_controller(c, &lc) == KVCACHE_OK);
    CHECK(kvcache_chunks_plan(c, &seg[1], 1, none, KVCACHE_SELECT_NONE, 0, 0, spans, 1, recompute, 32, fresh, 4, &plan) == KVCACHE_OK);
    CHECK(plan.n_spans == 1 && spans[0].tier == KVCACHE_TIER_DISK);
    CHECK(kvcache_chunks_plan_loads(c, plan.plan_id, loads, 3, &n) == KVCACHE_OK && n == 1 && loads[0].action == KVCACHE_CHUNK_LOADED);
    unsigned char want[512];
    passage_kv(0, want, sizeof want);
    CHECK(kvcache_chunks_fetch(c, spans[0].variant, kv, sizeof kv, &n) == KVCACHE_OK && memcmp(want, kv, sizeof kv) == 0);
    CHECK(kvcache_chunks_commit(c, plan.plan_id) == KVCACHE_OK);
    /* Measured bandwidths (0) and no controller (NULL) are accepted. */
    lc.host_bytes_per_second = 0; lc.disk_bytes_per_second = 0;
    CHECK(kvcache_chunks_set_loading_controller(c, &lc) == KVCACHE_OK);
    CHECK(kvcache_chunks_set_loading_controller(c, NULL) == KVCACHE_OK);
    CHECK(kvcache_chunks_validate(c) == KVCACHE_OK);
    CHECK(kvcache_chunks_destroy(c) == KVCACHE_OK);
    char remove[64];
    snprintf(remove, sizeof remove, "rm -rf %s", dir);
    CHECK(system(remove) == 0);
    if (failures == before) printf("chunks over the tiers with a loading controller: ok\n");
    return failures != before;
}

static void engine_to_host(void *context, kvcache_block_id block, size_t offset, size_t length, void *host, uint64_t token) {
    struct engine *e = context;
    memcpy(host, e->pool + (size_t)block * 256 + offset, length);
    e->copies++;
    CHECK(kvcache_chunks_copy_done(e->store, token, true) == KVCACHE_OK);
}

static void engine_to_device(void *context, kvcache_block_id block, size_t offset, size_t length, void *host, uint64_t token) {
    struct engine *e = context;
    memcpy(e->pool + (size_t)block * 256 + offset, host, length);
    e->copies++;
    CHECK(kvcache_chunks_copy_done(e->store, token, true) == KVCACHE_OK);
}

/* A tiered store over the engine's own device memory: the engine writes each passage into the blocks
 * insert returns and marks it written; evictions and loads go through its copy callbacks; a plan's span
 * blocks then hold the passage's bytes in the engine's memory. */
static int engine_copies(void) {
    int before = failures;
    char dir[] = "/tmp/kvcache-chunks-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    static struct engine e;
    kvcache_tiers_config config;
    tiers_config(&config, dir);
    config.device_to_host = engine_to_host;
    config.host_to_device = engine_to_device;
    config.copy_context = &e;
    CHECK(kvcache_chunks_create_tiered(&config, 2, "c-engine", &e.store) == KVCACHE_OK);
    kvcache_chunks_t *c = e.store;
    if (!c) return 1;
    kvcache_key keys[4], none = {0, 0};
    unsigned char kv[512];
    kvcache_block_id blocks[2];
    size_t nb = 0;
    for (int p = 0; p < 4; p++) keys[p] = store_passage(c, p, &e);
    CHECK(e.copies >= 2);  /* passages 0 and 1 left the engine's memory through its callback */
    CHECK(kvcache_chunks_copy_done(c, 1u << 30, true) == KVCACHE_ERR_INVALID_ARGUMENT);  /* no such copy */
    CHECK(kvcache_chunks_mark_written(c, 12345) == KVCACHE_ERR_INVALID_ARGUMENT);
    int order[3] = {1, 0, 0};
    int32_t tiers[3] = {KVCACHE_TIER_HOST, KVCACHE_TIER_DISK, KVCACHE_TIER_DEVICE};
    for (int i = 0; i < 3; i++) {
        kvcache_prompt_segment seg = {KVCACHE_SEGMENT_CHUNK, 8, {0, 0}};
        seg.chunk = keys[order[i]];
        kvcache_reused_span span;
        int64_t recompute[8];
        kvcache_token_range fresh[1];
        kvcache_chunk_plan plan;
        CHECK(kvcache_chunks_plan(c, &seg, 1, none, KVCACHE_SELECT_NONE, 0, 0, &span, 1, recompute, 8, fresh, 1, &plan) == KVCACHE_OK);
        CHECK(plan.n_spans == 1 && span.tier == tiers[i]);
        size_t n = 0;
        CHECK(kvcache_chunks_fetch(c, span.variant, kv, sizeof kv, &n) == KVCACHE_ERR_INVALID_ARGUMENT);
        CHECK(kvcache_chunks_blocks(c, span.variant, blocks, 2, &nb) == KVCACHE_OK && nb == 2);
        passage_kv(order[i], kv, sizeof kv);
        for (int b = 0; b < 2; b++) CHECK(memcmp(e.pool + (size_t)blocks[b] * 256, kv + b * 256, 256) == 0);
        CHECK(kvcache_chunks_commit(c, plan.plan_id) == KVCACHE_OK);
    }
    kvcache_chunks_tier_stats ts;
    CHECK(kvcache_chunks_get_tier_stats(c, &ts) == KVCACHE_OK && ts.loaded_variants == 2 && ts.failed_loads == 0);
    CHECK(kvcache_chunks_validate(c) == KVCACHE_OK);
    CHECK(kvcache_chunks_destroy(c) == KVCACHE_OK);
    char remove[64];
    snprintf(remove, sizeof remove, "rm -rf %s", dir);
    CHECK(system(remove) == 0);
    if (failures == before) printf("chunks over the tiers through the engine's copy callbacks: ok\n");
    return failures != before;
}

int main(void) {
    kvcache_chunks_t *c = NULL;
    CHECK(kvcache_chunks_create(16, 4, 2, "c-test", &c) == KVCACHE_OK);
    if (!c) return 1;
    uint32_t passage_a[10], passage_b[6];
    for (uint32_t i = 0; i < 10; i++) passage_a[i] = 100 + i;
    for (uint32_t i = 0; i < 6; i++) passage_b[i] = 500 + i;
    kvcache_key a, b, missing = {7, 7}, none = {0, 0};
    CHECK(kvcache_chunks_key(c, passage_a, 10, &a) == KVCACHE_OK);
    CHECK(kvcache_chunks_key(c, passage_b, 6, &b) == KVCACHE_OK);

    uint64_t va = 0, vb = 0;
    kvcache_block_id blocks[4];
    size_t nb = 0;
    CHECK(kvcache_chunks_insert(c, a, 10, 0, none, NAN, &va, blocks, 4, &nb) == KVCACHE_OK && nb == 3);
    CHECK(kvcache_chunks_insert(c, b, 6, 3, none, 0.25, &vb, blocks, 4, &nb) == KVCACHE_OK && nb == 2);

    kvcache_prompt_segment seg[5] = {
        {KVCACHE_SEGMENT_CACHED_PREFIX, 8, {0, 0}}, {KVCACHE_SEGMENT_CHUNK, 6, {0, 0}},
        {KVCACHE_SEGMENT_CHUNK, 2, {0, 0}},         {KVCACHE_SEGMENT_CHUNK, 10, {0, 0}},
        {KVCACHE_SEGMENT_FRESH, 5, {0, 0}},
    };
    seg[1].chunk = b; seg[2].chunk = missing; seg[3].chunk = a;
    kvcache_reused_span spans[5];
    int64_t recompute[32];
    kvcache_token_range fresh[5];
    kvcache_chunk_plan plan;
    /* Too short a span buffer: the counts, no plan, nothing held. */
    CHECK(kvcache_chunks_plan(c, seg, 5, none, KVCACHE_SELECT_LEADING, 0.25, 0, spans, 1, recompute, 32, fresh, 5, &plan)
          == KVCACHE_ERR_BUFFER_TOO_SMALL);
    CHECK(plan.n_spans == 2 && plan.plan_id == 0);
    CHECK(kvcache_chunks_remove(c, va) == KVCACHE_OK);  /* nothing held: removable */
    CHECK(kvcache_chunks_insert(c, a, 10, 0, none, NAN, &va, blocks, 4, &nb) == KVCACHE_OK);

    CHECK(kvcache_chunks_plan(c, seg, 5, none, KVCACHE_SELECT_LEADING, 0.25, 0, spans, 5, recompute, 32, fresh, 5, &plan)
          == KVCACHE_OK);
    CHECK(plan.plan_id != 0 && plan.prompt_tokens == 31 && plan.prefix_tokens == 8 && plan.missing_chunks == 1);
    CHECK(plan.n_spans == 2 && spans[0].variant == vb && spans[1].variant == va);
    CHECK(spans[0].target_start == 8 && spans[0].source_start == 3 && spans[1].target_start == 16);
    CHECK(spans[0].tier == KVCACHE_TIER_DEVICE && spans[0].recompute_budget == 2 && spans[1].recompute_budget == 3);
    CHECK(plan.n_recompute == 5 && recompute[0] == 8 && recompute[2] == 16 && recompute[4] == 18);
    CHECK(plan.n_fresh == 2 && fresh[0].start == 14 && fresh[0].end == 16 && fresh[1].start == 26 && fresh[1].end == 31);
    CHECK(kvcache_chunks_blocks(c, spans[1].variant, blocks, 4, &nb) == KVCACHE_OK && nb == 3);
    CHECK(kvcache_chunks_remove(c, va) == KVCACHE_ERR_BLOCKS_IN_USE);

    kvcache_chunks_stats st;
    CHECK(kvcache_chunks_get_stats(c, &st) == KVCACHE_OK && st.open_plans == 1 && st.variants == 2);
    CHECK(kvcache_chunks_validate(c) == KVCACHE_OK);
    CHECK(kvcache_chunks_commit(c, plan.plan_id) == KVCACHE_OK);
    CHECK(kvcache_chunks_commit(c, plan.plan_id) == KVCACHE_ERR_INVALID_ARGUMENT);
    CHECK(kvcache_chunks_remove(c, va) == KVCACHE_OK);
    CHECK(kvcache_chunks_get_stats(c, &st) == KVCACHE_OK && st.open_plans == 0 && st.variants == 1);
    /* Refusals. */
    seg[0].kind = 42;
    CHECK(kvcache_chunks_plan(c, seg, 5, none, KVCACHE_SELECT_NONE, 0, 0, spans, 5, recompute, 32, fresh, 5, &plan)
          == KVCACHE_ERR_INVALID_ARGUMENT);
    CHECK(kvcache_chunks_plan(NULL, seg, 5, none, 0, 0, 0, spans, 5, recompute, 32, fresh, 5, &plan) == KVCACHE_ERR_NULL_HANDLE);
    CHECK(kvcache_chunks_validate(c) == KVCACHE_OK);
    /* put and fetch need a tiered store. */
    unsigned char byte = 0;
    CHECK(kvcache_chunks_put(c, vb, &byte, 1) == KVCACHE_ERR_INVALID_ARGUMENT);
    CHECK(kvcache_chunks_destroy(c) == KVCACHE_OK);
    if (tiered() != 0) failures++;
    if (controlled() != 0) failures++;
    if (engine_copies() != 0) failures++;
    if (failures) return 1;
    printf("chunks: ok\n");
    return 0;
}
