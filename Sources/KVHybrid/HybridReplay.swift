/// Replays a hybrid-model trace through one policy as the Marconi simulator does: for each request in
/// order, `hit = lookup(input)`, then `insert(input + output)` at once (no concurrency, no pinning).
///
/// Alpha tuning (Marconi policies): alpha is 0 until the first insert that evicts, at request N0
/// (1-based); W = 5·N0. At the insert of request W, between its dry run and its eviction check, requests
/// 1..W are replayed from an empty cache (clock 1) with each alpha in {0, 0.1, ..., 2.0}; the alpha with
/// the most FLOPs saved over the last 500 replayed requests wins (the smallest on a tie). Once; never
/// when W exceeds the trace. `adaptive` instead re-tunes in windows on shadow caches (`HybridAlphaTuner`,
/// `Adaptive`); one candidate means fixed settings. Allocation: the sequence buffer is reused; the tree
/// grows as it must.
public struct HybridReplay: Sendable {
    /// One request: prompt and output token ids.
    public struct Request: Sendable {
        public var input: [Int32]
        public var output: [Int32]
        public init(input: [Int32], output: [Int32]) {
            self.input = input
            self.output = output
        }
    }

    /// What one request saw, and the cache after its insert.
    public struct Step: Sendable, Equatable {
        public var hitTokens: Int
        public var checkpointsAfter: Int
        public var cachedTokensAfter: Int
        public var clockAfter: Int64
        public var alphaAfter: Double
    }

    /// How `adaptive` runs: its candidate settings (one: fixed, no tuning), the one it starts with, the
    /// tuning window in requests and the decay of older windows' scores.
    public struct Adaptive: Sendable {
        public var candidates: [HybridAlphaTuner.Candidate]
        public var start: Int
        public var window: Int
        public var decay: Double
        public var margin: Double
        /// The first decision at this many times the request of the first eviction (0: at the first window's end).
        public var firstFactor: Int
        public init(candidates: [HybridAlphaTuner.Candidate] = HybridAlphaTuner.defaultGrid, start: Int = 0,
                    window: Int = 25, decay: Double = 0.5, margin: Double = 0.1, firstFactor: Int = 5) {
            self.candidates = candidates
            self.start = min(start, candidates.count - 1)
            self.window = window
            self.decay = decay
            self.margin = margin
            self.firstFactor = firstFactor
        }
    }

    /// A whole run.
    public struct Result: Sendable {
        public var policy: HybridPolicy
        public var steps: [Step] = []
        public var inputTokens = 0
        public var hitTokens = 0
        public var saved = HybridModel.FLOPs()
        public var alpha: Double?
        public var firstEvictionAt: Int?
        public var window: Int?
        public var evictedNodes = 0
        public var evictionCalls = 0
        /// `adaptive`: its settings at the end, and how many times the tuner changed them.
        public var settings: HybridCache.AdaptiveSettings?
        public var settingSwitches = 0
        public var tokenHitRate: Double { inputTokens == 0 ? 0 : Double(hitTokens) / Double(inputTokens) }
    }

    /// The alphas the tuner tries: 0, 0.1, ..., 2.0.
    public static let alphaGrid: [Double] = (0 ... 20).map { Double($0) / 10 }

