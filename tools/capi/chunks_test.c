/* The chunk store through kvcache.h from C: two passages stored, a prompt planned around them (system
 * prompt as cached prefix, one missing passage, the question), the spans, recomputed positions and fresh
 * ranges checked, the hold until commit, and refusals that change nothing. Then a tiered store: passages
 * evicted to host and on to disk come back in a plan whose spans say HOST and DISK, with the bytes that
 * were put. Exits non-zero on the first unexpected result. Built and run by tools/capi/smoke.sh. */
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

static int tiered(void) {
    int before = failures;
    char dir[] = "/tmp/kvcache-chunks-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    kvcache_tiers_config config;
    CHECK(kvcache_tiers_config_init(&config) == KVCACHE_OK);
    config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = 4;
    config.device_blocks = 4; config.host_blocks = 2; config.workers = 1; config.spill_watermark = 1;
    config.disk_directory = dir; config.disk_capacity_bytes = 1 << 22;
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
    unsigned char kv[512];
    kvcache_block_id blocks[2];
    size_t nb = 0;
    for (int p = 0; p < 4; p++) {
        uint32_t tokens[8];
        for (uint32_t i = 0; i < 8; i++) tokens[i] = (uint32_t)(1000 * p) + i;
        CHECK(kvcache_chunks_key(c, tokens, 8, &keys[p]) == KVCACHE_OK);
        uint64_t v = 0;
        CHECK(kvcache_chunks_insert(c, keys[p], 8, 0, none, NAN, &v, blocks, 2, &nb) == KVCACHE_OK && nb == 2);
        passage_kv(p, kv, sizeof kv);
        CHECK(kvcache_chunks_put(c, v, kv, 511) == KVCACHE_ERR_INVALID_ARGUMENT);  /* not n_blocks x block_bytes */
        CHECK(kvcache_chunks_put(c, v, kv, sizeof kv) == KVCACHE_OK);
        size_t n = 0;
        CHECK(kvcache_chunks_fetch(c, v, kv, 100, &n) == KVCACHE_ERR_BUFFER_TOO_SMALL && n == 512);
    }
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
    if (failures) return 1;
    printf("chunks: ok\n");
    return 0;
}
