/// A fixed-size open-addressing hash table from `BlockKey` to `BlockID` (linear probing,
/// backward-shift deletion, no tombstones) that also holds each keyed block's key, dense by id.
///
/// A block may hold a key without a table entry (`storeKey`): the prefix index keeps the
/// continuation blocks of a run that way and finds them through their parent, not the table.
/// `count` is the keyed blocks, `indexedCount` the table entries.
///
/// A slot is 8 bytes: a 32-bit tag (the high bits of the key's hash) beside the block id, so a probe
/// reads one small array (8 slots per cache line) and compares a key only when the tag matches;
/// the key itself is stored once, at its block (`key(of:)`). A slot's home is its tag's high bits,
/// so deletion shifts entries back without reading a key, and removing a block needs no key
/// comparison. Sized once for at most `maxEntries` keys at load factor <= 1/4 (short probe runs keep
/// the deletion's shift short; 1/2 above 2^30 entries, where the 32-bit tag's homes run out), 32 bytes
/// of slots per block, so it never grows:
/// `find`, `insert` and `remove` are O(1) expected and allocate nothing. Block keys are already
/// uniform hashes; a multiply-shift of both halves still spreads small synthetic keys (trace hash ids).
///
/// Slots and keys live in `OwnedBuffer`s, updated in place: the mutating calls assume that
/// `makeUnique()` ran since this value was last copied (the owner calls it once per call of its own).
struct KeyIndex {
    /// `tag << 32 | UInt32(bitPattern: block)`, or `empty`.
    private var slots: OwnedBuffer<UInt64>
    /// The key of each indexed block, `.zero` for a block that is not indexed.
    private var blockKeys: OwnedBuffer<BlockKey>
    private let mask: Int
    private let homeShift: UInt32
    /// Blocks holding a key (with or without a table entry).
    private(set) var count = 0
    /// Table entries.
    private(set) var indexedCount = 0

    private static let empty = UInt64.max  // block id -1: never a real block

    /// A table for block ids `0 ..< maxEntries` (at most `Int32.max`), at most one key each.
    init(maxEntries: Int) {
        var size = 16
        while size < 4 * maxEntries && size < 1 << 32 { size <<= 1 }  // homes come from a 32-bit tag
        slots = OwnedBuffer(repeating: Self.empty, count: size)
        blockKeys = OwnedBuffer(repeating: .zero, count: max(0, maxEntries))
        mask = size - 1
        homeShift = UInt32(32 - size.trailingZeroBitCount)
    }

    /// Gives this value buffers of its own (copies them when another value shares them), so that the
    /// mutating calls after it may write in place. O(1) when unshared.
    @inline(__always)
    mutating func makeUnique() {
        OwnedBuffer.makeUnique(&slots)
        OwnedBuffer.makeUnique(&blockKeys)
    }

    @inline(__always)
    private static func tag(_ key: BlockKey) -> UInt32 {
        UInt32(truncatingIfNeeded: ((key.lo ^ (key.hi &* 0xC2B2_AE3D_27D4_EB4F)) &* 0x9E37_79B9_7F4A_7C15) >> 32)
    }

    @inline(__always)
    private func home(_ tag: UInt32) -> Int { Int(truncatingIfNeeded: UInt64(tag) >> UInt64(homeShift)) }

    @inline(__always)
    private static func block(_ slot: UInt64) -> BlockID { BlockID(truncatingIfNeeded: slot) }

    /// Reads the slot where a probe for `key` starts, so that a later `find`, `insert` or `remove`
    /// finds its cache line loaded; the loads of several keys overlap. O(1).
    @inline(__always)
    func homeSlot(of key: BlockKey) -> UInt64 { slots[home(Self.tag(key))] }

    /// The key of an indexed block, `.zero` when the block is not indexed. O(1).
    @inline(__always)
    func key(of block: BlockID) -> BlockKey { blockKeys[Int(block)] }

    /// The block holding `key`, if any. O(1) expected.
    // Unchecked access: every slot index is masked into the table, and a slot's block id indexes
    // `blockKeys` (validate() checks both).
    @inline(__always)
    func find(_ key: BlockKey) -> BlockID? {
        let t = Self.tag(key)
        let (slots, keys) = (slots.base, blockKeys.base)
        var i = home(t)
        while true {
            let s = slots[i]
            if s == Self.empty { return nil }
            if UInt32(truncatingIfNeeded: s >> 32) == t && keys[Int(Self.block(s))] == key { return Self.block(s) }
            i = (i + 1) & mask
        }
    }

    /// Indexes `block` under `key`. Precondition: `key` is not `.zero` and absent, `block` is not
    /// indexed, fewer than `maxEntries` keys are present.
    mutating func insert(_ key: BlockKey, _ block: BlockID) {
        let found = findOrInsert(key, block)
        precondition(found == nil, "duplicate key in KeyIndex")
    }

