/// A fixed-size open-addressing hash table from `BlockKey` to `BlockID` (linear probing,
/// backward-shift deletion, no tombstones).
///
/// Sized once for at most `maxEntries` keys at load factor <= 1/2, so it never grows: `find`,
/// `insert` and `remove` are O(1) expected and allocate nothing. Block keys are already uniform
/// hashes; a multiply-shift of both halves still spreads small synthetic keys (trace hash ids).
struct KeyIndex: Sendable {
    private var keys: [BlockKey]
    private var values: [BlockID]
    private let mask: Int
    private let shift: UInt64
    private(set) var count = 0

    private static let empty: BlockID = -1

    init(maxEntries: Int) {
        var size = 16
        while size < 2 * maxEntries { size <<= 1 }
        keys = Array(repeating: .zero, count: size)
        values = Array(repeating: Self.empty, count: size)
        mask = size - 1
        shift = UInt64(64 - size.trailingZeroBitCount)
    }

    @inline(__always)
    private func home(_ key: BlockKey) -> Int {
        Int(truncatingIfNeeded: ((key.lo ^ (key.hi &* 0xC2B2_AE3D_27D4_EB4F)) &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// The block holding `key`, if any. O(1) expected.
    @inline(__always)
    func find(_ key: BlockKey) -> BlockID? {
        var i = home(key)
        while true {
            let v = values[i]
            if v == Self.empty { return nil }
            if keys[i] == key { return v }
            i = (i + 1) & mask
        }
    }

    /// Adds `key -> block`. Precondition: `key` is absent and fewer than `maxEntries` keys are present.
    mutating func insert(_ key: BlockKey, _ block: BlockID) {
        var i = home(key)
        while values[i] != Self.empty {
            precondition(keys[i] != key, "duplicate key in KeyIndex")
            i = (i + 1) & mask
        }
        keys[i] = key
        values[i] = block
        count += 1
    }

    /// Removes `key`; returns whether it was present. Shifts later entries of the probe run back so
    /// that no tombstone is needed. O(1) expected.
    @discardableResult
    mutating func remove(_ key: BlockKey) -> Bool {
        var i = home(key)
        while true {
            if values[i] == Self.empty { return false }
            if keys[i] == key { break }
            i = (i + 1) & mask
        }
        var hole = i
        var j = i
        while true {
            j = (j + 1) & mask
            if values[j] == Self.empty { break }
            let h = home(keys[j])
            // Move entry j into the hole unless its home lies cyclically in (hole, j].
            let inRange = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if !inRange {
                keys[hole] = keys[j]
                values[hole] = values[j]
                hole = j
            }
        }
        keys[hole] = .zero
        values[hole] = Self.empty
        count -= 1
        return true
    }

    /// Drops every entry. O(table size).
    mutating func removeAll() {
        for i in values.indices { values[i] = Self.empty; keys[i] = .zero }
        count = 0
    }

    /// Calls `body` for every entry (validation only). O(table size).
    func forEach(_ body: (BlockKey, BlockID) throws(InvariantViolation) -> Void) throws(InvariantViolation) {
        for i in values.indices where values[i] != Self.empty { try body(keys[i], values[i]) }
    }
}
