import Synchronization

/// Counts arrivals of `n` parties; the last one learns whether all succeeded. Thread-safe, lock-free:
/// one allocation (this object).
final class Countdown: Sendable {
    private let left: Atomic<Int>
    private let failed = Atomic<Bool>(false)
    init(_ n: Int) { left = Atomic(n) }

    /// Returns nil for every arrival but the last, which gets whether all arrivals succeeded. O(1).
    func arrive(_ ok: Bool) -> Bool? {
        // Ordering: a failure is published before the count drops (release), and the last arrival's
        // acquire on the count sees every earlier failure.
        if !ok { failed.store(true, ordering: .relaxed) }
        let before = left.subtract(1, ordering: .acquiringAndReleasing).oldValue
        return before == 1 ? !failed.load(ordering: .relaxed) : nil
    }
}
