// A spin-then-sleep worker pool for the decode loops (see include/CKernels.h).
//
// Protocol: `kv_pool_run` publishes the task and context, resets `finished`, stores the claim word
// (`count << 32 | 0`, release) and bumps `generation`. Every participant, the caller included, claims
// part indices with one fetch-add on the claim word until they run out, so a worker that is slow to wake
// (or descheduled on a busy machine) simply claims fewer parts; the caller then waits for
// `finished == count`. A fetch-add that reads an exhausted word claims nothing and reads no other field,
// so a late worker never touches the next run's task before that run's word is stored.
// A worker that sees no new generation for `kSpinNanoseconds` sleeps on the condition variable; it counts
// itself in `sleepers` and re-checks the generation under the mutex first, and the caller bumps the
// generation before reading `sleepers` (both sequentially consistent), so either the worker sees the new
// generation or the caller sees the sleeper and broadcasts: no lost wake-up.

#include "CKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define KV_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define KV_PAUSE() __asm__ __volatile__("yield")
#else
#define KV_PAUSE() ((void)0)
#endif

/// How long an idle worker spins before sleeping: longer than the gaps between a decode step's loops
/// (attention, norms: tens of microseconds), far shorter than a human-visible pause.
static const long long kSpinNanoseconds = 200000;

struct KVWorkerPool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    _Atomic unsigned generation;
    _Atomic uint64_t claims;   // part count << 32 | next part index
    _Atomic int finished;
    _Atomic int sleepers;
    _Atomic bool stopping;
    KVPoolTask task;     // written before `claims` is stored (release), read after a claim (acquire)
    void *context;
};

static long long kv_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/// Waits until `generation` differs from `seen` (or the pool stops); returns the new generation.
static unsigned kv_wait_for_work(KVWorkerPool *pool, unsigned seen) {
    const long long deadline = kv_now_ns() + kSpinNanoseconds;
    for (unsigned i = 1;; i++) {
        const unsigned g = atomic_load_explicit(&pool->generation, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&pool->stopping, memory_order_acquire)) return g;
        KV_PAUSE();
        if (i % 64 == 0) {
            if (kv_now_ns() > deadline) break;
            sched_yield();   // free on an idle core; on a busy machine, lets the caller's thread run
        }
    }
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add(&pool->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&pool->generation)) == seen && !atomic_load(&pool->stopping)) {
        pthread_cond_wait(&pool->wake, &pool->mutex);
    }
    atomic_fetch_sub(&pool->sleepers, 1);
    pthread_mutex_unlock(&pool->mutex);
    return g;
}

/// Claims and runs parts of the current run until none is left.
static void kv_pool_work(KVWorkerPool *pool) {
    for (;;) {
        const uint64_t word = atomic_fetch_add_explicit(&pool->claims, 1, memory_order_acq_rel);
        const int part = (int)(uint32_t)word, count = (int)(word >> 32);
        if (part >= count) return;
        pool->task(pool->context, part, count);
        atomic_fetch_add_explicit(&pool->finished, 1, memory_order_release);
    }
}

static void *kv_worker_main(void *argument) {
    KVWorkerPool *pool = argument;
    unsigned seen = 0;
    for (;;) {
        seen = kv_wait_for_work(pool, seen);
        if (atomic_load_explicit(&pool->stopping, memory_order_acquire)) return NULL;
        kv_pool_work(pool);
    }
}

/// Stops and joins the first `started` workers.
static void kv_pool_stop(KVWorkerPool *pool, int started) {
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stopping, true);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 0; i < started; i++) pthread_join(pool->workers[i], NULL);
}

/// Frees what `kv_pool_create` allocated (workers already stopped).
static void kv_pool_free(KVWorkerPool *pool) {
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mutex);
    free(pool->workers);
    free(pool);
}

KVWorkerPool *kv_pool_create(int threads) {
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    KVWorkerPool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->threads = threads;
    pool->workers = calloc((size_t)threads, sizeof(pthread_t));
    if (!pool->workers) { free(pool); return NULL; }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    for (int i = 1; i < threads; i++) {
        if (pthread_create(&pool->workers[i - 1], NULL, kv_worker_main, pool) != 0) {
            kv_pool_stop(pool, i - 1);
            kv_pool_free(pool);
            return NULL;
        }
    }
    return pool;
}

void kv_pool_destroy(KVWorkerPool *pool) {
    if (!pool) return;
    kv_pool_stop(pool, pool->threads - 1);
    kv_pool_free(pool);
}

int kv_pool_threads(const KVWorkerPool *pool) { return pool->threads; }

void kv_pool_run(KVWorkerPool *pool, int parts, KVPoolTask task, void *context) {
    if (parts < 1) return;
    if (pool->threads == 1 || parts == 1) {
        for (int p = 0; p < parts; p++) task(context, p, parts);
        return;
    }
    pool->task = task;
    pool->context = context;
    atomic_store_explicit(&pool->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->claims, (uint64_t)(uint32_t)parts << 32, memory_order_release);
    atomic_fetch_add(&pool->generation, 1);   // sequentially consistent, see the protocol above
    if (atomic_load(&pool->sleepers) > 0) {
        pthread_mutex_lock(&pool->mutex);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->mutex);
    }
    kv_pool_work(pool);
    // Parts still running were claimed by workers; give the core away if one of them waits for it.
    for (unsigned i = 1; atomic_load_explicit(&pool->finished, memory_order_acquire) < parts; i++) {
        KV_PAUSE();
        if (i % 64 == 0) sched_yield();
    }
}
