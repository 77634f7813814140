import Foundation
import KVCache
import KVRuntime
import KVTiers
import Testing
@testable import KVReferenceEngine

/// The engine's fp32 KV blocks spilled by the real `KVTierManager` to host memory or to disk (the zstd
/// byte-plane codec, real segment files) and loaded back into fresh pool blocks give the same logits,
/// bit for bit, and the same greedy continuation as a run that computed them. Damaged disk records are
/// never served: the engine computes those blocks, with the same result.
@Suite("engine over host and disk tiers", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct TieredEngineTests {
    /// Where the evicted blocks go; `damagedDisk` flips bytes in the disk segments before the reload, so
    /// every load must fail its checksum and the engine must compute the blocks instead.
    enum Spill: String, CaseIterable, Sendable { case host, disk, damagedDisk }

    static let blockTokens = 16
    static let promptTokens = 40          // two full blocks and a partial one
    static let newTokens = 4              // the continuation stays in the third block

    /// An engine whose prompts are computed in chunks of two blocks, so a cold run computes the last
    /// 8 prompt tokens in the same forward call (same shapes, same rounding) as a run that found the
    /// first two blocks cached. With one 40-token chunk the BLAS rounding order differs (<= 1e-4, see
    /// the prefix-reuse test), which would hide whether the loaded bytes are exact.
    static func engine(capacity: Int, caching: Bool = true) throws -> ReferenceEngine {
        let m = try TestModel.require()
        return try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: blockTokens,
                                   capacityBlocks: capacity, enablePrefixCaching: caching,
                                   prefillChunkTokens: 2 * blockTokens)
    }

    /// Tiers over `memory` that always store and load (no admission rule, no calibration, no page locking).
    static func tierConfig(_ memory: PagedKVPoolMemory, hostBlocks: Int) -> TierConfig {
        var config = TierConfig(layout: memory.layout, hostBlocks: hostBlocks)
        config.admission = LoadOrRecompute(recompute: nil)
        config.calibrateAtStart = false
        config.lockHostMemory = false
        return config
    }

    /// Entries whose bit patterns differ (a count, so a failure prints one number, not two vocabularies).
    static func bitDifferences(_ a: [Float], _ b: [Float]) -> Int {
        a.count != b.count ? max(a.count, b.count) : zip(a, b).count { $0.bitPattern != $1.bitPattern }
    }

    @Test("blocks evicted to a lower tier and loaded back give bitwise identical logits", arguments: Spill.allCases)
    func spillAndLoadIsBitwise(_ spill: Spill) throws {
        let m = try TestModel.require()
        let B = Self.blockTokens
        let prompt = Array(m.tokenizer.encode(
            "Blocks that leave the pool for host memory or for the disk must come back bit for bit, so that the "
            + "words the model writes next do not change at all, whichever tier served them and however long they "
            + "stayed there before the next request asked for the same prefix again.").prefix(Self.promptTokens))
        let other = Array(m.tokenizer.encode(
            "An unrelated request arrives and needs every block of the small pool, so the cached prefix of the "
            + "first request is evicted and copied down to the tier below before its blocks are reused by this "
            + "request, which shares no prefix with the first one at all.").prefix(Self.promptTokens))
        try #require(prompt.count == Self.promptTokens && other.count == Self.promptTokens)

        // Reference: a cold engine without tiers or prefix caching.
        let reference = try Self.engine(capacity: 3, caching: false).generate(prompt: prompt, maxTokens: Self.newTokens)

        // The engine under test: a pool of 3 blocks, exactly one request's worth.
        let engine = try Self.engine(capacity: 3)
        let memory = PagedKVPoolMemory(pool: engine.pool)
        #expect(memory.layout.bytesPerBlock == 30 * 2 * 16 * 3 * 64 * 4)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kv-tiered-engine-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = Self.tierConfig(memory, hostBlocks: spill == .host ? 8 : 0)
        if spill != .host {
            config.disk = DiskStoreConfig(directory: dir.path, capacityBytes: 64 << 20, layout: memory.layout)
        }
        let tiers = try KVTierManager(config: config, device: memory)
        defer { tiers.close() }
        try engine.attachTiers(tiers)

        let first = try engine.generate(prompt: prompt, maxTokens: Self.newTokens)
        #expect(Self.bitDifferences(first.promptLogits, reference.promptLogits) == 0)
        #expect(first.tokens == reference.tokens)
        #expect(engine.lastTierLoad == TierLoad())

        // Pressure: another request takes the whole pool; the first prompt's two full blocks are evicted
        // from L1 and copied to the tier below.
        _ = try engine.generate(prompt: other, maxTokens: 1)
        tiers.waitForTransfers()
        var keys: [BlockKey] = []
        prompt.withUnsafeBufferPointer { BlockHasher(blockTokens: B).appendKeys(of: $0, parent: BlockHasher.rootKey(), to: &keys) }
        #expect(keys.count == 2)
        #expect(engine.cache.matchLength(keys) == 0, "the first prompt's blocks must have left the pool")
        let tier: Tier = spill == .host ? .host : .disk
        for k in keys { #expect(tiers.location(of: k) == tier) }
        if spill == .damagedDisk {
            // One flipped byte every 4 KiB past the first record's header: every record's payload is hit.
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path) where name.hasSuffix(".kvlog") {
                // In place (the store keeps the file open): read, flip, write back at the same offsets.
                let file = try #require(FileHandle(forUpdatingAtPath: dir.appendingPathComponent(name).path))
                defer { try? file.close() }
                var bytes = try file.readToEnd() ?? Data()
                for i in stride(from: 100, to: bytes.count, by: 4096) { bytes[i] ^= 0x5A }
                try file.seek(toOffset: 0)
                try file.write(contentsOf: bytes)
            }
        }

        // The same prompt again: both blocks come from the tier into fresh pool blocks, the rest is computed.
        let second = try engine.generate(prompt: prompt, maxTokens: Self.newTokens)
        var expected = TierLoad()
        switch spill {
        case .host: expected.hostBlocks = 2; expected.tokens = 2 * B
        case .disk: expected.diskBlocks = 2; expected.tokens = 2 * B
        case .damagedDisk: expected.failedBlocks = 2
        }
        #expect(engine.lastTierLoad == expected)
        #expect(second.cachedPromptTokens == expected.tokens)
        #expect(Self.bitDifferences(second.promptLogits, reference.promptLogits) == 0)
        #expect(second.tokens == reference.tokens)

        let stats = tiers.statistics
        switch spill {
        case .host:
            #expect(stats.host.loadedBlocks == 2)
            #expect(stats.disk.loadedBlocks == 0)
        case .damagedDisk:
            // Nothing damaged was served: the reads failed their checks and the blocks were computed.
            #expect(stats.disk.loadedBlocks == 0 && stats.disk.failedLoads >= 1)
            #expect((stats.diskStore?.corruptReads ?? 0) >= 1)
        case .disk:
            #expect(stats.host.capacity == 0)
            #expect(stats.disk.loadedBlocks == 2)
            // The blocks really went through the codec and the segment files: compressed, not raw.
            let store = try #require(stats.diskStore)
            #expect(store.writes >= 2 && store.storedRaw == 0)
            #expect(store.bytesWritten < store.rawBytesWritten)
            let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".kvlog") }
            #expect(!files.isEmpty)
        }
        try engine.cache.validate()
        try tiers.validate()
    }

    @Test("tiers over another pool are refused and nothing changes")
    func foreignTiersRefused() throws {
        let engine = try Self.engine(capacity: 3)
        let other = PagedKVPool(layers: 30, kvHeads: 3, headDim: 64, blockTokens: 16, capacityBlocks: 3)
        let memory = PagedKVPoolMemory(pool: other)
        var config = TierConfig(layout: memory.layout, hostBlocks: 2)
        config.calibrateAtStart = false
        config.lockHostMemory = false
        let tiers = try KVTierManager(config: config, device: memory)
        defer { tiers.close() }
        #expect(throws: EngineError.self) { try engine.attachTiers(tiers) }
        #expect(engine.tiers == nil && engine.cache.evictionObserver == nil)
    }
}
