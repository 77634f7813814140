/// TinyLFU's frequency sketch (Einziger, Friedman, Manes 2017): an approximate count of how often
/// each block key was used over a recent history, including keys no longer cached, so a policy can
/// tell a block seen before (a returning prefix) from one seen for the first time. It also plays the
/// ghost queue's part: a key evicted from the cache is still counted here until the history ages.
///
/// A count-min sketch of 4 rows of saturating 8-bit counters (at most 15). Aging: once `history`
/// uses have been counted, every counter is halved (O(width), so O(1) amortised per use). The
/// estimate never undercounts the uses since the last halving (counts halve with age); collisions
/// may overcount, rarely with the default width of 4 counters per remembered use.
///
/// Fixed memory (4 x width bytes) allocated at init; no allocation per call. Single-threaded.
public struct FrequencySketch: Sendable {
    /// Uses counted between two halvings.
    public let history: Int
    /// Counters per row (a power of two).
    public let width: Int
    /// The most a counter (and so an estimate) reaches.
    public static let maxCount: UInt8 = 15
    private var counters: [UInt8]
    private var added = 0

    /// - Parameter history: uses to remember (about) before counts halve; at least 1.
    public init(history: Int) {
        self.history = max(1, history)
        var w = 64
        while w < 4 * self.history && w < 1 << 26 { w <<= 1 }
        width = w
        counters = Array(repeating: 0, count: 4 * w)
    }

    /// Counts one use of `key` and returns its estimate after it. O(1) amortised.
    @discardableResult
    public mutating func increment(_ key: BlockKey) -> Int {
        var least = Self.maxCount
        for row in 0 ..< 4 {
            let i = slot(key, row)
            if counters[i] < Self.maxCount { counters[i] += 1 }
            least = min(least, counters[i])
        }
        added += 1
        if added >= history { halve() }
        return Int(least)
    }

    /// Uses of `key` counted (approximately, see the type). O(1).
    public func estimate(_ key: BlockKey) -> Int {
        var least = Self.maxCount
        for row in 0 ..< 4 { least = min(least, counters[slot(key, row)]) }
        return Int(least)
    }

    /// Forgets every count. O(width).
    public mutating func reset() {
        for i in counters.indices { counters[i] = 0 }
        added = 0
    }

    private mutating func halve() {
        for i in counters.indices { counters[i] >>= 1 }
        added = 0
    }

    @inline(__always)
    private func slot(_ key: BlockKey, _ row: Int) -> Int {
        // Keys are already hashes: each row takes a differently mixed 64-bit word of the key.
        let word = (key.lo ^ (key.hi &* UInt64(2 * row + 1))) &* 0x9E37_79B9_7F4A_7C15
        return row * width + Int(truncatingIfNeeded: word >> 32) & (width - 1)
    }
}
