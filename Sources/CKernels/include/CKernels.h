#pragma once
/// Decode kernels for the reference engine: quantized matrix-vector products (Q4_1, Q8_0) and the
/// single-query attention dot/axpy over fp32 KV blocks; RoPE re-rotation of cached keys.
///
/// Every entry point picks its implementation at run time: AVX2+FMA intrinsics when the CPU has them
/// (x86-64), else portable C. The `_portable` variants are the fallback itself, exported so that tests
/// can check it on machines that would otherwise never run it. All functions are pure loops over
/// caller-owned memory: no allocation, no global state, safe to call from several threads on
/// disjoint outputs.

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The implementation the dispatching entry points use on this CPU.
typedef enum {
    KVKernelsISAPortable = 0,
    KVKernelsISAAVX2FMA = 1,
} KVKernelsISA;

/// The instruction set the dispatching kernels run with here (the CPU is asked once per call; cheap).
KVKernelsISA kv_kernels_isa(void);

// MARK: Quantized matrix-vector products
//
// A matrix has `blocksPerRow` blocks of 32 weights per row, row-major. Q4_1: `quants` holds 16 bytes a
// block (weight j in the low nibble of byte j, weight j+16 in the high nibble), `scales`/`minimums`
// one float each a block, and weight = scale * q + minimum. Q8_0: 32 signed bytes a block and
// weight = scale * q. `x` holds 32 * blocksPerRow floats. For each row r in [rowBegin, rowEnd):
// y[r] = sum of weight * x over the row (or y[r] += that when `accumulate`).
// O((rowEnd - rowBegin) x blocksPerRow x 32), no allocation.

/// Q4_1 product. `blockSums[b]` must be the sum of x[32b ..< 32b + 32] (see `kv_block_sums`).
void kv_q4_1_matvec(const uint8_t *quants, const float *scales, const float *minimums, size_t blocksPerRow,
                    const float *x, const float *blockSums, float *y, size_t rowBegin, size_t rowEnd,
                    bool accumulate);
/// Portable C version of `kv_q4_1_matvec`.
void kv_q4_1_matvec_portable(const uint8_t *quants, const float *scales, const float *minimums,
                             size_t blocksPerRow, const float *x, const float *blockSums, float *y,
                             size_t rowBegin, size_t rowEnd, bool accumulate);

/// Q8_0 product.
void kv_q8_0_matvec(const int8_t *quants, const float *scales, size_t blocksPerRow, const float *x, float *y,
                    size_t rowBegin, size_t rowEnd, bool accumulate);
/// Portable C version of `kv_q8_0_matvec`.
void kv_q8_0_matvec_portable(const int8_t *quants, const float *scales, size_t blocksPerRow, const float *x,
                             float *y, size_t rowBegin, size_t rowEnd, bool accumulate);

/// sums[b] = x[32b] + ... + x[32b + 31] for b < blocks. O(32 x blocks).
void kv_block_sums(const float *x, size_t blocks, float *sums);

// MARK: Single-token attention over fp32 KV blocks
//
// The few query rows of one KV head's group against one block of `count` cached positions, K and V
// read in place (`keyStride` / `valueStride` floats from one position to the next). Replaces tiny
// sgemm calls, whose fixed cost dominates at these sizes.

/// scores[r * scoreStride + t] = scale * dot(queries[r * headDim ...], keys[t * keyStride ...]) for
/// r < rows, t < count. O(rows x count x headDim).
void kv_attention_scores(const float *queries, size_t rows, size_t headDim, const float *keys, size_t keyStride,
                         size_t count, float scale, float *scores, size_t scoreStride);
/// Portable C version of `kv_attention_scores`.
void kv_attention_scores_portable(const float *queries, size_t rows, size_t headDim, const float *keys,
                                  size_t keyStride, size_t count, float scale, float *scores, size_t scoreStride);

