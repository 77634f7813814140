// Quantized matrix-vector products for single-token decoding (see include/CKernels.h for the layout).
// The work per weight is one widening, one int-to-float conversion and one multiply-add; the AVX2 path
// does eight at a time and reads four rows per pass so that each activation load serves four rows.

#include "CKernels.h"
#include "KernelMath.h"

void kv_block_sums(const float *x, size_t blocks, float *sums) {
    for (size_t b = 0; b < blocks; b++) {
        float lanes[8] = {0};
        for (size_t j = 0; j < 32; j++) lanes[j % 8] += x[32 * b + j];
        sums[b] = kv_sum8(lanes);
    }
}

// MARK: Portable C (eight partial sums per row, which compilers vectorize for SSE2 and NEON)

void kv_q4_1_matvec_portable(const uint8_t *quants, const float *scales, const float *minimums,
                             size_t blocksPerRow, const float *x, const float *blockSums, float *y,
                             size_t rowBegin, size_t rowEnd, bool accumulate) {
    const size_t nb = blocksPerRow;
    for (size_t r = rowBegin; r < rowEnd; r++) {
        const uint8_t *q = quants + r * nb * 16;
        const float *d = scales + r * nb, *m = minimums + r * nb;
        float acc[8] = {0};
        float mins = 0;
        for (size_t b = 0; b < nb; b++) {
            const uint8_t *qb = q + 16 * b;
            const float *xb = x + 32 * b;
            float s[8];
            for (size_t j = 0; j < 8; j++) {
                s[j] = (float)(qb[j] & 0x0F) * xb[j] + (float)(qb[j + 8] & 0x0F) * xb[j + 8]
                     + (float)(qb[j] >> 4) * xb[j + 16] + (float)(qb[j + 8] >> 4) * xb[j + 24];
            }
            for (size_t j = 0; j < 8; j++) acc[j] += d[b] * s[j];
            mins += m[b] * blockSums[b];
        }
        const float v = kv_sum8(acc) + mins;
        y[r] = accumulate ? y[r] + v : v;
    }
}

void kv_q8_0_matvec_portable(const int8_t *quants, const float *scales, size_t blocksPerRow, const float *x,
                             float *y, size_t rowBegin, size_t rowEnd, bool accumulate) {
    const size_t nb = blocksPerRow;
    for (size_t r = rowBegin; r < rowEnd; r++) {
        const int8_t *q = quants + r * nb * 32;
        const float *d = scales + r * nb;
        float acc[8] = {0};
        for (size_t b = 0; b < nb; b++) {
            const int8_t *qb = q + 32 * b;
            const float *xb = x + 32 * b;
            float s[8];
            for (size_t j = 0; j < 8; j++) {
                s[j] = (float)qb[j] * xb[j] + (float)qb[j + 8] * xb[j + 8]
                     + (float)qb[j + 16] * xb[j + 16] + (float)qb[j + 24] * xb[j + 24];
            }
            for (size_t j = 0; j < 8; j++) acc[j] += d[b] * s[j];
        }
        const float v = kv_sum8(acc);
        y[r] = accumulate ? y[r] + v : v;
    }
}

// MARK: AVX2 + FMA

#if KV_X86

/// The row whose tile is prefetched while the tile at `r` is computed: two tiles ahead, which keeps a
/// single thread streaming at about 2x the rate the hardware prefetchers alone give on a 30 MB head;
/// the current tile near the end of the range, so no address past the matrix is formed.
static inline size_t kv_prefetch_row(size_t r, size_t rowEnd) {
    return r + 12 <= rowEnd ? r + 8 : r;
}

/// sum_j q_j x_j over one Q4_1 block (the block's scale and minimum not applied).
KV_AVX2 static inline __m256 kv_q4_1_block_dot(const uint8_t *qb, __m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    const __m256i low = _mm256_set1_epi32(0x0F);
    const __m256i w0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)qb));
    const __m256i w1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qb + 8)));
    __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(w0, low)), x0);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(w1, low)), x1, s);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w0, 4)), x2, s);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w1, 4)), x3, s);
}

/// sum_j q_j x_j over one Q8_0 block (the block's scale not applied).
KV_AVX2 static inline __m256 kv_q8_0_block_dot(const int8_t *qb, __m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)qb))), x0);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qb + 8)))), x1, s);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qb + 16)))), x2, s);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qb + 24)))), x3, s);
}

