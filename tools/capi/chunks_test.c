/* The chunk store through kvcache.h from C: two passages stored, a prompt planned around them (system
 * prompt as cached prefix, one missing passage, the question), the spans, recomputed positions and fresh
 * ranges checked, the hold until commit, and refusals that change nothing. Exits non-zero on the first
 * unexpected result. Built and run by tools/capi/smoke.sh. */
#include "kvcache.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, kvcache_last_error()); \
            failures++;                                                                \
        }                                                                              \
    } while (0)

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
    CHECK(kvcache_chunks_destroy(c) == KVCACHE_OK);
    if (failures) return 1;
    printf("chunks: ok\n");
    return 0;
}
