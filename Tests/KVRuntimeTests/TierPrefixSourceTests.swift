import KVCache
import KVPlan
import KVRuntime
import KVScheduler
import KVTestSupport
import KVTiers
import Testing

/// The real tiers under the scheduler: a prompt whose blocks the device pool evicted comes back through
/// `TierPrefixSource` as `prefixLoads`, with the bytes its keys must have.
@Suite("Tier prefix source (KVTierManager behind the scheduler)")
struct TierPrefixSourceTests {
    static let layout = try! KVGeometry(layers: 2, kvHeads: 1, headDim: 8, dtype: .fp16, blockTokens: 4)

    /// A tiny engine: writes each fully computed prompt block's `KeyPayload`, checks every loaded block's
    /// bytes, and stops every request at its first token. Returns the blocks loaded and how many were wrong.
    static func run(_ scheduler: Scheduler, _ cache: KVCacheManager, _ memory: HostDeviceMemory,
                    keysOf: [SequenceID: [BlockKey]]) throws -> (loaded: Int, wrong: Int) {
        var loaded = 0, wrong = 0
        let bt = cache.blockTokens
        while !scheduler.isIdle {
            let plan = try scheduler.schedule(now: 0)
            try #require(!plan.isEmpty, "no progress")
            for l in plan.prefixLoads {
                let table = try cache.blockTable(l.id)
                let start = try #require(table.firstIndex(of: l.blocks[0]))
                for (j, b) in l.blocks.enumerated() {
                    let key = keysOf[l.id]![start + j]
                    let same = memory.withBlock(b) { KeyPayload.matches(UnsafeRawBufferPointer($0), key: key) } ?? false
                    if !same { wrong += 1 }
                    loaded += 1
                }
            }
            for p in plan.prefills {
                let table = try cache.blockTable(p.id)
                let keys = keysOf[p.id]!
                for i in (p.contextBefore + bt - 1) / bt ..< min(keys.count, (p.contextBefore + p.tokens) / bt) {
                    _ = memory.withBlock(table[i]) { KeyPayload.fill($0, key: keys[i]) }
                }
            }
            try scheduler.complete(stops: Array(repeating: true, count: plan.samplerCount), now: 0)
            try cache.validate()
        }
        return (loaded, wrong)
    }

    @Test func evictedPromptBlocksComeBackFromHostWithTheirBytes() throws {
        let bt = Self.layout.blockTokens
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: bt, capacityBlocks: 8))
        let memory = try HostDeviceMemory(layout: Self.layout, capacityBlocks: 8)
        var config = TierConfig(layout: Self.layout, hostBlocks: 32)
        config.lockHostMemory = false
        config.synchronousEvictionCopies = true
        config.calibrateAtStart = false
        let tiers = try KVTierManager(config: config, device: memory)
        defer { tiers.close() }
        cache.evictionObserver = tiers
        let scheduler = Scheduler(config: SchedulerConfig(), cache: cache)
        let source = TierPrefixSource(tiers: tiers)
        scheduler.prefixLoadSource = source

        let docA = (0 ..< 6).map { testKey($0, salt: 1) }, docB = (0 ..< 6).map { testKey($0, salt: 2) }
        var keysOf: [SequenceID: [BlockKey]] = [:]
        var totalLoaded = 0
        for (i, keys) in [docA, docB, docA].enumerated() {
            let id = SequenceID(Int64(i))
            keysOf[id] = keys
            try scheduler.submit(SchedulerRequest(id: id, prompt: .keys(keys, tokenCount: keys.count * bt + 1),
                                                  maxTokens: 1, arrival: 0, knownOutputTokens: 1))
            let (loaded, wrong) = try Self.run(scheduler, cache, memory, keysOf: keysOf)
            #expect(wrong == 0, "request \(i): \(wrong) loaded blocks carry the wrong bytes")
            if i < 2 { #expect(loaded == 0, "request \(i) has nothing to load yet") }
            totalLoaded += loaded
        }
        // B pushed A out of the 8-block pool into host memory; A's second run loads what the device lost.
        #expect(totalLoaded >= 4)
        #expect(totalLoaded == source.loaded.hostBlocks && source.loaded.failedBlocks == 0)
        #expect(scheduler.stats.prefixLoadedTokens == totalLoaded * bt)
        // Each admission looked the tiers up once: their hit counter equals the blocks planned.
        #expect(tiers.statistics.host.hits == source.loaded.hostBlocks + source.loaded.failedBlocks)
        try tiers.validate()
    }
}