/// Rows r ..< r + tile (tile <= 4) of either format; `q4` and `tile` are constants at every call, so
/// each use compiles to its own straight-line loop. With `ahead`, prefetches the bytes that many rows on
/// at the rate this tile reads its own. A row's arithmetic is the same for any tile, so results do not
/// depend on how a range is split.
KV_AVX2 KV_INLINE static void kv_tile_avx2(bool q4, size_t tile, const uint8_t *quants, const float *scales,
                                        const float *minimums, size_t nb, const float *x, const float *blockSums,
                                        float *y, size_t r, const uint8_t *ahead, bool accumulate) {
    const size_t blockBytes = q4 ? 16 : 32;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (size_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
        const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
        if (ahead) {
            for (size_t line = 0; line < tile * blockBytes; line += 64) {
                _mm_prefetch((const char *)(ahead + tile * blockBytes * b + line), _MM_HINT_T0);
            }
        }
        for (size_t i = 0; i < tile; i++) {
            const size_t blk = (r + i) * nb + b;
            const uint8_t *qb = quants + blockBytes * blk;
            const __m256 dot = q4 ? kv_q4_1_block_dot(qb, x0, x1, x2, x3)
                                  : kv_q8_0_block_dot((const int8_t *)qb, x0, x1, x2, x3);
            acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(scales[blk]), dot, acc[i]);
        }
    }
    for (size_t i = 0; i < tile; i++) {
        float v = kv_hsum256(acc[i]);
        if (q4) v += kv_dot_avx2(minimums + (r + i) * nb, blockSums, nb);
        y[r + i] = accumulate ? y[r + i] + v : v;
    }
}

/// Four-row tiles (each activation load serves four rows), then single rows for the remainder.
KV_AVX2 KV_INLINE static void kv_matvec_avx2(bool q4, const uint8_t *quants, const float *scales,
                                          const float *minimums, size_t nb, const float *x, const float *blockSums,
                                          float *y, size_t rowBegin, size_t rowEnd, bool accumulate) {
    const size_t blockBytes = q4 ? 16 : 32;
    size_t r = rowBegin;
    for (; r + 4 <= rowEnd; r += 4) {
        const uint8_t *ahead = quants + kv_prefetch_row(r, rowEnd) * nb * blockBytes;
        kv_tile_avx2(q4, 4, quants, scales, minimums, nb, x, blockSums, y, r, ahead, accumulate);
    }
    for (; r < rowEnd; r++) kv_tile_avx2(q4, 1, quants, scales, minimums, nb, x, blockSums, y, r, NULL, accumulate);
}

KV_AVX2 static void kv_q4_1_matvec_avx2(const uint8_t *quants, const float *scales, const float *minimums,
                                        size_t nb, const float *x, const float *blockSums, float *y,
                                        size_t rowBegin, size_t rowEnd, bool accumulate) {
    kv_matvec_avx2(true, quants, scales, minimums, nb, x, blockSums, y, rowBegin, rowEnd, accumulate);
}

KV_AVX2 static void kv_q8_0_matvec_avx2(const int8_t *quants, const float *scales, size_t nb, const float *x,
                                        float *y, size_t rowBegin, size_t rowEnd, bool accumulate) {
    kv_matvec_avx2(false, (const uint8_t *)quants, scales, NULL, nb, x, NULL, y, rowBegin, rowEnd, accumulate);
}

#endif

// MARK: Dispatch

void kv_q4_1_matvec(const uint8_t *quants, const float *scales, const float *minimums, size_t blocksPerRow,
                    const float *x, const float *blockSums, float *y, size_t rowBegin, size_t rowEnd,
                    bool accumulate) {
    KV_DISPATCH(kv_q4_1_matvec_avx2(quants, scales, minimums, blocksPerRow, x, blockSums, y, rowBegin, rowEnd, accumulate),
                kv_q4_1_matvec_portable(quants, scales, minimums, blocksPerRow, x, blockSums, y, rowBegin, rowEnd, accumulate));
}

void kv_q8_0_matvec(const int8_t *quants, const float *scales, size_t blocksPerRow, const float *x, float *y,
                    size_t rowBegin, size_t rowEnd, bool accumulate) {
    KV_DISPATCH(kv_q8_0_matvec_avx2(quants, scales, blocksPerRow, x, y, rowBegin, rowEnd, accumulate),
                kv_q8_0_matvec_portable(quants, scales, blocksPerRow, x, y, rowBegin, rowEnd, accumulate));
}
