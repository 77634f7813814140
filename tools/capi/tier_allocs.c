/*
 * Counts the heap allocations of the tier calls in steady state: this program defines malloc and its
 * relatives (forwarding to glibc's __libc_* entry points), so every allocation of libkvcache_c.so, its
 * static Swift runtime and its transfer threads included, passes through the counter below. After a
 * warm-up that grows every reused buffer, it runs `rounds` rounds of lookup, prepare_load, complete_load,
 * prepare_store, complete_store, touch and take_events over prompts of `prompt` blocks, with the engine's
 * copy callbacks completing each copy at once (the copies are memcpy between a device pool kept here
 * and the library's host blocks), and prints the allocations of each call per call. Exits 1 when any
 * call allocated in the measured rounds, 2 on an unexpected status.
 * Usage: tier-allocs [rounds] [prompt]   (defaults 200, 32)
 */
#define _GNU_SOURCE
#include "kvcache.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_long allocations;

void *malloc(size_t n) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **out, size_t a, size_t n) {
    void *p = memalign(a, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}

static long counted(void) { return atomic_load_explicit(&allocations, memory_order_acquire); }

/* The engine side: a device pool in plain memory, copies done at once. */
enum { LAYERS = 2, KV_HEADS = 2, HEAD_DIM = 8, DTYPE = 2, BLOCK_TOKENS = 4 };
#define BLOCK_BYTES ((size_t)LAYERS * 2 * KV_HEADS * HEAD_DIM * DTYPE * BLOCK_TOKENS)
static unsigned char *device;
static kvcache_tiers_t *tiers;

static void to_host(void *ctx, kvcache_block_id block, size_t offset, size_t length, void *host, uint64_t token) {
    (void)ctx;
    memcpy(host, device + (size_t)block * BLOCK_BYTES + offset, length);
    kvcache_tiers_copy_done(tiers, token, true);
}

static void to_device(void *ctx, kvcache_block_id block, size_t offset, size_t length, void *host, uint64_t token) {
    (void)ctx;
    memcpy(device + (size_t)block * BLOCK_BYTES + offset, host, length);
    kvcache_tiers_copy_done(tiers, token, true);
}

static void check(kvcache_status s, const char *what) {
    if (s != KVCACHE_OK) {
        fprintf(stderr, "tier-allocs: %s: status %d: %s\n", what, (int)s, kvcache_last_error());
        exit(2);
    }
}

enum { CALL_LOOKUP, CALL_PREPARE_LOAD, CALL_COMPLETE_LOAD, CALL_PREPARE_STORE, CALL_COMPLETE_STORE, CALL_TOUCH,
       CALL_TAKE_EVENTS, CALLS };
static const char *names[CALLS] = {"lookup", "prepare_load", "complete_load", "prepare_store", "complete_store",
                                   "touch", "take_events"};
static long per_call[CALLS];

#define COUNT(call, expr)                                   \
    do {                                                    \
        long before_ = counted();                           \
        check((expr), names[call]);                         \
        if (measuring) per_call[call] += counted() - before_; \
    } while (0)

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    int prompt = argc > 2 ? atoi(argv[2]) : 32;
    if (rounds < 1 || prompt < 1 || prompt > 4096) {
        fprintf(stderr, "usage: tier-allocs [rounds >= 1] [prompt 1...4096]\n");
        return 2;
    }
    int prompts = 5;   /* distinct prompts cycled; host holds 3, so each store evicts and copies */
    int device_blocks = 2 * prompt;
    device = calloc((size_t)device_blocks, BLOCK_BYTES);
    kvcache_tiers_config c;
    check(kvcache_tiers_config_init(&c), "config_init");
    c.layers = LAYERS; c.kv_heads = KV_HEADS; c.head_dim = HEAD_DIM; c.dtype_bytes = DTYPE;
    c.block_tokens = BLOCK_TOKENS; c.device_blocks = device_blocks; c.host_blocks = 3 * (int64_t)prompt + 8;
    c.layer_groups = 2; c.spill_watermark = 1; c.record_events = true;
    c.device_to_host = to_host; c.host_to_device = to_device;
    check(kvcache_tiers_create(&c, &tiers), "create");

    kvcache_key *keys = calloc((size_t)prompts * prompt, sizeof *keys);
    for (int i = 0; i < prompts * prompt; i++) keys[i] = (kvcache_key){.lo = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1), .hi = (uint64_t)i + 1};
    kvcache_block_id *blocks = calloc((size_t)prompt, sizeof *blocks);
    int32_t *locations = calloc((size_t)prompt, sizeof *locations);
    uint8_t *ok = calloc((size_t)prompt, 1);
    kvcache_event events[64];
    kvcache_key *event_keys = calloc(4096, sizeof *event_keys);

    int warmup = 20;
    for (int r = 0; r < warmup + rounds; r++) {
        int measuring = r >= warmup;
        const kvcache_key *k = keys + (size_t)(r % prompts) * prompt;
        /* Device blocks alternate halves so that a store never reuses the blocks just loaded. */
        for (int i = 0; i < prompt; i++) blocks[i] = (kvcache_block_id)((r % 2) * prompt + i);
        uint64_t id;
        size_t n, nk;
        COUNT(CALL_PREPARE_STORE, kvcache_tiers_prepare_store(tiers, blocks, k, (size_t)prompt, NULL, &id));
        COUNT(CALL_COMPLETE_STORE, kvcache_tiers_complete_store(tiers, id, ok, (size_t)prompt, &n));
        if (n != (size_t)prompt) { fprintf(stderr, "tier-allocs: stored %zu of %d\n", n, prompt); return 2; }
        kvcache_tier_lookup plan;
        COUNT(CALL_LOOKUP, kvcache_tiers_lookup(tiers, k, (size_t)prompt, 0, prompt, locations, (size_t)prompt, &plan));
        if (plan.host_blocks != prompt) { fprintf(stderr, "tier-allocs: %lld host blocks\n", (long long)plan.host_blocks); return 2; }
        for (int i = 0; i < prompt; i++) blocks[i] = (kvcache_block_id)(((r + 1) % 2) * prompt + i);
        COUNT(CALL_PREPARE_LOAD, kvcache_tiers_prepare_load(tiers, k, (size_t)prompt, 0, blocks, (size_t)prompt, &id));
        COUNT(CALL_COMPLETE_LOAD, kvcache_tiers_complete_load(tiers, id, ok, (size_t)prompt, &n));
        if (n != (size_t)prompt) { fprintf(stderr, "tier-allocs: loaded %zu of %d\n", n, prompt); return 2; }
        COUNT(CALL_TOUCH, kvcache_tiers_touch(tiers, k, (size_t)prompt, &n));
        COUNT(CALL_TAKE_EVENTS, kvcache_tiers_take_events(tiers, events, 64, &n, event_keys, 4096, &nk));
    }
    int bad = 0;
    printf("tier-allocs: %d rounds of %d-block prompts after %d warm-up rounds (all threads counted)\n",
           rounds, prompt, warmup);
    for (int i = 0; i < CALLS; i++) {
        printf("  %-15s %8.2f allocations per call (%ld in all)\n", names[i], (double)per_call[i] / rounds, per_call[i]);
        if (per_call[i] != 0) bad = 1;
    }
    check(kvcache_tiers_validate(tiers), "validate");
    check(kvcache_tiers_destroy(tiers), "destroy");
    printf(bad ? "tier-allocs: FAIL, a tier call allocated in steady state\n" : "tier-allocs: ok, no allocation\n");
    return bad;
}
