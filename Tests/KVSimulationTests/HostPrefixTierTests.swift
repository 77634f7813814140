import KVCache
import KVPrediction
import KVScheduler
import KVData
import Testing
@testable import KVSimulation

/// Requests over a few shared documents: a prompt is one document's blocks (shared by every request
/// on it) plus a suffix of its own, so a small KV cache evicts documents that later requests reuse.
func sharedPrefixTrace(_ n: Int, documents: Int, documentTokens: Int, seed: UInt64, spacing: Double) -> [TraceRequest] {
    var rng = SplitMix64(seed: seed)
    let b = 16
    return (0..<n).map { i in
        let doc = Int(rng.next() % UInt64(documents))
        let suffix = 16 + Int(rng.next() % 300)
        let prompt = documentTokens + suffix
        var ids = (0..<documentTokens / b).map { UInt64(doc * 10_000 + $0) }
        ids += (0..<(suffix / b)).map { UInt64(1_000_000 + i * 1_000 + $0) }
        return TraceRequest(arrival: Double(i) * spacing, inputTokens: prompt, outputTokens: 1 + Int(rng.next() % 60),
                            hashIDs: ids, hashBlockTokens: b)
    }
}

@Suite struct HostPrefixTierTests {
    /// A reference LRU of keys: most recent first.
    struct ReferenceLRU {
        var keys: [BlockKey] = []
        let capacity: Int
        mutating func evicted(_ k: BlockKey) {
            guard capacity > 0 else { return }
            if let i = keys.firstIndex(of: k) { keys.remove(at: i) } else if keys.count == capacity { keys.removeLast() }
            keys.insert(k, at: 0)
        }
        mutating func load(_ ks: [BlockKey], from start: Int, count: Int) -> Int {
            var k = 0
            while k < count, start + k < ks.count, let i = keys.firstIndex(of: ks[start + k]) {
                keys.insert(keys.remove(at: i), at: 0)
                k += 1
            }
            return k
        }
    }

    @Test(arguments: [0, 1, 7, 40])
    func lruMatchesAReferenceModel(capacity: Int) {
        var rng = SplitMix64(seed: UInt64(capacity) + 3)
        let tier = HostPrefixTier(capacityBlocks: capacity)
        var model = ReferenceLRU(capacity: capacity)
        let universe = (1...60).map { BlockKey(lo: UInt64($0), hi: 99) }
        for _ in 0..<3_000 {
            if rng.next() % 3 != 0 {
                let k = universe[Int(rng.next() % UInt64(universe.count))]
                tier.willEvict(block: 0, key: k)
                model.evicted(k)
            } else {
                let start = Int(rng.next() % 10), count = Int(rng.next() % 6)
                let chain = (0..<12).map { _ in universe[Int(rng.next() % UInt64(universe.count))] }
                let expected = tier.loadableBlocks(chain, from: start, maxBlocks: count)
                #expect(tier.load(chain, from: start, into: ArraySlice(repeating: BlockID(0), count: count)) == expected)
                #expect(model.load(chain, from: start, count: count) == expected)
            }
            #expect(tier.keysByRecency() == model.keys)
            #expect(tier.validate())
        }
        #expect(tier.count <= capacity)
    }