/// out[r * headDim + i] (+)= sum over t < count of probs[r * probStride + t] * values[t * valueStride + i]
/// for r < rows, i < headDim (`+=` when `accumulate`). O(rows x count x headDim).
void kv_attention_values(const float *probs, size_t rows, size_t probStride, const float *values,
                         size_t valueStride, size_t count, size_t headDim, float *out, bool accumulate);
/// Portable C version of `kv_attention_values`.
void kv_attention_values_portable(const float *probs, size_t rows, size_t probStride, const float *values,
                                  size_t valueStride, size_t count, size_t headDim, float *out, bool accumulate);

// MARK: RoPE re-rotation of cached keys (PIE)
//
// Keys cached after RoPE at positions p move to p + delta when each rotated pair turns by
// delta x theta_i: rotations compose, R(delta) R(p) = R(p + delta). The caller computes the
// `ropeDims / 2` cosines and sines of delta x theta_i once per shift (see RopeRotator in KVChunks).
// `count` vectors (one head of one token each) start `stride` elements apart; only their first
// `ropeDims` elements are rotated (partial rotary), in place. O(count x ropeDims), no allocation.

/// The largest `ropeDims` the kernels take (their tables live on the stack).
#define KV_ROPE_MAX_DIMS 1024

/// Which dims form a rotated pair.
typedef enum {
    /// Pairs (2i, 2i+1): ggml's normal RoPE, the layout GGUF llama files use.
    KVRopeAdjacentPairs = 0,
    /// Pairs (i, i + ropeDims/2): GPT-NeoX and Hugging Face's rotate_half.
    KVRopeHalfSplit = 1,
} KVRopeLayout;

/// Rotates pair i of every vector by the angle with cosine `cosines[i]` and sine `sines[i]`:
/// (a, b) -> (a cos - b sin, a sin + b cos). `ropeDims` even, at most KV_ROPE_MAX_DIMS, <= stride.
void kv_rope_rotate_f32(float *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,
                        const float *cosines, const float *sines);
/// Portable C version of `kv_rope_rotate_f32`.
void kv_rope_rotate_f32_portable(float *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,
                                 const float *cosines, const float *sines);
/// `kv_rope_rotate_f32` on bf16 elements (each vector widened to fp32, rotated, rounded to nearest even).
void kv_rope_rotate_bf16(uint16_t *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,
                         const float *cosines, const float *sines);
/// `kv_rope_rotate_f32` on IEEE fp16 elements (widened, rotated, rounded to nearest even).
void kv_rope_rotate_f16(uint16_t *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,
                        const float *cosines, const float *sines);

// MARK: Worker pool for the decode products
//
// A decode step runs a few hundred short parallel loops (tens of microseconds each); waking a sleeping
// thread for each costs as much as the loop. The pool's workers spin briefly on a generation counter
// after each loop, so back-to-back loops start without a system call, and sleep on a condition
// variable once idle for longer (between requests), so an idle engine uses no CPU.

/// A pool of `threads - 1` worker threads; the caller of `kv_pool_run` works alongside them.
typedef struct KVWorkerPool KVWorkerPool;

/// One part of a parallel loop: `part` of `parts`, with the caller's context.
typedef void (*KVPoolTask)(void *context, int part, int parts);

/// Starts `threads - 1` workers (`threads` clamped to 1...256). NULL if a thread cannot be started
/// (those already started are stopped). O(threads).
KVWorkerPool *kv_pool_create(int threads);
/// Stops and joins the workers and frees the pool. Not while a `kv_pool_run` is in progress.
void kv_pool_destroy(KVWorkerPool *pool);
/// The number of participants (workers + the caller).
int kv_pool_threads(const KVWorkerPool *pool);
/// Runs `task(context, p, parts)` once for every p < parts and returns when all have finished. The
/// caller and the workers claim parts as they become free, so a thread that is late (asleep, or
/// descheduled on a busy machine) takes fewer; splitting into a few parts per thread balances the load.
/// No allocation. One caller at a time per pool.
void kv_pool_run(KVWorkerPool *pool, int parts, KVPoolTask task, void *context);

#ifdef __cplusplus
}
#endif
