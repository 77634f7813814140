import KVCache
import KVPlan
import Testing
@testable import KVScheduler

/// A predictor that guesses the true length with seeded multiplicative noise, and counts feedback.
final class NoisyPredictor: OutputLengthPredictor {
    var truth: [Int: Int] = [:]   // prompt length -> true output (prompt lengths are unique per test request)
    var state: UInt64
    var observed = 0
    init(seed: UInt64) { state = seed }
    func next() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) * 0x1p-53
    }
    func predict(_ input: PredictionInput) -> LengthPrediction {
        let t = truth[input.promptTokens] ?? input.maxTokens
        let guess = max(1, Int(Double(t) * (0.5 + next())))
        return LengthPrediction(expected: guess, reserve: max(guess, Int(Double(guess) * 1.2)), bucket: 0)
    }
    func observe(_ input: PredictionInput, actualOutput: Int) { observed += 1 }
}

/// Seeded generator for the tests.
struct TestRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct ReferenceRequest {
    var prompt: Int
    var trueOutput: Int
    var maxTokens: Int
    var produced = 0
    var finished = false
}

/// Drives a scheduler over a cache with random arrivals and checks every invariant after every step.
func runRandomSchedule(seed: UInt64, policy: ReservationPolicy, order: QueueOrder, swap: Bool = false,
                       tokenPrompts: Bool = false) throws -> SchedulerStats {
    var rng = TestRNG(state: seed)
    let blockTokens = [4, 16].randomElement(using: &rng)!
    let capacity = Int.random(in: 24...160, using: &rng)
    let cache = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacity))
    var config = SchedulerConfig(reservation: policy)
    config.maxRunningSequences = Int.random(in: 2...24, using: &rng)
    config.maxBatchedTokens = Int.random(in: 8...256, using: &rng)
    config.order = order
    if Bool.random(using: &rng) { config.projectedAdmission = false }
    if Bool.random(using: &rng) {
        config.stallFree = StallFreeBudget(baseTokens: Int.random(in: 1...64, using: &rng),
                                           tokensPerContextToken: Double.random(in: 0...0.2, using: &rng))
    }
    let predictor = NoisyPredictor(seed: seed)
    let scheduler = Scheduler(config: config, cache: cache, predictor: predictor)
    let swapSpace = CountingSwapSpace(capacityBlocks: capacity / 2)
    if swap { scheduler.swapSpace = swapSpace }

    var reference: [Int: ReferenceRequest] = [:]
    var nextID = 0
    let total = 60
    var now = 0.0
    let sharedPrefix = (0..<(blockTokens * 3)).map { _ in UInt32.random(in: 0..<50, using: &rng) }
    var usedPromptLengths = Set<Int>()
    var steps = 0
    while true {
        // Random arrivals.
        let arrivals = nextID < total ? Int.random(in: 0...3, using: &rng) : 0
        for _ in 0..<arrivals where nextID < total {
            var promptLen = Int.random(in: 1...(blockTokens * 12), using: &rng)
            while usedPromptLengths.contains(promptLen) { promptLen += 1 }
            usedPromptLengths.insert(promptLen)
            let out = Int.random(in: 1...(blockTokens * 8), using: &rng)
            let maxTokens = Int.random(in: 1...(blockTokens * 10), using: &rng)
            predictor.truth[promptLen] = out
            let prompt: SchedulerRequest.Prompt
            if tokenPrompts {
                var toks = Bool.random(using: &rng) ? Array(sharedPrefix.prefix(promptLen)) : []
                while toks.count < promptLen { toks.append(UInt32.random(in: 0..<50, using: &rng)) }
                prompt = .tokens(toks)
            } else {
                let shared = Bool.random(using: &rng)
                let keys = (0..<(promptLen / blockTokens)).map { k in
                    BlockKey(lo: UInt64(k + 1), hi: shared ? 7 : UInt64(nextID + 100))
                }
                prompt = .keys(keys, tokenCount: promptLen)
            }
            try scheduler.submit(SchedulerRequest(id: SequenceID(Int64(nextID)), prompt: prompt, maxTokens: maxTokens,
                                                  arrival: now, knownOutputTokens: out))
            reference[nextID] = ReferenceRequest(prompt: promptLen, trueOutput: out, maxTokens: maxTokens)
            nextID += 1
        }
        let plan = try scheduler.schedule(now: now)
        // Limits.
        #expect(plan.batchedTokens <= config.maxBatchedTokens)
        if let stallFree = config.stallFree, !plan.decodes.isEmpty {
            let limit = stallFree.tokens(decodeContextTokens: plan.decodes.reduce(0) { $0 + $1.context })
            #expect(plan.batchedTokens - plan.decodes.count <= max(limit - plan.decodes.count, blockTokens))
        }
        #expect(scheduler.runningCount <= config.maxRunningSequences)
        // Block accounting matches the cache.
        try cache.validate()
        var held = Set<BlockID>()
        for p in plan.prefills {
            #expect(scheduler.state(of: p.id) == .running)
            let table = try cache.blockTable(p.id)
            #expect(p.contextBefore + p.tokens <= table.count * blockTokens)
            #expect(scheduler.reservedTokens(of: p.id) == table.count * blockTokens)
            held.formUnion(table)
        }
        for d in plan.decodes {
            #expect(scheduler.state(of: d.id) == .running)
            let table = try cache.blockTable(d.id)
            #expect(d.context + 1 <= table.count * blockTokens)
            #expect(scheduler.reservedTokens(of: d.id) == table.count * blockTokens)
            held.formUnion(table)
        }
        #expect(held.count <= capacity)
        for s in plan.swapOuts { #expect(!s.blocks.isEmpty) }
        #expect(swapSpace.usedBlocks <= swapSpace.capacityBlocks)

        // The engine: one token per sampler, stopping at the true length.
        var stops: [Bool] = []
        var samplers: [Int] = plan.prefills.filter(\.samples).map { Int($0.id.raw) }
        samplers += plan.decodes.map { Int($0.id.raw) }
        #expect(samplers.count == plan.samplerCount)
        for i in samplers {
            reference[i]!.produced += 1
            stops.append(reference[i]!.produced >= reference[i]!.trueOutput)
        }
        now += 0.01
        try scheduler.complete(stops: stops, now: now)
        for f in scheduler.finished {
            let i = Int(f.id.raw)
            var r = reference[i]!
            #expect(!r.finished)
            r.finished = true
            switch f.reason {
            case .stop: #expect(f.outputTokens == r.trueOutput && r.trueOutput <= r.maxTokens)
            case .length: #expect(f.outputTokens == r.maxTokens && r.maxTokens <= r.trueOutput)
            case .capacity: #expect(r.prompt + min(r.trueOutput, r.maxTokens) > capacity * blockTokens - blockTokens)
            }
            reference[i] = r
        }
        steps += 1
        if nextID == total && scheduler.isIdle { break }
        #expect(steps < 200_000)
        if steps >= 200_000 { break }
    }
    // Every request finished, nothing is held.
    let allFinished = reference.values.allSatisfy { $0.finished }
    #expect(allFinished)
    #expect(cache.sequenceCount == 0)
    #expect(cache.freeBlockCount == capacity)
    #expect(swapSpace.usedBlocks == 0)
    try cache.validate()
    if policy == .predicted { #expect(predictor.observed > 0) }
    return scheduler.stats
}

@Suite struct SchedulerInvariantTests {
    @Test(arguments: ReservationPolicy.allCases)
    func randomArrivalsKeepInvariants(policy: ReservationPolicy) throws {
        var preemptions = 0
        for seed in UInt64(1)...6 {
            preemptions += try runRandomSchedule(seed: seed &* 7919, policy: policy, order: .fcfs).preemptions
        }
        // The random loads are tight enough to make on-demand preempt (else the test proves little).
        if policy == .onDemand { #expect(preemptions > 0) }
        if policy == .worstCase { #expect(preemptions == 0) }
    }

    @Test(arguments: [ReservationPolicy.onDemand, .predicted])
    func shortestPredictedFirstKeepsInvariants(policy: ReservationPolicy) throws {
        for seed in UInt64(11)...14 {
            _ = try runRandomSchedule(seed: seed, policy: policy, order: .shortestPredictedFirst(agingSeconds: 0.05))
        }
    }

    @Test(arguments: [ReservationPolicy.onDemand, .predicted])
    func cacheAwareOrderKeepsInvariants(policy: ReservationPolicy) throws {
        for seed in UInt64(21)...24 {
            _ = try runRandomSchedule(seed: seed, policy: policy, order: .cacheAware(starvationSeconds: 0.05))
        }
    }

    @Test(arguments: [ReservationPolicy.onDemand, .predicted])
    func swapPreemptionKeepsInvariants(policy: ReservationPolicy) throws {
        var swapped = 0
        for seed in UInt64(1)...6 {
            let st = try runRandomSchedule(seed: seed &* 7919, policy: policy, order: .fcfs, swap: true)
            swapped += st.swappedOutTokens
        }
        #expect(swapped > 0)
    }

    @Test func tokenPromptsShareCachedPrefixes() throws {
        var hits = 0
        for seed in UInt64(31)...34 {
            hits += try runRandomSchedule(seed: seed, policy: .onDemand, order: .fcfs, tokenPrompts: true).prefixHitTokens
        }
        #expect(hits > 0)
    }
}
