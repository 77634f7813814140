#pragma once
// Run-time instruction-set checks shared by the kernel files (internal, not part of the module).

#include <stdbool.h>

/// Whether this CPU (and OS) runs AVX2 and FMA code. A load and a test after the C runtime's
/// start-up probe, so cheap enough to ask on every kernel call.
static inline bool kv_cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
#define KV_X86 1
#include <immintrin.h>
/// Marks a function compiled for AVX2+FMA; call it only when `kv_cpu_has_avx2_fma()`.
#define KV_AVX2 __attribute__((target("avx2,fma")))
#else
#define KV_X86 0
#endif
