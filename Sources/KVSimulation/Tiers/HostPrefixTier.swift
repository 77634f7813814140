import KVCache
import KVPlan
import KVScheduler

/// The modelled engine's host-memory (L2) prefix tier: the keys of blocks evicted from the device
/// cache, kept in LRU order up to a capacity in blocks.
///
/// It holds keys only: the modelled engine moves no bytes, it charges each load's bytes to the step's
/// host-link traffic (`StepWork.hostTransferBytes`). The real data path is `KVTierManager` (KVTiers).
/// Write-back, as RAGCache does: a block enters the tier when it leaves the device (`willEvict`), and
/// stays after being loaded back (inclusive), so a block evicted again costs no second copy; a
/// re-evicted or loaded block becomes the most recent. When full, the least recently used key is
/// dropped.
///
/// Every operation is O(1) per block (a hash lookup and list splicing); storage grows with use up to
/// `capacityBlocks` nodes and is then reused. Single-threaded, like the cache manager that calls it.
///
/// As `StepHostCopies` it reports its write-backs (keys stored) since the last drain, for an engine
/// that charges copies down to the host link (`ModelledRunConfig.chargesHostWrites`).
public final class HostPrefixTier: BlockEvictionObserver, PrefixLoadSource, StepHostCopies {
    /// Counters over the tier's life.
    public struct Stats: Sendable, Equatable {
        /// Keys stored (first time a block left the device, or again after being dropped).
        public var stored = 0
        /// Evictions of blocks the tier already held (no copy needed).
        public var alreadyHeld = 0
        /// Keys dropped to make room.
        public var dropped = 0
        /// Blocks loaded back to the device.
        public var loadedBlocks = 0
        public init() {}
    }

    public let capacityBlocks: Int
    public private(set) var stats = Stats()

    private var nodeOf: [BlockKey: Int32] = [:]
    private var keys: [BlockKey] = []
    /// Towards the most recent / the least recent; -1 ends the list.
    private var newer: [Int32] = []
    private var older: [Int32] = []
    private var mostRecent: Int32 = -1
    private var leastRecent: Int32 = -1

    /// A tier of `capacityBlocks` blocks (0 or less: a tier that stores nothing).
    public init(capacityBlocks: Int) {
        self.capacityBlocks = max(0, capacityBlocks)
        nodeOf.reserveCapacity(min(self.capacityBlocks, 1 << 16))
    }

    /// Keys held.
    public var count: Int { nodeOf.count }

    private var storedAtDrain = 0

    /// Keys stored since the last call (each a block copied down). O(1).
    public func drainStepHostBlocks() -> Int {
        defer { storedAtDrain = stats.stored }
        return stats.stored - storedAtDrain
    }

    public var reportsPrefixLoads: Bool { false }

    /// Whether the tier holds `key`. O(1).
    public func contains(_ key: BlockKey) -> Bool { nodeOf[key] != nil }

    // MARK: BlockEvictionObserver

    /// A device block left the cache: its key becomes the most recent (stored if new). O(1).
    public func willEvict(block: BlockID, key: BlockKey) {
        guard capacityBlocks > 0 else { return }
        if let n = nodeOf[key] {
            stats.alreadyHeld += 1
            moveToFront(n)
            return
        }
        let n: Int32
        if keys.count < capacityBlocks {
            n = Int32(keys.count)
            keys.append(key)
            newer.append(-1)
            older.append(-1)
        } else {
            n = leastRecent
            unlink(n)
            nodeOf[keys[Int(n)]] = nil
            stats.dropped += 1
            keys[Int(n)] = key
        }
        nodeOf[key] = n
        linkFront(n)
        stats.stored += 1
    }

    // MARK: PrefixLoadSource

    public func loadableBlocks(_ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int {
        guard start >= 0, maxBlocks > 0 else { return 0 }
        var k = 0
        while k < maxBlocks, start + k < keys.count, nodeOf[keys[start + k]] != nil { k += 1 }
        return k
    }

    /// Counts the leading blocks it holds as loaded (it has no bytes to copy into `blocks`). O(blocks).
    public func load(_ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int {
        let count = blocks.count
        guard start >= 0 else { return 0 }
        var k = 0
        while k < count, start + k < keys.count, let n = nodeOf[keys[start + k]] {
            moveToFront(n)
            k += 1
        }
        stats.loadedBlocks += k
        return k
    }

    // MARK: List

    private func unlink(_ n: Int32) {
        let i = Int(n)
        if newer[i] >= 0 { older[Int(newer[i])] = older[i] } else { mostRecent = older[i] }
        if older[i] >= 0 { newer[Int(older[i])] = newer[i] } else { leastRecent = newer[i] }
        newer[i] = -1
        older[i] = -1
    }

    private func linkFront(_ n: Int32) {
        let i = Int(n)
        older[i] = mostRecent
        newer[i] = -1
        if mostRecent >= 0 { newer[Int(mostRecent)] = n } else { leastRecent = n }
        mostRecent = n
    }

    private func moveToFront(_ n: Int32) {
        guard n != mostRecent else { return }
        unlink(n)
        linkFront(n)
    }

    /// The held keys, most recent first. O(count); for tests.
    public func keysByRecency() -> [BlockKey] {
        var out: [BlockKey] = []
        var n = mostRecent
        while n >= 0 {
            out.append(keys[Int(n)])
            n = older[Int(n)]
        }
        return out
    }

    /// Checks that the list and the index agree and the capacity holds. O(count).
    public func validate() -> Bool {
        guard nodeOf.count <= capacityBlocks else { return false }
        var seen = 0
        var n = mostRecent, previous: Int32 = -1
        while n >= 0 {
            guard seen < keys.count, nodeOf[keys[Int(n)]] == n, newer[Int(n)] == previous else { return false }
            seen += 1
            previous = n
            n = older[Int(n)]
        }
        return previous == leastRecent && seen == nodeOf.count
    }
}
