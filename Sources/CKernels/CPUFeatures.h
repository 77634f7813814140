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

/// Runs the statement `avx2Call` where the CPU has AVX2 and FMA, else `portableCall` (on other
/// architectures only `portableCall` is compiled).
#if KV_X86
#define KV_DISPATCH(avx2Call, portableCall) \
    do { if (kv_cpu_has_avx2_fma()) { avx2Call; } else { portableCall; } } while (0)
#else
#define KV_DISPATCH(avx2Call, portableCall) do { portableCall; } while (0)
#endif

/// Inlined at every call, so that constant arguments specialise a shared kernel body.
#define KV_INLINE inline __attribute__((always_inline))
