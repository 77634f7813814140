#if canImport(Glibc)
import Glibc
#else
#error("swift-kvcache builds on Linux only (libnuma, Glibc system calls)")
#endif

/// The project's one clock: every deadline, measured bandwidth, benchmark and wall-time figure reads
/// it. `monotonicNanos` is CLOCK_MONOTONIC (never goes back, unaffected by wall-clock changes);
/// `threadCPUNanos` is CLOCK_THREAD_CPUTIME_ID, the CPU time of the calling thread (benchmarks on a
/// shared machine). Each call is one vDSO `clock_gettime`, allocates nothing and cannot fail.
public enum KVClock {
    /// Monotonic time in nanoseconds. The corresponding C function is `clock_gettime(CLOCK_MONOTONIC)`.
    @inline(__always)
    public static func monotonicNanos() -> UInt64 { read(CLOCK_MONOTONIC) }

    /// CPU time of the calling thread in nanoseconds.
    /// The corresponding C function is `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
    @inline(__always)
    public static func threadCPUNanos() -> UInt64 { read(CLOCK_THREAD_CPUTIME_ID) }

    /// Seconds between two readings of either clock.
    @inline(__always)
    public static func seconds(from start: UInt64, to end: UInt64) -> Double { Double(end &- start) * 1e-9 }

    @inline(__always)
    private static func read(_ id: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
