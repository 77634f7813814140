// RoPE re-rotation of cached keys (PIE): every rotated pair of every vector turns by the same angles, the
// position shift times each pair's frequency (see include/CKernels.h). Reusing a chunk's KV at another
// position calls this once per layer and block; it streams the keys once, like a copy.

#include "CKernels.h"
#include "CPUFeatures.h"
#include <string.h>

// MARK: Portable C

static KV_INLINE void kv_rope_row_portable(float *v, size_t ropeDims, KVRopeLayout layout, const float *cosines,
                                           const float *sines) {
    const size_t pairs = ropeDims / 2;
    if (layout == KVRopeAdjacentPairs) {
        for (size_t i = 0; i < pairs; i++) {
            const float a = v[2 * i], b = v[2 * i + 1], c = cosines[i], s = sines[i];
            v[2 * i] = a * c - b * s;
            v[2 * i + 1] = a * s + b * c;
        }
    } else {
        for (size_t i = 0; i < pairs; i++) {
            const float a = v[i], b = v[i + pairs], c = cosines[i], s = sines[i];
            v[i] = a * c - b * s;
            v[i + pairs] = a * s + b * c;
        }
    }
}

void kv_rope_rotate_f32_portable(float *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,
                                 const float *cosines, const float *sines) {
    for (size_t t = 0; t < count; t++) kv_rope_row_portable(vectors + t * stride, ropeDims, layout, cosines, sines);
}

// MARK: AVX2 + FMA

#if KV_X86

KV_AVX2 static void kv_rope_rotate_f32_avx2(float *vectors, size_t count, size_t stride, size_t ropeDims,
                                            KVRopeLayout layout, const float *cosines, const float *sines) {
    const size_t pairs = ropeDims / 2;
    if (layout == KVRopeAdjacentPairs) {
        // Interleaved tables: cc = (c0 c0 c1 c1 ...), ss = (-s0 s0 -s1 s1 ...), so that with the pair-swapped
        // vector y = (b0 a0 b1 a1 ...) the result is x * cc + y * ss in one FMA per eight dims.
        float cc[KV_ROPE_MAX_DIMS], ss[KV_ROPE_MAX_DIMS];
        for (size_t i = 0; i < pairs; i++) {
            cc[2 * i] = cosines[i]; cc[2 * i + 1] = cosines[i];
            ss[2 * i] = -sines[i]; ss[2 * i + 1] = sines[i];
        }
        const size_t vec = ropeDims & ~(size_t)7;
        for (size_t t = 0; t < count; t++) {
            float *v = vectors + t * stride;
            size_t i = 0;
            for (; i < vec; i += 8) {
                const __m256 x = _mm256_loadu_ps(v + i);
                const __m256 y = _mm256_permute_ps(x, 0xB1);
                _mm256_storeu_ps(v + i, _mm256_fmadd_ps(x, _mm256_loadu_ps(cc + i),
                                                        _mm256_mul_ps(y, _mm256_loadu_ps(ss + i))));
            }
            for (; i < ropeDims; i += 2) {
                const float a = v[i], b = v[i + 1], c = cosines[i / 2], s = sines[i / 2];
                v[i] = a * c - b * s;
                v[i + 1] = a * s + b * c;
            }
        }
    } else {
        const size_t vec = pairs & ~(size_t)7;
        for (size_t t = 0; t < count; t++) {
            float *v = vectors + t * stride;
            size_t i = 0;
            for (; i < vec; i += 8) {
                const __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + pairs + i);
                const __m256 c = _mm256_loadu_ps(cosines + i), s = _mm256_loadu_ps(sines + i);
                _mm256_storeu_ps(v + i, _mm256_fmsub_ps(a, c, _mm256_mul_ps(b, s)));
                _mm256_storeu_ps(v + pairs + i, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
            }
            for (; i < pairs; i++) {
                const float a = v[i], b = v[i + pairs], c = cosines[i], s = sines[i];
                v[i] = a * c - b * s;
                v[i + pairs] = a * s + b * c;
            }
        }
    }
}

#endif

void kv_rope_rotate_f32(float *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,
                        const float *cosines, const float *sines) {
    KV_DISPATCH(kv_rope_rotate_f32_avx2(vectors, count, stride, ropeDims, layout, cosines, sines),
                kv_rope_rotate_f32_portable(vectors, count, stride, ropeDims, layout, cosines, sines));
}

// MARK: 16-bit element types (converted to fp32 per vector, rotated, rounded back to nearest even)

static KV_INLINE float kv_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static KV_INLINE uint16_t kv_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);  // NaN stays NaN
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

static KV_INLINE float kv_f16_to_f32(uint16_t h) {
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}

static KV_INLINE uint16_t kv_f32_to_f16(float f) {
    const _Float16 x = (_Float16)f;
    uint16_t h;
    memcpy(&h, &x, 2);
    return h;
}

#define KV_ROPE_16(name, toF32, fromF32)                                                                       \
    void name(uint16_t *vectors, size_t count, size_t stride, size_t ropeDims, KVRopeLayout layout,             \
              const float *cosines, const float *sines) {                                                       \
        float row[KV_ROPE_MAX_DIMS];                                                                            \
        for (size_t t = 0; t < count; t++) {                                                                    \
            uint16_t *v = vectors + t * stride;                                                                 \
            for (size_t i = 0; i < ropeDims; i++) row[i] = toF32(v[i]);                                         \
            kv_rope_rotate_f32(row, 1, ropeDims, ropeDims, layout, cosines, sines);                             \
            for (size_t i = 0; i < ropeDims; i++) v[i] = fromF32(row[i]);                                       \
        }                                                                                                       \
    }

KV_ROPE_16(kv_rope_rotate_bf16, kv_bf16_to_f32, kv_f32_to_bf16)
KV_ROPE_16(kv_rope_rotate_f16, kv_f16_to_f32, kv_f32_to_f16)
