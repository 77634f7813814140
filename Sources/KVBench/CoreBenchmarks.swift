import KVCache

/// The core's hot paths as benchmark workloads, each reporting a median cost per unit. 16-token
/// blocks and a 32k-token prompt (2,048 blocks) unless said otherwise. Shared by `kvcache bench`
/// and the Benchmarks package so the figures come from one piece of code.
public struct CoreBenchmarks {
    public struct Figures: Sendable {
        /// Chained XXH3-128 block hashing, tokens per second on one core.
        public var hashTokensPerSecond: Double
        /// `addSequence` + `lookup` of a fully cached 32k-token prompt, hashing included, per block.
        public var lookupNanosPerBlock: Double
        /// `BlockPool` allocate + free, per block.
        public var allocFreeNanosPerBlock: Double
        /// `commit` publishing 2,048 new blocks into the prefix index, per block.
        public var insertNanosPerBlock: Double
        /// `allocate` that must evict unheld cached leaves for every block it takes, per evicted block.
        public var evictNanosPerBlock: Double
    }

    public let promptTokens: Int
    public let blockTokens: Int
    public let repetitions: Int

    public init(promptTokens: Int = 32_768, blockTokens: Int = 16, repetitions: Int = 15) {
        self.promptTokens = promptTokens
        self.blockTokens = blockTokens
        self.repetitions = repetitions
    }

    var blocks: Int { promptTokens / blockTokens }

    /// Deterministic pseudo-random token ids below a 128k vocabulary.
    func prompt(seed: UInt64) -> [UInt32] {
        var s = seed
        return (0 ..< promptTokens).map { _ in
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt32(truncatingIfNeeded: s >> 33) % 128_000
        }
    }

    public func hashing() throws -> Double {
        let hasher = BlockHasher(blockTokens: blockTokens)
        let tokens = prompt(seed: 1)
        var keys: [BlockKey] = []
        keys.reserveCapacity(blocks)
        let rounds = 20
        let t = try Measure.median(repetitions: repetitions) {
            for _ in 0 ..< rounds {
                keys.removeAll(keepingCapacity: true)
                tokens.withUnsafeBufferPointer { hasher.appendKeys(of: $0, parent: .zero, to: &keys) }
            }
        }
        precondition(keys.count == blocks)
        return Double(rounds * promptTokens) / t
    }

    public func lookup() throws -> Double {
        let m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: blocks + 64))
        let tokens = prompt(seed: 2) + [7]
        try prefillAndFree(m, SequenceID(0), tokens)
        var next: Int64 = 1
        var hit = 0
        let t = try Measure.median(repetitions: repetitions) {
            let id = SequenceID(next)
            next += 1
            try m.addSequence(id, prompt: tokens)
            hit = try m.lookup(id).cachedBlocks
            try m.free(id)
        }
        precondition(hit == blocks)
        return t * 1e9 / Double(blocks)
    }

    public func allocFree() throws -> Double {
        var pool = try BlockPool(capacity: 4096)
        var ids: [BlockID] = []
        ids.reserveCapacity(4096)
        let perRound = 64, rounds = 1000
        let t = try Measure.median(repetitions: repetitions) {
            for _ in 0 ..< rounds {
                try pool.allocate(perRound, into: &ids)
                for b in ids { try pool.releaseAndFreeIfUnheld(b) }
                ids.removeAll(keepingCapacity: true)
            }
        }
        return t * 1e9 / Double(perRound * rounds)
    }

    public func insert() throws -> Double {
        let m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: blocks + 64))
        let tokens = prompt(seed: 3)
        var next: Int64 = 0
        var id = SequenceID(0)
        let t = try Measure.median(repetitions: repetitions, setup: {
            if m.sequenceCount > 0 { try m.free(id); try m.reset() }
            id = SequenceID(next)
            next += 1
            try m.addSequence(id, prompt: tokens)
            _ = try m.lookup(id)
            _ = try m.allocate(id, newTokens: tokens.count)
        }) {
            try m.commit(id, computedTokens: tokens.count)
        }
        precondition(m.stats.cachedBlocks == blocks)
        return t * 1e9 / Double(blocks)
    }

    public func eviction() throws -> Double {
        // A bushy tree: 128 prompts share a 4-block system prompt and add 12 blocks each.
        let capacity = 128 * 12 + 4
        let m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacity))
        let system = Array(prompt(seed: 4).prefix(4 * blockTokens))
        let bodies = (0 ..< 128).map { i in Array(prompt(seed: 100 + UInt64(i)).prefix(12 * blockTokens)) }
        let fresh = Array(prompt(seed: 5).prefix((capacity - 4) * blockTokens))
        var next: Int64 = 0
        var victimID = SequenceID(-1)
        var evicted = 0
        let t = try Measure.median(repetitions: repetitions, setup: {
            if victimID.raw >= 0 { try m.free(victimID); try m.reset() }
            for body in bodies {
                try prefillAndFree(m, SequenceID(next), system + body + [1])
                next += 1
            }
            victimID = SequenceID(next)
            next += 1
            try m.addSequence(victimID, prompt: fresh)
            _ = try m.lookup(victimID)
            evicted = m.stats.evictedBlocks
        }) {
            _ = try m.allocate(victimID, newTokens: fresh.count)
        }
        evicted = m.stats.evictedBlocks - evicted
        precondition(evicted > capacity / 2, "the workload must evict")
        return t * 1e9 / Double(evicted)
    }

    /// Prefills a whole prompt as a server would and frees it, leaving its full blocks cached.
    func prefillAndFree(_ m: KVCacheManager, _ id: SequenceID, _ tokens: [UInt32]) throws {
        try m.addSequence(id, prompt: tokens)
        let hit = try m.lookup(id)
        _ = try m.allocate(id, newTokens: tokens.count - hit.cachedTokens)
        try m.commit(id, computedTokens: tokens.count - hit.cachedTokens)
        try m.free(id)
    }

    public func run() throws -> Figures {
        Figures(hashTokensPerSecond: try hashing(), lookupNanosPerBlock: try lookup(),
                allocFreeNanosPerBlock: try allocFree(), insertNanosPerBlock: try insert(),
                evictNanosPerBlock: try eviction())
    }
}
