import KVCache

/// A pseudo-random block key for test number `i` (distinct `salt`s give disjoint families). O(1).
public func testKey(_ i: Int, salt: UInt64 = 0) -> BlockKey {
    var r = SplitMix64(seed: UInt64(i) &+ salt &* 0x9E37)
    return BlockKey(lo: r.next(), hi: r.next())
}
