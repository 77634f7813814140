#pragma once
// Small arithmetic helpers shared by the kernel files (internal).

#include "CPUFeatures.h"
#include <stddef.h>

/// Sum of eight partial sums in a fixed order (the portable kernels' lane reduction).
static inline float kv_sum8(const float lanes[8]) {
    return ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
}

#if KV_X86
// AVX2+FMA helpers: only for functions marked KV_AVX2.

/// Horizontal sum of eight floats.
KV_AVX2 static inline float kv_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// sum_i a[i] * c[i] for i < n: two eight-lane accumulators, then a scalar tail. O(n).
KV_AVX2 static inline float kv_dot_avx2(const float *a, const float *c, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(c + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(c + i + 8), acc1);
    }
    if (i + 8 <= n) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(c + i), acc0);
        i += 8;
    }
    float v = kv_hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) v += a[i] * c[i];
    return v;
}

#endif
