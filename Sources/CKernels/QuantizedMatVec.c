// Quantized matrix-vector products for single-token decoding (see include/CKernels.h for the layout).
// The work per weight is one widening, one int-to-float conversion and one multiply-add; the AVX2 path
// does eight at a time and reads four rows per pass so that each activation load serves four rows.

#include "CKernels.h"
#include "AVX2Math.h"

void kv_block_sums(const float *x, size_t blocks, float *sums) {
    for (size_t b = 0; b < blocks; b++) {
        float lanes[8] = {0};
        for (size_t j = 0; j < 32; j++) lanes[j % 8] += x[32 * b + j];
        sums[b] = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    }
}

/// Sum of eight partial sums in a fixed order.
static inline float kv_sum8(const float lanes[8]) {
    return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
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

KV_AVX2 static void kv_q4_1_matvec_avx2(const uint8_t *quants, const float *scales, const float *minimums,
                                        size_t nb, const float *x, const float *blockSums, float *y,
                                        size_t rowBegin, size_t rowEnd, bool accumulate) {
    size_t r = rowBegin;
    for (; r + 4 <= rowEnd; r += 4) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        const uint8_t *ahead = quants + kv_prefetch_row(r, rowEnd) * nb * 16;
        for (size_t b = 0; b < nb; b++) {
            const float *xb = x + 32 * b;
            const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
            const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
            _mm_prefetch((const char *)(ahead + 64 * b), _MM_HINT_T0);
            for (size_t i = 0; i < 4; i++) {
                const size_t blk = (r + i) * nb + b;
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(scales[blk]),
                                         kv_q4_1_block_dot(quants + 16 * blk, x0, x1, x2, x3), acc[i]);
            }
        }
        for (size_t i = 0; i < 4; i++) {
            const float v = kv_hsum256(acc[i]) + kv_dot_avx2(minimums + (r + i) * nb, blockSums, nb);
            y[r + i] = accumulate ? y[r + i] + v : v;
        }
    }
    for (; r < rowEnd; r++) {
        __m256 acc = _mm256_setzero_ps();
        for (size_t b = 0; b < nb; b++) {
            const float *xb = x + 32 * b;
            const size_t blk = r * nb + b;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scales[blk]),
                                  kv_q4_1_block_dot(quants + 16 * blk, _mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8),
                                                    _mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)), acc);
        }
        const float v = kv_hsum256(acc) + kv_dot_avx2(minimums + r * nb, blockSums, nb);
        y[r] = accumulate ? y[r] + v : v;
    }
}

KV_AVX2 static void kv_q8_0_matvec_avx2(const int8_t *quants, const float *scales, size_t nb, const float *x,
                                        float *y, size_t rowBegin, size_t rowEnd, bool accumulate) {
    size_t r = rowBegin;
    for (; r + 4 <= rowEnd; r += 4) {
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        const int8_t *ahead = quants + kv_prefetch_row(r, rowEnd) * nb * 32;
        for (size_t b = 0; b < nb; b++) {
            const float *xb = x + 32 * b;
            const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);
            const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);
            _mm_prefetch((const char *)(ahead + 128 * b), _MM_HINT_T0);
            _mm_prefetch((const char *)(ahead + 128 * b + 64), _MM_HINT_T0);
            for (size_t i = 0; i < 4; i++) {
                const size_t blk = (r + i) * nb + b;
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(scales[blk]),
                                         kv_q8_0_block_dot(quants + 32 * blk, x0, x1, x2, x3), acc[i]);
            }
        }
        for (size_t i = 0; i < 4; i++) {
            const float v = kv_hsum256(acc[i]);
            y[r + i] = accumulate ? y[r + i] + v : v;
        }
    }
    for (; r < rowEnd; r++) {
        __m256 acc = _mm256_setzero_ps();
        for (size_t b = 0; b < nb; b++) {
            const float *xb = x + 32 * b;
            const size_t blk = r * nb + b;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scales[blk]),
                                  kv_q8_0_block_dot(quants + 32 * blk, _mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8),
                                                    _mm256_loadu_ps(xb + 16), _mm256_loadu_ps(xb + 24)), acc);
        }
        const float v = kv_hsum256(acc);
        y[r] = accumulate ? y[r] + v : v;
    }
}

#endif

// MARK: Dispatch

void kv_q4_1_matvec(const uint8_t *quants, const float *scales, const float *minimums, size_t blocksPerRow,
                    const float *x, const float *blockSums, float *y, size_t rowBegin, size_t rowEnd,
                    bool accumulate) {
#if KV_X86
    if (kv_cpu_has_avx2_fma()) {
        kv_q4_1_matvec_avx2(quants, scales, minimums, blocksPerRow, x, blockSums, y, rowBegin, rowEnd, accumulate);
        return;
    }
#endif
    kv_q4_1_matvec_portable(quants, scales, minimums, blocksPerRow, x, blockSums, y, rowBegin, rowEnd, accumulate);
}

void kv_q8_0_matvec(const int8_t *quants, const float *scales, size_t blocksPerRow, const float *x, float *y,
                    size_t rowBegin, size_t rowEnd, bool accumulate) {
#if KV_X86
    if (kv_cpu_has_avx2_fma()) {
        kv_q8_0_matvec_avx2(quants, scales, blocksPerRow, x, y, rowBegin, rowEnd, accumulate);
        return;
    }
#endif
    kv_q8_0_matvec_portable(quants, scales, blocksPerRow, x, y, rowBegin, rowEnd, accumulate);
}
