// Single-token attention over fp32 KV blocks: query-key dots and the probability-weighted sum of values
// (see include/CKernels.h). A decode step calls these a few thousand times on tiny shapes (3 query
// rows, 16 positions, 64 dims for SmolLM2), where a loop beats a BLAS call's set-up.

#include "CKernels.h"
#include "KernelMath.h"

// MARK: Portable C

void kv_attention_scores_portable(const float *queries, size_t rows, size_t headDim, const float *keys,
                                  size_t keyStride, size_t count, float scale, float *scores, size_t scoreStride) {
    for (size_t r = 0; r < rows; r++) {
        const float *q = queries + r * headDim;
        for (size_t t = 0; t < count; t++) {
            const float *k = keys + t * keyStride;
            float lanes[8] = {0};
            size_t i = 0;
            for (; i + 8 <= headDim; i += 8) {
                for (size_t j = 0; j < 8; j++) lanes[j] += q[i + j] * k[i + j];
            }
            float dot = kv_sum8(lanes);
            for (; i < headDim; i++) dot += q[i] * k[i];
            scores[r * scoreStride + t] = scale * dot;
        }
    }
}

void kv_attention_values_portable(const float *probs, size_t rows, size_t probStride, const float *values,
                                  size_t valueStride, size_t count, size_t headDim, float *out, bool accumulate) {
    for (size_t r = 0; r < rows; r++) {
        float *o = out + r * headDim;
        const float *p = probs + r * probStride;
        if (!accumulate) {
            for (size_t i = 0; i < headDim; i++) o[i] = 0;
        }
        for (size_t t = 0; t < count; t++) {
            const float w = p[t], *v = values + t * valueStride;
            for (size_t i = 0; i < headDim; i++) o[i] += w * v[i];
        }
    }
}

// MARK: AVX2 + FMA

#if KV_X86

KV_AVX2 static void kv_attention_scores_avx2(const float *queries, size_t rows, size_t headDim, const float *keys,
                                             size_t keyStride, size_t count, float scale, float *scores,
                                             size_t scoreStride) {
    for (size_t r = 0; r < rows; r++) {
        const float *q = queries + r * headDim;
        for (size_t t = 0; t < count; t++) {
            scores[r * scoreStride + t] = scale * kv_dot_avx2(q, keys + t * keyStride, headDim);
        }
    }
}

KV_AVX2 static void kv_attention_values_avx2(const float *probs, size_t rows, size_t probStride, const float *values,
                                             size_t valueStride, size_t count, size_t headDim, float *out,
                                             bool accumulate) {
    for (size_t r = 0; r < rows; r++) {
        float *o = out + r * headDim;
        const float *p = probs + r * probStride;
        size_t i = 0;
        // 32 dims at a time: four independent accumulation chains over the positions.
        for (; i + 32 <= headDim; i += 32) {
            __m256 a0 = accumulate ? _mm256_loadu_ps(o + i) : _mm256_setzero_ps();
            __m256 a1 = accumulate ? _mm256_loadu_ps(o + i + 8) : _mm256_setzero_ps();
            __m256 a2 = accumulate ? _mm256_loadu_ps(o + i + 16) : _mm256_setzero_ps();
            __m256 a3 = accumulate ? _mm256_loadu_ps(o + i + 24) : _mm256_setzero_ps();
            for (size_t t = 0; t < count; t++) {
                const __m256 w = _mm256_set1_ps(p[t]);
                const float *v = values + t * valueStride + i;
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a3);
            }
            _mm256_storeu_ps(o + i, a0);
            _mm256_storeu_ps(o + i + 8, a1);
            _mm256_storeu_ps(o + i + 16, a2);
            _mm256_storeu_ps(o + i + 24, a3);
        }
        for (; i + 8 <= headDim; i += 8) {
            __m256 a = accumulate ? _mm256_loadu_ps(o + i) : _mm256_setzero_ps();
            for (size_t t = 0; t < count; t++) {
                a = _mm256_fmadd_ps(_mm256_set1_ps(p[t]), _mm256_loadu_ps(values + t * valueStride + i), a);
            }
            _mm256_storeu_ps(o + i, a);
        }
        for (; i < headDim; i++) {
            float a = accumulate ? o[i] : 0;
            for (size_t t = 0; t < count; t++) a += p[t] * values[t * valueStride + i];
            o[i] = a;
        }
    }
}

#endif

// MARK: Dispatch

void kv_attention_scores(const float *queries, size_t rows, size_t headDim, const float *keys, size_t keyStride,
                         size_t count, float scale, float *scores, size_t scoreStride) {
    KV_DISPATCH(kv_attention_scores_avx2(queries, rows, headDim, keys, keyStride, count, scale, scores, scoreStride),
                kv_attention_scores_portable(queries, rows, headDim, keys, keyStride, count, scale, scores, scoreStride));
}

void kv_attention_values(const float *probs, size_t rows, size_t probStride, const float *values,
                         size_t valueStride, size_t count, size_t headDim, float *out, bool accumulate) {
    KV_DISPATCH(kv_attention_values_avx2(probs, rows, probStride, values, valueStride, count, headDim, out, accumulate),
                kv_attention_values_portable(probs, rows, probStride, values, valueStride, count, headDim, out, accumulate));
}
