import Testing
import KVCache
import KVTestSupport
import KVPlan
@testable import KVTiers

/// Tier events name each block's parent, so a router can rebuild the prefix tree from the stream alone.
@Suite("Tier events with parents")
struct TierEventParentTests {
    static let layout = try! KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 4)

    /// A child key of `parent` (`.zero`: the root) for branch `choice`: chained like real block keys.
    static func child(of parent: BlockKey, _ choice: Int) -> BlockKey {
        var r = SplitMix64(seed: parent.lo ^ (parent.hi &* 0x9E37_79B9_7F4A_7C15) ^ UInt64(choice + 1))
        return BlockKey(lo: r.next(), hi: r.next())
    }

    /// A chain of `n` keys under branch `choice` of the root, recording every key's parent in `truth`.
    static func chain(_ n: Int, branch: Int, truth: inout [BlockKey: BlockKey?]) -> [BlockKey] {
        var keys: [BlockKey] = [], parent = BlockKey.zero
        for _ in 0 ..< n {
            let k = child(of: parent, branch)
            truth[k] = parent == .zero ? nil : parent
            keys.append(k); parent = k
        }
        return keys
    }

    static func config(_ dir: String, writePolicy: TierWritePolicy = .writeBack) -> TieredReplayHarness.Config {
        var c = TieredReplayHarness.Config(blockTokens: 4, deviceBlocks: 4, hostBlocks: 2, diskBlocks: 16, diskDirectory: dir)
        c.payloadLayout = layout
        c.recordEvents = true
        c.writePolicy = writePolicy
        return c
    }

    /// Every `blockStored` event names the parent the chain gives its first key (and each key after the
    /// first is the child of the one before). Returns the (key, tier) pairs stored.
    @discardableResult
    static func expectTrueParents(_ events: [KVEvent], _ truth: [BlockKey: BlockKey?]) -> [(BlockKey, Tier)] {
        var stored: [(BlockKey, Tier)] = []
        for case .blockStored(let keys, let parent, _, let tier, _) in events {
            for (j, k) in keys.enumerated() {
                let named = j == 0 ? parent : keys[j - 1]
                #expect(truth[k] != nil, "unknown key in a \(tier) event")
                #expect(truth[k].map { $0 == named } ?? false, "\(tier) event names the wrong parent")
                stored.append((k, tier))
            }
        }
        return stored
    }

    /// A chain evicted L1 -> L2 -> L3, loaded back L3 -> L2 -> L1, and reported again after a restart:
    /// every host and disk event names the block's real parent (nil only for the first block).
    @Test func spillChainNamesParents() throws {
        let dir = TempDirectory()
        var truth: [BlockKey: BlockKey?] = [:]
        let a = Self.chain(4, branch: 0, truth: &truth), b = Self.chain(4, branch: 1, truth: &truth)
        var events: [KVEvent] = []
        do {
            let cache = try TieredReplayHarness(Self.config(dir.path))
            defer { cache.close() }
            _ = try cache.serve(keys: a)
            _ = try cache.serve(keys: b)            // a leaves L1: 2 blocks stay on host, 2 go on to disk
            cache.tiers.waitForTransfers()
            cache.manager.drainEvents(into: &events)
            let spilled = Self.expectTrueParents(events, truth)
            #expect(Set(spilled.filter { $0.1 == .host }.map(\.0)) == Set(a))
            #expect(Set(spilled.filter { $0.1 == .disk }.map(\.0)) == Set(a[2...]))
            let back = try cache.serve(keys: a)     // a comes back from host and disk
            #expect(back.hostBlocks + back.diskBlocks == 4 && back.diskBlocks > 0 && cache.mismatchedBlocks == 0)
            events.removeAll()
            cache.tiers.waitForTransfers()
            cache.manager.drainEvents(into: &events)
            let moved = Self.expectTrueParents(events, truth)   // b going down, a coming up through host
            #expect(moved.contains { $0.1 == .host } && moved.contains { $0.1 == .device })
        }
        // After a restart the disk tier still knows every parent, from its records.
        var config = Self.config(dir.path)
        config.freshDisk = false
        let reopened = try TieredReplayHarness(config)
        defer { reopened.close() }
        events.removeAll()
        reopened.manager.drainEvents(into: &events)
        let recovered = Self.expectTrueParents(events, truth)
        #expect(!recovered.isEmpty && recovered.allSatisfy { $0.1 == .disk })
        #expect(Set(recovered.map(\.0)) == Set(reopened.tiers.store!.blocksWithParents().map(\.key)))
        #expect(recovered.contains { $0.0 == a[3] })
    }

    /// Model-based: seeded random requests over a tree of prompts, through L1, host and disk. Replaying
    /// the event stream (device and tiers) rebuilds, for every tier, exactly the blocks the cache holds
    /// and the parent each has in the tree.
    @Test(arguments: [(UInt64(1), TierWritePolicy.writeBack), (2, .writeThrough), (3, .writeBack), (4, .writeAfterHits(1))])
    func replayedEventsRebuildTheTree(seed: UInt64, policy: TierWritePolicy) throws {
        let dir = TempDirectory()
        var config = Self.config(dir.path, writePolicy: policy)
        config.deviceBlocks = 6; config.hostBlocks = 4; config.diskBlocks = 8
        let cache = try TieredReplayHarness(config)
        defer { cache.close() }
        var rng = SplitMix64(seed: seed)
        var truth: [BlockKey: BlockKey?] = [:]
        var replay: [Tier: [BlockKey: BlockKey?]] = [.device: [:], .host: [:], .disk: [:]]
        var events: [KVEvent] = []
        for step in 0 ..< 60 {
            // A prompt: a random walk down a tree with 3 branches per node, 1 to 6 blocks deep.
            var keys: [BlockKey] = [], parent = BlockKey.zero
            for _ in 0 ..< 1 + Int(rng.next() % 6) {
                let k = Self.child(of: parent, Int(rng.next() % 3))
                truth[k] = parent == .zero ? nil : parent
                keys.append(k); parent = k
            }
            _ = try cache.serve(keys: keys)
            cache.tiers.waitForTransfers()
            events.removeAll()
            cache.manager.drainEvents(into: &events)
            for e in events {
                switch e {
                case .blockStored(let ks, let p, _, let tier, _):
                    for (j, k) in ks.enumerated() { replay[tier]![k] = j == 0 ? p : ks[j - 1] }
                case .blockRemoved(let ks, let tier):
                    for k in ks { #expect(replay[tier]!.removeValue(forKey: k) != nil, "step \(step): \(tier) removed an unknown block") }
                case .allBlocksCleared:
                    replay[.device]!.removeAll()
                }
            }
            for (tier, blocks) in replay {
                for (k, p) in blocks { #expect(truth[k].map { $0 == p } ?? false, "step \(step): \(tier) parent differs") }
            }
            for k in truth.keys {
                let expected: Tier? = replay[.device]![k] != nil ? .device
                    : replay[.host]![k] != nil ? .host : replay[.disk]![k] != nil ? .disk : nil
                #expect(cache.tiers.location(of: k) == expected, "step \(step): the stream disagrees with the cache")
            }
        }
        #expect(cache.mismatchedBlocks == 0)
        #expect(!replay[.disk]!.isEmpty && cache.tiers.statistics.disk.storedBlocks > 0)
        try cache.tiers.validate()
    }
}
