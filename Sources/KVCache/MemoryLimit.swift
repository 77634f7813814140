#if canImport(Glibc)
import Glibc
#else
#error("swift-kvcache builds on Linux only (libnuma, Glibc system calls)")
#endif

/// How much memory one allocation may ask for before it is refused instead of made: a buffer sized by
/// a number that came from outside (a flag, a file header, a C argument) is checked against this, so
/// an absurd size is a clear error and never a failed `malloc`, which Swift turns into a trap.
///
/// `usableBytes` is the smaller of the physical memory (`sysconf(_SC_PHYS_PAGES)`) and the soft
/// address-space limit (`getrlimit(RLIMIT_AS)`, e.g. `ulimit -v`). Each call is two system calls,
/// allocates nothing and cannot fail (an unknown value counts as unlimited).
public enum MemoryLimit {
    /// Bytes this process could hold at most. The corresponding C functions are `sysconf` and `getrlimit`.
    public static var usableBytes: Int {
        var limit = Int.max
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        if pages > 0, pageSize > 0 {
            let (bytes, overflow) = pages.multipliedReportingOverflow(by: pageSize)
            if !overflow { limit = bytes }
        }
        var r = rlimit()
        if getrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &r) == 0, r.rlim_cur != rlim_t.max {   // RLIM_INFINITY
            limit = min(limit, Int(clamping: r.rlim_cur))
        }
        return limit
    }

    /// `count x bytesEach`, or nil when it overflows or exceeds `fraction` of `usableBytes` (the rest
    /// is left for everything else the process holds). O(1).
    public static func checkedBytes(count: Int, bytesEach: Int, fraction: Double = 0.5) -> Int? {
        guard count >= 0, bytesEach >= 0 else { return nil }
        let (total, overflow) = count.multipliedReportingOverflow(by: bytesEach)
        guard !overflow, Double(total) <= Double(usableBytes) * fraction else { return nil }
        return total
    }
}
