import Foundation
import KVCache
import KVPlan
import KVTestSupport
import KVTiers
import Testing
@testable import KVChunks

/// Chunks spilled from the device through host memory to disk with their real bytes, and brought back by
/// `TieredChunkStore.fetch`: identical bytes from host and from disk, and a chunk whose disk copy is
/// corrupt is never served (the caller recomputes it).
@Suite struct TieredChunkStoreTests {
    static let layout = try! KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 4)  // 256-byte blocks
    static let cost = try! RecomputeCost(secondsPerToken: 1e-4, secondsPerContextPair: 1e-8)

    final class Harness {
        let dir = TempDirectory("kvchunks-tiers")
        let device: HostDeviceMemory
        let tiered: TieredChunkStore
        let root = BlockHasher.rootKey(namespace: "tiered")
        let controller = try! LoadingController(cost: TieredChunkStoreTests.cost, layers: 2, kvBytesPerToken: 64)
        let host = LoadingController.Tier(name: "host", bytesPerSecond: 10e9)
        let disk = LoadingController.Tier(name: "disk", bytesPerSecond: 1e9)

        init(deviceBlocks: Int = 6, hostBlocks: Int = 4, admission: LoadOrRecompute? = nil) throws {
            var config = TierConfig(layout: TieredChunkStoreTests.layout, hostBlocks: hostBlocks,
                                    disk: DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 22, layout: TieredChunkStoreTests.layout))
            config.workers = 1
            config.spillWatermark = 1
            config.calibrateAtStart = false
            config.lockHostMemory = false
            config.layerGroups = 1
            if let admission { config.admission = admission }
            device = try HostDeviceMemory(layout: TieredChunkStoreTests.layout, capacityBlocks: deviceBlocks)
            tiered = try TieredChunkStore(store: try ChunkStore(capacityBlocks: deviceBlocks, blockTokens: 4),
                                          tiers: try KVTierManager(config: config, device: device))
        }

        func chunk(_ i: Int) -> ChunkKey { ChunkKey(tokens: (0 ..< 8).map { UInt32(i * 100 + $0) }, namespace: "tiered") }

        /// The KV an engine computes for block `b` of chunk `i`: distinct bytes per chunk and block.
        static func bytes(_ i: Int, _ b: Int) -> [UInt8] {
            var r = SplitMix64(seed: UInt64(i * 1000 + b + 1))
            return (0 ..< TieredChunkStoreTests.layout.bytesPerBlock).map { _ in UInt8(truncatingIfNeeded: r.next()) }
        }

        /// Stores chunk `i` (8 tokens, 2 blocks) as an engine would: insert, write the KV, commit.
        func put(_ i: Int) throws {
            let (id, blocks) = try tiered.insert(chunk(i), tokens: 8, computedAt: 0, context: root)
            for (b, block) in blocks.enumerated() {
                let kv = Self.bytes(i, b)
                device.withBlock(block) { dst in kv.withUnsafeBytes { dst.copyMemory(from: $0) } }
            }
            try tiered.commit(id)
        }

        /// Whether the device blocks of `id` hold chunk `i`'s bytes.
        func holds(_ id: ChunkVariantID, _ i: Int) throws -> Bool {
            try tiered.store.blocks(of: id).enumerated().allSatisfy { b, block in
                device.withBlock(block) { Array($0) == Self.bytes(i, b) } ?? false
            }
        }

        /// Where the first block of chunk `i` (stored at 0 after `root`) can be loaded from.
        func loadable(_ i: Int) -> Tier? {
            tiered.tiers.loadableTier(of: tiered.blockKeys(of: .init(chunk: chunk(i), tokens: 8, computedAt: 0, context: root,
                                                                      contextImpact: nil, hits: 0))[0])
        }

        func fetch(_ i: Int) throws -> TieredChunkStore.Fetched? {
            try tiered.fetch(chunk(i), context: root, contextTokens: 64, controller: controller, host: host, disk: disk)
        }
    }

    @Test func anEvictedChunkComesBackFromHostAndFromDiskWithIdenticalBytes() throws {
        let h = try Harness()
        for i in 0 ..< 3 { try h.put(i) }  // the device is full
        try h.put(3)  // evicts chunk 0 to host
        #expect(h.tiered.store.find(h.chunk(0)) == nil && h.tiered.store.evictedVariants == 1)
        let fromHost = try #require(try h.fetch(0))
        #expect(fromHost.source == .host && fromHost.decision != nil)
        #expect(try h.holds(fromHost.variant, 0))
        try h.tiered.release(fromHost.variant)
        // Enough chunks that the host (4 blocks) passes chunk 1 on to disk.
        for i in 4 ..< 9 { try h.put(i) }
        let onDevice = (0 ..< 9).filter { h.tiered.store.find(h.chunk($0)) != nil }
        #expect(!onDevice.contains(1))
        let fromDisk = try #require(try h.fetch(1))
        #expect(fromDisk.source == .disk)
        #expect(try h.holds(fromDisk.variant, 1))
        try h.tiered.release(fromDisk.variant)
        // A chunk on the device is served from there, a chunk never stored from nowhere.
        let last = try #require(try h.fetch(8))
        #expect(last.source == .device && last.decision == nil)
        #expect(try h.holds(last.variant, 8))
        try h.tiered.release(last.variant)
        #expect(try h.fetch(99) == nil)
        #expect(h.tiered.loadedVariants == 2 && h.tiered.failedLoads == 0)
        try h.tiered.store.validate()
        try h.tiered.tiers.validate()
    }

    @Test func aCorruptDiskCopyIsNeverServed() throws {
        let h = try Harness()
        for i in 0 ..< 9 { try h.put(i) }  // chunks 0 and 1 are on disk by now
        h.tiered.tiers.waitForTransfers()
        #expect(h.tiered.store.find(h.chunk(0)) == nil && h.loadable(0) != nil && h.loadable(0) != .host)
        // Flip every byte past the first 16 of each segment file of the disk folder (every record).
        let files = try FileManager.default.subpathsOfDirectory(atPath: h.dir.path).map { h.dir.path + "/" + $0 }
        var flipped = 0
        for f in files {
            guard f.hasSuffix(".kvlog"), var data = FileManager.default.contents(atPath: f), data.count > 16 else { continue }
            for k in 16 ..< data.count { data[k] ^= 0xFF }
            try data.write(to: URL(fileURLWithPath: f))
            flipped += 1
        }
        #expect(flipped > 0)
        let before = h.tiered.store.count
        #expect(try h.fetch(0) == nil, "a corrupt chunk was served")
        // Either the load found the corruption (a failed load) or the store had dropped the record already.
        #expect(h.tiered.loadedVariants == 0 && (h.tiered.failedLoads == 1 || h.loadable(0) == nil))
        #expect(h.tiered.store.find(h.chunk(0)) == nil && h.tiered.store.count <= before)
        try h.tiered.store.validate()
        try h.tiered.tiers.validate()
    }

    @Test func aPlanLoadsSpilledChunksAndNamesTheirTier() throws {
        let h = try Harness()
        for i in 0 ..< 9 { try h.put(i) }  // 6, 7, 8 on the device; 0, 1 on disk; others on host
        h.tiered.tiers.waitForTransfers()
        let pieces = [PromptPiece(.fresh, tokens: 3), PromptPiece(.chunk(h.chunk(8)), tokens: 8), PromptPiece(.chunk(h.chunk(5)), tokens: 8),
                      PromptPiece(.chunk(h.chunk(0)), tokens: 8), PromptPiece(.chunk(h.chunk(77)), tokens: 8)]
        let plan = try h.tiered.plan(pieces, context: h.root, selection: .highDeviation(ratio: 0.15), controller: h.controller,
                                     host: h.host, disk: h.disk)
        try plan.validate()
        #expect(plan.reused.map(\.tier) == [.device, .host, .disk] && plan.missingChunks == 1)
        for (span, i) in zip(plan.reused, [8, 5, 0]) { #expect(try h.holds(span.variant, i), "chunk \(i)") }
        // Held by the plan only: the fetches' own holds are gone.
        #expect(plan.reused.allSatisfy { h.tiered.store.holders(of: $0.variant) == 1 })
        try h.tiered.release(plan: plan)
        try h.tiered.store.validate()
        try h.tiered.tiers.validate()
    }

    /// Without bandwidths from the caller, the controller decides from the tiers' own estimates: a disk
    /// whose measured row is slow leaves its chunk to be recomputed, a fast one loads it; the host row
    /// moves with the loads the tiers time.
    @Test func theControllerDecidesFromTheTiersMeasuredBandwidths() throws {
        for (diskBytesPerSecond, loadsFromDisk) in [(1e3, false), (100e9, true)] {
            let h = try Harness(admission: LoadOrRecompute(host: .init(latencySeconds: 0, bytesPerSecond: 10e9),
                                                           disk: .init(latencySeconds: 0, bytesPerSecond: diskBytesPerSecond)))
            for i in 0 ..< 9 { try h.put(i) }  // 6, 7, 8 on the device; 0, 1 on disk; others on host
            h.tiered.tiers.waitForTransfers()
            let before = h.tiered.measuredTiers
            #expect(abs(before.host.bytesPerSecond / 10e9 - 1) < 1e-9)
            #expect(abs(before.disk.bytesPerSecond / (1 / (1 / diskBytesPerSecond + 1 / 10e9)) - 1) < 1e-9)  // through host
            let pieces = [PromptPiece(.fresh, tokens: 3), PromptPiece(.chunk(h.chunk(8)), tokens: 8), PromptPiece(.chunk(h.chunk(5)), tokens: 8),
                          PromptPiece(.chunk(h.chunk(0)), tokens: 8), PromptPiece(.chunk(h.chunk(77)), tokens: 8)]
            // What the plan will do, asked first (changes nothing).
            let asked = try #require(try h.tiered.loadDecision(h.chunk(0), context: h.root, contextTokens: 35, controller: h.controller))
            #expect(asked.source == .disk && asked.decision?.load == loadsFromDisk)
            var loads: [TieredChunkStore.ChunkLoad] = []
            let plan = try h.tiered.plan(pieces, context: h.root, selection: .highDeviation(ratio: 0.15), controller: h.controller,
                                         host: nil, disk: nil, loads: &loads)
            try plan.validate()
            #expect(loads.map(\.piece) == [1, 2, 3, 4])
            #expect(loads.map(\.action) == [.device, .loaded(.host), loadsFromDisk ? .loaded(.disk) : .recompute(.disk), .missing])
            #expect(loads[2].decision?.load == loadsFromDisk && loads[0].decision == nil && loads[3].decision == nil)
            #expect(plan.reused.map(\.tier) == (loadsFromDisk ? [.device, .host, .disk] : [.device, .host]))
            #expect(plan.missingChunks == (loadsFromDisk ? 1 : 2) && h.tiered.declinedLoads == (loadsFromDisk ? 0 : 1))
            if !loadsFromDisk { #expect(h.loadable(0) != nil && h.loadable(0) != .host) }  // left on disk
            // The host load was timed and folded into the estimate the next plan uses.
            let after = h.tiered.measuredTiers, s = h.tiered.tiers.statistics
            #expect(after.host.bytesPerSecond != before.host.bytesPerSecond && abs(after.host.bytesPerSecond / s.hostBytesPerSecond - 1) < 1e-9)
            try h.tiered.release(plan: plan)
            try h.tiered.store.validate()
            try h.tiered.tiers.validate()
        }
    }

    /// CacheBlend's loading controller: a chunk loaded from a tier slower than its recompute at the minimum
    /// ratio is budgeted at the controller's (higher) ratio, since its load pays for that recompute; a chunk
    /// in the pool keeps the selection's ratio, and so does every chunk without a controller. Checked under
    /// `.highDeviation` (budgets only), `.leading` (the positions follow the budgets) and `.none`.
    @Test func aSlowTierRaisesTheRecomputeBudgetOfLoadedChunksToTheControllersRatio() throws {
        let slowDisk = LoadingController.Tier(name: "disk", bytesPerSecond: 1.28e6)  // 512 bytes in 0.4 ms: above 2 tokens' recompute
        for selection in [TokenSelection.highDeviation(ratio: 0.15), .leading(ratio: 0.15), .none] {
            for withController in [true, false] {
                let h = try Harness()
                for i in 0 ..< 9 { try h.put(i) }  // 6, 7, 8 on the device; 0, 1 on disk; others on host
                h.tiered.tiers.waitForTransfers()
                let pieces = [PromptPiece(.fresh, tokens: 3), PromptPiece(.chunk(h.chunk(8)), tokens: 8), PromptPiece(.chunk(h.chunk(5)), tokens: 8),
                              PromptPiece(.chunk(h.chunk(0)), tokens: 8)]
                var loads: [TieredChunkStore.ChunkLoad] = []
                let plan = try h.tiered.plan(pieces, context: h.root, selection: selection, controller: withController ? h.controller : nil,
                                             host: h.host, disk: slowDisk, loads: &loads)
                try plan.validate()
                #expect(plan.reused.map(\.tier) == [.device, .host, .disk])
                let selected = try RecomputeSelection.budget(ratio: selection.ratio, tokens: 8)
                if withController {
                    let disk = try #require(loads[2].decision)
                    #expect(loads[2].action == .loaded(.disk) && disk.load && disk.ratio > 0.15 && !disk.loadHidden)
                    #expect(try #require(loads[1].decision).loadHidden)  // the host's load hides at the minimum ratio
                    #expect(plan.reused[1].recomputeBudget == selected || selection == .none)
                }
                for (span, load) in zip(plan.reused, loads) {
                    // The model: max(selection's ratio, the decision's) for a loaded chunk, not under `.none`.
                    let raised = selection == .none ? nil : load.decision?.ratio
                    let expected = try RecomputeSelection.budget(ratio: max(selection.ratio, raised ?? 0), tokens: 8)
                    #expect(span.recomputeBudget == expected, "\(selection) \(load.action)")
                    if case .leading = selection { #expect(plan.recompute.filter { span.target.contains($0) } == Array(span.target.prefix(expected))) }
                }
                #expect(plan.reused[0].recomputeBudget == selected)  // in the pool
                if withController, selection != .none { #expect(plan.reused[2].recomputeBudget > selected) }
                if !withController { #expect(plan.reused.allSatisfy { $0.recomputeBudget == selected }) }
                try h.tiered.release(plan: plan)
                // A plain plan of the same pieces, every chunk now in the pool: the selection's ratio throughout.
                var plain = ChunkPrefillPlan()
                try plain.draft(pieces, store: h.tiered.store, context: h.root, selection: selection)
                #expect(plain.reused.count == 3 && plain.reused.allSatisfy { $0.recomputeBudget == selected })
                try h.tiered.store.validate()
            }
        }
    }

    /// `ChunkPrefillPlan.draft`'s minimum ratios: a chunk named gets max(selection's, its own) under every
    /// selection but `.none`, at least that under `.contextImpact`'s split, an exact span 0, and an entry
    /// outside 0...1 is refused with the plan unchanged.
    @Test func minimumRatiosRaiseOnlyTheChunksTheyName() throws {
        var store = try ChunkStore(capacityBlocks: 16, blockTokens: 4)
        let root = BlockHasher.rootKey(namespace: "floors")
        let keys = (0 ..< 3).map { i in ChunkKey(tokens: (0 ..< 8).map { UInt32(i * 100 + $0) }, namespace: "floors") }
        try store.insert(keys[0], tokens: 8, computedAt: 0, context: root)  // exact at 0 after an empty prefix
        for k in keys.dropFirst() { try store.insert(k, tokens: 8, computedAt: 50, context: root, contextImpact: 1) }
        let pieces = keys.map { PromptPiece(.chunk($0), tokens: 8) }
        let floors = [keys[0]: 1.0, keys[1]: 0.5]
        for selection in [TokenSelection.highDeviation(ratio: 0.25), .random(ratio: 0.25, seed: 3), .leading(ratio: 0.25), .contextImpact(ratio: 0.25), .none] {
            var plan = ChunkPrefillPlan()
            try plan.draft(pieces, store: store, context: root, selection: selection, minimumRatios: floors)
            try plan.validate()
            let budgets = plan.reused.map(\.recomputeBudget)
            #expect(budgets[0] == 0, "\(selection): exact")
            if selection == .none { #expect(budgets == [0, 0, 0]) } else {
                #expect(budgets[1] == 4, "\(selection)")
                if case .contextImpact = selection { #expect(budgets[2] >= 2 && budgets[2] <= 8) } else { #expect(budgets[2] == 2, "\(selection)") }
            }
            if case .random = selection { #expect(plan.recompute.count == budgets.reduce(0, +)) }
            let before = plan
            #expect(throws: ChunkError.self) { try plan.draft(pieces, store: store, context: root, selection: selection, minimumRatios: [keys[2]: 1.5]) }
            #expect(plan == before)
        }
    }

    @Test func anEvictedVariantComesBackAndAnUnwrittenOneIsNeverSpilled() throws {
        let h = try Harness()
        try h.put(0)
        let id = try #require(h.tiered.store.find(h.chunk(0)))
        #expect(h.tiered.spilledVariant(h.chunk(0), context: h.root) == nil)
        try h.tiered.acquire(id)
        #expect(throws: ChunkError.variantHeld(id)) { try h.tiered.evict(id) }
        try h.tiered.release(id)
        try h.tiered.evict(id)
        #expect(h.tiered.store.find(h.chunk(0)) == nil && h.tiered.spilledVariant(h.chunk(0), context: h.root)?.source == .host)
        let back = try #require(try h.fetch(0))
        let holds = try h.holds(back.variant, 0)
        #expect(back.source == .host && holds)
        try h.tiered.release(back.variant)
        // Inserted but never written (no commit): evicting it keeps nothing to serve.
        let (unwritten, _) = try h.tiered.insert(h.chunk(5), tokens: 8, computedAt: 0, context: h.root)
        try h.tiered.evict(unwritten)
        let refetched = try h.fetch(5)
        #expect(h.tiered.spilledVariant(h.chunk(5), context: h.root) == nil && refetched == nil)
        try h.tiered.store.validate()
        try h.tiered.tiers.validate()
    }
}