    /// Runs `requests` through `policy` on `model` with `capacityBytes`.
    public static func run(_ requests: [Request], model: HybridModel, capacityBytes: Int64,
                           policy: HybridPolicy, adaptive: Adaptive = Adaptive()) -> Result {
        var result = Result(policy: policy)
        var seq: [Int32] = []
        if policy == .vllmPlus {
            var cache = HybridBlockCache(model: model, capacityBytes: capacityBytes)
            for r in requests {
                let hit = r.input.withUnsafeBufferPointer { cache.lookup($0) }
                fill(&seq, r)
                seq.withUnsafeBufferPointer { cache.insert($0) }
                record(&result, r, hit, model, Step(hitTokens: hit, checkpointsAfter: cache.blocks,
                       cachedTokensAfter: cache.cachedTokens, clockAfter: cache.clock, alphaAfter: 0))
            }
            result.evictedNodes = cache.evictedNodes
            result.evictionCalls = cache.evictionCalls
            return result
        }
        let first = adaptive.candidates[adaptive.start]
        var cache = HybridCache(model: model, policy: policy, capacityBytes: capacityBytes,
                                alpha: policy == .adaptive ? first.alpha : 0, settings: first.settings)
        var tuner = policy == .adaptive && adaptive.candidates.count > 1
            ? HybridAlphaTuner(model: model, capacityBytes: capacityBytes, candidates: adaptive.candidates,
                               window: adaptive.window, decay: adaptive.decay, margin: adaptive.margin,
                               firstFactor: adaptive.firstFactor, start: adaptive.start) : nil
        for (i, r) in requests.enumerated() {
            let hit = r.input.withUnsafeBufferPointer { cache.lookup($0).hit }
            fill(&seq, r)
            if tuner != nil, let next = r.input.withUnsafeBufferPointer({ input in
                seq.withUnsafeBufferPointer { tuner!.observe(input: input, sequence: $0) }
            }) {
                cache.alpha = next.alpha
                cache.settings = next.settings
                result.alpha = next.alpha
            }
            let calls = cache.evictionCalls
            seq.withUnsafeBufferPointer { s in
                let cost = cache.prepareInsert(s)
                if policy.tunesAlpha, let w = result.window, w == i + 1 {
                    let tuned = tune(Array(requests[0 ..< w]), model: model, capacityBytes: capacityBytes, policy: policy)
                    cache.alpha = tuned
                    result.alpha = tuned
                }
                cache.finishInsert(s, cost: cost)
            }
            if result.firstEvictionAt == nil && cache.evictionCalls > calls {
                result.firstEvictionAt = i + 1
                result.window = 5 * (i + 1)
            }
            record(&result, r, hit, model, Step(hitTokens: hit, checkpointsAfter: cache.tree.checkpoints,
                   cachedTokensAfter: cache.tree.cachedTokens, clockAfter: cache.clock, alphaAfter: cache.alpha))
        }
        result.evictedNodes = cache.evictedNodes
        result.evictionCalls = cache.evictionCalls
        if policy == .adaptive {
            result.alpha = cache.alpha
            result.settings = cache.settings
            result.settingSwitches = tuner?.switches ?? 0
        }
        return result
    }

    /// The alpha with the most FLOPs saved over the last 500 of `window` replayed with it (the smallest on
    /// a tie), each from an empty cache whose clock starts at 1.
    public static func tune(_ window: [Request], model: HybridModel, capacityBytes: Int64, policy: HybridPolicy) -> Double {
        var best = 0.0, bestSaved = Int64.min
        var seq: [Int32] = []
        for alpha in alphaGrid {
            var cache = HybridCache(model: model, policy: policy, capacityBytes: capacityBytes, alpha: alpha, clock: 1)
            var saved: Int64 = 0
            for (i, r) in window.enumerated() {
                let hit = r.input.withUnsafeBufferPointer { cache.lookup($0).hit }
                fill(&seq, r)
                _ = seq.withUnsafeBufferPointer { s in cache.finishInsert(s, cost: cache.prepareInsert(s)) }
                if i >= window.count - 500 { saved += model.savedFLOPs(hitTokens: Int64(hit)).total }
            }
            if saved > bestSaved {
                bestSaved = saved
                best = alpha
            }
        }
        return best
    }

    private static func fill(_ seq: inout [Int32], _ r: Request) {
        seq.removeAll(keepingCapacity: true)
        seq.append(contentsOf: r.input)
        seq.append(contentsOf: r.output)
    }

    private static func record(_ result: inout Result, _ r: Request, _ hit: Int, _ model: HybridModel, _ step: Step) {
        result.inputTokens += r.input.count
        result.hitTokens += hit
        result.saved += model.savedFLOPs(hitTokens: Int64(hit))
        result.steps.append(step)
    }
}