    /// Charged write-backs: with `chargesHostWrites` each stored key is a block copied down, priced in the
    /// step that evicted it; the tier reports them once.
    @Test func writeBacksAreDrainedOnceAndChargedWhenAsked() throws {
        let tier = HostPrefixTier(capacityBlocks: 2)
        let k = (1...3).map { BlockKey(lo: UInt64($0), hi: 1) }
        for key in k { tier.willEvict(block: 0, key: key) }
        #expect(tier.drainStepHostBlocks() == 3 && tier.drainStepHostBlocks() == 0)
        tier.willEvict(block: 0, key: k[2])   // already held: no copy
        #expect(tier.drainStepHostBlocks() == 0)
        let trace = sharedPrefixTrace(300, documents: 6, documentTokens: 512, seed: 3, spacing: 0.05)
        var c = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: 0.15 * 1_073_741_824)
        c.hostTierBytes = 2 * 1_073_741_824
        c.reportsConversations = true
        let free = try ModelledEngine(config: c).run(trace, predictor: nil)
        c.chargesHostWrites = true
        let charged = try ModelledEngine(config: c).run(trace, predictor: nil)
        let written = try #require(charged.hostTier).stats.stored
        #expect(written > 0 && written == free.hostTier!.stats.stored)
        #expect(charged.conversations!.hostLinkBytes == free.conversations!.hostLinkBytes)
        #expect(charged.makespan > free.makespan)
    }

    @Test func admissionOnTheCostModel() {
        let h100 = RooflineCostModel(model: .llama3_8B, hardware: .h100_80GB)
        let rule = HostTierAdmission(costModel: h100, blockTokens: 16, referenceChunkTokens: 8192)
        #expect(rule.loadsPay)
        #expect(rule.loadSecondsPerBlock > 0 && rule.recomputeSecondsPerBlock > 5 * rule.loadSecondsPerBlock)
        var slowLink = HardwareSpec.h100_80GB
        slowLink.hostLinkBandwidth = 1e9   // 1 GB/s: a 2 MiB block takes longer than its 16 tokens
        let slow = HostTierAdmission(costModel: RooflineCostModel(model: .llama3_8B, hardware: slowLink),
                                     blockTokens: 16, referenceChunkTokens: 8192)
        #expect(!slow.loadsPay)
    }

    func config(_ policy: ReservationPolicy, hostGiB: Double) -> ModelledRunConfig {
        var c = ModelledRunConfig(model: .llama3_8B, hardware: .h100_80GB, kvBytes: 0.5 * 1_073_741_824)
        c.maxTokens = 256
        c.scheduler.reservation = policy
        c.hostTierBytes = hostGiB * 1_073_741_824
        return c
    }

    @Test(arguments: [ReservationPolicy.onDemand, .predicted])
    func hostTierLoadsEvictedPrefixesAndHelpsTTFT(policy: ReservationPolicy) throws {
        // 12 documents of 1024 tokens (64 blocks each, 768 in all) against a 256-block device cache.
        let trace = sharedPrefixTrace(240, documents: 12, documentTokens: 1024, seed: 11, spacing: 0.05)
        let without = try ModelledEngine(config: config(policy, hostGiB: 0)).run(trace, predictor: HistoryLengthPredictor())
        let with = try ModelledEngine(config: config(policy, hostGiB: 4)).run(trace, predictor: HistoryLengthPredictor())
        #expect(without.hostTier == nil && without.tierLoadTokens == 0)
        #expect(with.requests == trace.count && with.rejected == 0 && without.requests == trace.count)
        #expect(with.outputTokens == without.outputTokens)
        #expect(with.tierLoadTokens > 0)
        let blockBytes = Double(16 * ModelSpec.llama3_8B.kvBytesPerToken)
        #expect(with.tierLoadBytes == Double(with.tierLoadTokens / 16) * blockBytes)
        #expect(with.hostTier?.loadsPay == true && (with.hostTier?.stats.stored ?? 0) > 0)
        // Loaded tokens are not recomputed: prefill work drops by at least most of them.
        #expect(with.prefillTokens < without.prefillTokens)
        #expect(with.ttftP50 <= without.ttftP50)
    }

    @Test func tierWhoseLoadsDoNotPayChangesNothing() throws {
        let trace = sharedPrefixTrace(120, documents: 10, documentTokens: 1024, seed: 5, spacing: 0.05)
        var slow = config(.onDemand, hostGiB: 4)
        slow.hardware.hostLinkBandwidth = 1e9
        var off = slow
        off.hostTierBytes = 0
        let a = try ModelledEngine(config: slow).run(trace, predictor: nil)
        let b = try ModelledEngine(config: off).run(trace, predictor: nil)
        #expect(a.hostTier?.loadsPay == false && a.tierLoadTokens == 0 && (a.hostTier?.stats.stored ?? 0) > 0)
        #expect(a.steps == b.steps && a.prefillTokens == b.prefillTokens && a.prefixHitTokens == b.prefixHitTokens)
        #expect(a.ttftP50 == b.ttftP50 && a.ttftP99 == b.ttftP99 && a.makespan == b.makespan)
        #expect(b.jsonFields.allSatisfy { !$0.0.hasPrefix("tier_") && !$0.0.hasPrefix("host_tier") })
    }

    /// Drives the scheduler with the tier directly, checking the cache and the tier after every step.
    @Test(arguments: [ReservationPolicy.onDemand, .predicted, .worstCase])
    func schedulerWithTierKeepsInvariants(policy: ReservationPolicy) throws {
        let bt = 16
        let cache = try KVCacheManager(KVCacheConfig(blockTokens: bt, capacityBlocks: 96))
        let tier = HostPrefixTier(capacityBlocks: 80)
        cache.evictionObserver = tier
        var sc = SchedulerConfig(reservation: policy)
        sc.maxBatchedTokens = 512
        sc.maxRunningSequences = 8
        let scheduler = Scheduler(config: sc, cache: cache, predictor: HistoryLengthPredictor())
        scheduler.prefixLoadSource = tier
        let trace = sharedPrefixTrace(150, documents: 8, documentTokens: 256, seed: 21, spacing: 0)
        var keysOf: [[BlockKey]] = []
        var target: [Int] = [], produced: [Int] = []
        for (i, r) in trace.enumerated() {
            let keys = TracePromptKeys.keys(for: r, index: i, blockTokens: bt)
            keysOf.append(keys)
            target.append(min(r.outputTokens, 64))
            produced.append(0)
            try scheduler.submit(SchedulerRequest(id: SequenceID(Int64(i)), prompt: .keys(keys, tokenCount: r.inputTokens),
                                                  maxTokens: 64, arrival: 0, knownOutputTokens: target[i]))
        }
        var loaded = 0, finished = 0, now = 0.0
        while !scheduler.isIdle {
            let plan = try scheduler.schedule(now: now)
            if plan.isEmpty {
                Issue.record("no progress with \(scheduler.activeCount) requests left")
                break
            }
            try cache.validate()
            #expect(tier.validate())
            for l in plan.prefixLoads {
                let i = Int(l.id.raw)
                let table = try cache.blockTable(l.id)
                let start = try #require(table.firstIndex(of: l.blocks[0]))
                #expect(Array(table[start ..< start + l.blocks.count]) == l.blocks)
                #expect(l.tokens == l.blocks.count * bt && l.tokens < trace[i].inputTokens)
                // Loaded blocks are published to the device cache like computed ones.
                #expect(cache.matchLength(Array(keysOf[i][0 ..< start + l.blocks.count])) == start + l.blocks.count)
                #expect(plan.prefills.contains { $0.id == l.id && $0.contextBefore >= start * bt + l.tokens })
                loaded += l.tokens
            }
            var stops: [Bool] = []
            for p in plan.prefills where p.samples {
                produced[Int(p.id.raw)] += 1
                stops.append(produced[Int(p.id.raw)] >= target[Int(p.id.raw)])
            }
            for d in plan.decodes {
                produced[Int(d.id.raw)] += 1
                stops.append(produced[Int(d.id.raw)] >= target[Int(d.id.raw)])
            }
            now += 0.01
            try scheduler.complete(stops: stops, now: now)
            finished += scheduler.finished.count   // planning and completion finishes of this step
            try cache.validate()
        }
        #expect(finished == trace.count && scheduler.stats.capacityFinishes == 0)
        #expect(loaded > 0 && loaded == scheduler.stats.prefixLoadedTokens)
        #expect(cache.sequenceCount == 0 && cache.stats.usedBlocks == 0)
        try cache.validate()
        #expect(tier.validate() && tier.count <= 80)
    }
}
