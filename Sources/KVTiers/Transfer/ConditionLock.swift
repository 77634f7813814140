#if canImport(Glibc)
import Glibc
#endif

/// A mutex and a condition variable (pthread), for the places that must block: transfer completions and
/// the worker queue, and the state two threads share where ThreadSanitizer must see the lock (it does not
/// model `Synchronization.Mutex`). The primitives live in one heap allocation owned by this class (so their
/// addresses never move): making a lock costs two allocations, this object and that block.
package final class ConditionLock: @unchecked Sendable {
    // Sendable: every access to shared state goes through the pthread mutex below.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    /// The condition variable's offset in the shared block: after the mutex, aligned for it.
    private static let condOffset: Int = {
        let a = MemoryLayout<pthread_cond_t>.alignment
        return (MemoryLayout<pthread_mutex_t>.size + a - 1) / a * a
    }()

    package init() {
        let a = max(MemoryLayout<pthread_mutex_t>.alignment, MemoryLayout<pthread_cond_t>.alignment)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.condOffset + MemoryLayout<pthread_cond_t>.size, alignment: a)
        mutex = raw.bindMemory(to: pthread_mutex_t.self, capacity: 1)
        cond = (raw + Self.condOffset).bindMemory(to: pthread_cond_t.self, capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        UnsafeMutableRawPointer(mutex).deallocate()   // the block holds both
    }

    @inline(__always) package func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) package func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `body` with the mutex held.
    @inline(__always)
    package func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a signal; the mutex must be held.
    func wait() { pthread_cond_wait(cond, mutex) }

    /// Waits for a signal until the monotonic deadline (nanoseconds); returns false on timeout.
    func wait(untilMonotonicNanos deadline: UInt64) -> Bool {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        return pthread_cond_timedwait(cond, mutex, &ts) == 0
    }

    func broadcast() { pthread_cond_broadcast(cond) }
    func signal() { pthread_cond_signal(cond) }
}
