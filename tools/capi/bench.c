/*
 * Cost of a serving cycle through libkvcache_c, with every malloc in the process counted.
 *
 * One cycle is one request of a 256-token prompt whose first 240 tokens are cached (the same
 * prompt every time): add_sequence, lookup, allocate + commit of the uncached tokens, 16 decode
 * steps (append_tokens, allocate, commit), block_table, drain_copies, free_sequence. malloc,
 * calloc, realloc, posix_memalign, aligned_alloc and free are interposed (glibc), so calls made
 * inside the Swift library and its runtime are counted too. Prints one JSON object.
 *
 *   bash tools/capi/smoke.sh release     # builds the library (release)
 *   cc -O2 -std=gnu11 -ISources/CKVCache/include tools/capi/bench.c -L.build/release -lkvcache_c \
 *      -Wl,-rpath,$PWD/.build/release -o /tmp/capi-bench && /tmp/capi-bench
 */
#define _GNU_SOURCE
#include "kvcache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* MARK: counting allocator (glibc's own entry points underneath) */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static unsigned long long mallocs; /* single-threaded benchmark: no atomics needed */

void *malloc(size_t n) { mallocs++; return __libc_malloc(n); }
void *calloc(size_t n, size_t size) { mallocs++; return __libc_calloc(n, size); }
void *realloc(void *p, size_t n) { mallocs++; return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *aligned_alloc(size_t alignment, size_t n) { mallocs++; return __libc_memalign(alignment, n); }
void *memalign(size_t alignment, size_t n) { mallocs++; return __libc_memalign(alignment, n); }
int posix_memalign(void **out, size_t alignment, size_t n) {
    mallocs++;
    void *p = __libc_memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* MARK: the cycle */

#define CHECK(call)                                                                                 \
    do {                                                                                            \
        kvcache_status s_ = (call);                                                                 \
        if (s_ != KVCACHE_OK) {                                                                     \
            fprintf(stderr, "%s: %s (%s)\n", #call, kvcache_status_name(s_), kvcache_last_error()); \
            exit(1);                                                                                \
        }                                                                                           \
    } while (0)

enum { PROMPT = 256, DECODE = 16, CYCLES = 20000, WARMUP = 2000 };

static uint32_t prompt[PROMPT];
static kvcache_block_id table[64];
static kvcache_block_copy copies[8];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The per-request calls after add_sequence; returns the number of C calls made. */
static int serve(kvcache_t *cache, kvcache_seq_id id) {
    kvcache_prefix_hit hit;
    kvcache_allocation alloc;
    size_t n;
    CHECK(kvcache_lookup(cache, id, &hit));
    CHECK(kvcache_allocate(cache, id, PROMPT - hit.cached_tokens, 0, &alloc));
    CHECK(kvcache_commit(cache, id, PROMPT - hit.cached_tokens));
    for (uint32_t t = 0; t < DECODE; t++) {
        CHECK(kvcache_append_tokens(cache, id, &t, 1));
        CHECK(kvcache_allocate(cache, id, 1, 0, &alloc));
        CHECK(kvcache_commit(cache, id, 1));
    }
    CHECK(kvcache_block_table(cache, id, table, 64, &n));
    CHECK(kvcache_drain_copies(cache, copies, 8, &n));
    CHECK(kvcache_free_sequence(cache, id));
    return 3 + 3 * DECODE + 3;
}

int main(void) {
    for (int i = 0; i < PROMPT; i++) prompt[i] = (uint32_t)(i * 7919u % 128000u);
    kvcache_config config;
    CHECK(kvcache_config_init(&config));
    config.block_tokens = 16;
    config.capacity_blocks = 4096;
    kvcache_t *cache;
    unsigned long long before_create = mallocs;
    CHECK(kvcache_create(&config, &cache));
    unsigned long long create_mallocs = mallocs - before_create; /* shows the counter works: > 0 */

    kvcache_seq_id id = 0;
    for (int i = 0; i < WARMUP; i++, id++) {
        CHECK(kvcache_add_sequence(cache, id, prompt, PROMPT, NULL, NULL, NULL, 0));
        serve(cache, id);
    }
    unsigned long long add_mallocs = 0, serve_mallocs = 0;
    double add_s = 0, serve_s = 0;
    int calls = 0;
    for (int i = 0; i < CYCLES; i++, id++) {
        unsigned long long m0 = mallocs;
        double t0 = now();
        CHECK(kvcache_add_sequence(cache, id, prompt, PROMPT, NULL, NULL, NULL, 0));
        double t1 = now();
        unsigned long long m1 = mallocs;
        calls = serve(cache, id);
        double t2 = now();
        add_mallocs += m1 - m0;
        serve_mallocs += mallocs - m1;
        add_s += t1 - t0;
        serve_s += t2 - t1;
    }
    kvcache_stats stats;
    CHECK(kvcache_get_stats(cache, &stats));
    CHECK(kvcache_validate(cache));
    CHECK(kvcache_destroy(cache));
    printf("{\"cycles\": %d, \"calls_per_cycle\": %d, \"serve_ns_per_cycle\": %.0f, \"serve_ns_per_call\": %.1f, "
           "\"serve_mallocs_per_cycle\": %.3f, \"add_sequence_ns\": %.0f, \"add_sequence_mallocs\": %.3f, "
           "\"hit_rate\": %.4f, \"create_mallocs\": %llu}\n",
           CYCLES, calls, serve_s / CYCLES * 1e9, serve_s / CYCLES / calls * 1e9,
           (double)serve_mallocs / CYCLES, add_s / CYCLES * 1e9, (double)add_mallocs / CYCLES, stats.hit_rate, create_mallocs);
    return 0;
}