    /// The block holding `key` if there is one; else indexes `block` under `key` and returns nil: one
    /// probe run for the look-up and the insert. Precondition: `key` is not `.zero`, `block` is not
    /// indexed, fewer than `maxEntries` keys are present. O(1) expected.
    @inline(__always)
    mutating func findOrInsert(_ key: BlockKey, _ block: BlockID) -> BlockID? {
        precondition(key != .zero && Int(block) >= 0 && Int(block) < blockKeys.count && blockKeys[Int(block)] == .zero,
                     "block \(block) indexed twice")
        let t = Self.tag(key)
        let (slots, keys) = (slots.base, blockKeys.base)
        var i = home(t)
        while true {
            let s = slots[i]
            if s == Self.empty { break }
            if UInt32(truncatingIfNeeded: s >> 32) == t && keys[Int(Self.block(s))] == key { return Self.block(s) }
            i = (i + 1) & mask
        }
        slots[i] = UInt64(t) << 32 | UInt64(UInt32(bitPattern: block))
        keys[Int(block)] = key
        count += 1
        indexedCount += 1
        return nil
    }

    /// Gives `block` the key `key` without a table entry (`find` will not see it). Precondition: `key`
    /// is not `.zero`, `block` holds no key. O(1).
    @inline(__always)
    mutating func storeKey(_ key: BlockKey, _ block: BlockID) {
        precondition(key != .zero && Int(block) >= 0 && Int(block) < blockKeys.count && blockKeys[Int(block)] == .zero,
                     "block \(block) keyed twice")
        blockKeys[Int(block)] = key
        count += 1
    }

    /// Takes the key of a block that `storeKey` keyed (no table entry). O(1).
    @inline(__always)
    mutating func dropKey(_ block: BlockID) {
        precondition(blockKeys[Int(block)] != .zero, "block \(block) holds no key")
        blockKeys[Int(block)] = .zero
        count -= 1
    }

    /// The keyed block holding `key`, table entry or not, by a scan of every block: for keys whose
    /// block the table does not index. O(blocks).
    func scan(for key: BlockKey) -> BlockID? {
        guard key != .zero, let b = blockKeys.buffer.firstIndex(of: key) else { return nil }
        return BlockID(b)
    }

    /// Unindexes `block`; returns whether it was keyed. Shifts later entries of the probe run back
    /// so that no tombstone is needed. Precondition: a keyed `block` has a table entry (else
    /// `dropKey`). O(1) expected.
    @discardableResult
    mutating func remove(_ block: BlockID) -> Bool {
        let key = blockKeys[Int(block)]
        guard key != .zero else { return false }
        let start = home(Self.tag(key))
        let m = mask, shift = homeShift
        let slots = slots.base
        var i = start
        while Self.block(slots[i]) != block { i = (i + 1) & m }  // present: the run reaches it
        var hole = i
        var j = i
        while true {
            j = (j + 1) & m
            let s = slots[j]
            if s == Self.empty { break }
            let h = Int(truncatingIfNeeded: (s >> 32) >> UInt64(shift))
            // Move entry j into the hole unless its home lies cyclically in (hole, j].
            let inRange = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j)
            if !inRange {
                slots[hole] = s
                hole = j
            }
        }
        slots[hole] = Self.empty
        blockKeys[Int(block)] = .zero
        count -= 1
        indexedCount -= 1
        return true
    }

    /// Drops every entry. O(table size + blocks).
    mutating func removeAll() {
        slots.buffer.update(repeating: Self.empty)
        blockKeys.buffer.update(repeating: .zero)
        count = 0
        indexedCount = 0
    }

    /// Calls `body` for every table entry, after checking that each slot's tag is its key's and lies
    /// on the probe run from its home, and that the counts agree with the slots and the keys
    /// (validation only).
    /// O(table size + blocks).
    func forEach(_ body: (BlockKey, BlockID) throws(InvariantViolation) -> Void) throws(InvariantViolation) {
        var entries = 0
        for (i, s) in slots.buffer.enumerated() where s != Self.empty {
            let b = Self.block(s)
            guard b >= 0, Int(b) < blockKeys.count, blockKeys[Int(b)] != .zero else {
                throw InvariantViolation("key index slot \(i) names block \(b), which has no key")
            }
            let t = Self.tag(blockKeys[Int(b)])
            guard UInt32(truncatingIfNeeded: s >> 32) == t else { throw InvariantViolation("key index tag of block \(b) is stale") }
            var j = home(t)
            while j != i {
                guard slots[j] != Self.empty else { throw InvariantViolation("key index entry of block \(b) is unreachable") }
                j = (j + 1) & mask
            }
            entries += 1
            try body(blockKeys[Int(b)], b)
        }
        let keyed = blockKeys.buffer.reduce(0) { $0 + ($1 == .zero ? 0 : 1) }
        guard entries == indexedCount, keyed == count, indexedCount <= count else {
            throw InvariantViolation("key index holds \(entries) slots and \(keyed) keys, counts say \(indexedCount) and \(count)")
        }
    }
}
