/// How often a prefix recurred, approximately: a count-min sketch over 64-bit prefix hashes, four rows of
/// `width` saturating 8-bit counters, halved every `width` additions so that old popularity fades
/// (TinyLFU's aging). An estimate never undercounts the additions since the last halving (up to the
/// counters' 255).
///
/// Fixed storage allocated once; `add` and `estimate` are O(rows), allocate nothing and cannot fail.
/// `hash(_:count:)` is the prefix hash the adaptive policy counts (a multiply-xorshift chain over the
/// prefix's length and last 64 token ids, O(1) per prefix); it is stable across runs (no per-process
/// seed), so a replay is deterministic.
public struct RecurrenceSketch: Sendable {
    static let rows = 4
    private var counters: [UInt8]
    private let width: Int
    private var additions = 0

    /// `width` is rounded up to a power of two (at least 64).
    public init(width: Int = 4096) {
        var w = 64
        while w < width { w <<= 1 }
        self.width = w
        counters = [UInt8](repeating: 0, count: Self.rows * w)
    }

    @inline(__always) private func index(_ hash: UInt64, row: Int) -> Int {
        let mixed = (hash ^ (hash >> 29)) &* (0x9E37_79B9_7F4A_7C15 &+ UInt64(row) &* 0xBF58_476D_1CE4_E5B9)
        return row * width + Int(truncatingIfNeeded: mixed >> 32) & (width - 1)
    }

    /// Counts one occurrence of `hash`.
    public mutating func add(_ hash: UInt64) {
        for r in 0 ..< Self.rows {
            let i = index(hash, row: r)
            if counters[i] < .max { counters[i] += 1 }
        }
        additions += 1
        if additions >= width {
            additions = 0
            for i in counters.indices { counters[i] >>= 1 }
        }
    }

    /// The estimated occurrences of `hash` (the minimum over the rows).
    public func estimate(_ hash: UInt64) -> Int {
        var m = Int(UInt8.max)
        for r in 0 ..< Self.rows { m = min(m, Int(counters[index(hash, row: r)])) }
        return m
    }

    /// Tokens of a prefix's tail that its hash reads.
    public static let hashedTail = 64

    /// The hash of the prefix `tokens[0 ..< count]`, from its length and its last `hashedTail` tokens:
    /// O(1) in the prefix's length. Two prefixes of one length that differ only before their last 64
    /// tokens share a hash and so a count (the sketch overestimates them, as it does on a collision).
    public static func hash(_ tokens: UnsafeBufferPointer<Int32>, count: Int) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(count)
        for i in max(0, count - hashedTail) ..< count {
            h = (h ^ UInt64(UInt32(bitPattern: tokens[i]))) &* 0x100_0000_01B3
            h ^= h >> 31
        }
        return h
    }
}
