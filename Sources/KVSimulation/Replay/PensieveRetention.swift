import KVCache

/// Pensieve's per-conversation KV retention for multi-turn chat: each conversation's context (every
/// earlier prompt and reply) is kept in chunks of `chunkTokens`, in the GPU, in host memory or dropped,
/// and a turn reuses it instead of recomputing its history.
///
/// - Layout per conversation (`pensieve`, `lru`): chunks `[0, dropped)` are dropped, then host chunks,
///   then GPU chunks to the end: leading chunks leave first, to the host and then out. A turn recomputes
///   its dropped leading tokens with its new tokens, loads its host chunks over the host link, and reuses
///   its GPU chunks; afterwards its whole context (prompt and reply) is in the GPU. `prefix-lru` is the
///   mirror, a prefix cache's order (leaves first): GPU chunks from the start, then host chunks, then
///   dropped trailing chunks, recomputed after the reused prefix.
/// - Victims: the GPU moves the GPU chunk next to the host region of another conversation to the host
///   (the host first drops a chunk when full; with no host the chunk is dropped); the host drops the host
///   chunk next to the dropped region. `pensieve` takes the chunk of least value = modelled recompute time
///   of the chunk at its position / idle time of its conversation; `lru` and `prefix-lru` a chunk of the
///   longest-idle conversation.
/// - Ahead-of-time swapping: after a turn, while fewer than `swapThreshold` of the GPU chunks are free,
///   GPU chunks move to the host as long as the host has free room (nothing is dropped ahead of time).
/// - A context longer than the GPU keeps only its trailing `gpuChunks` chunks.
///
/// Cost: a conversation's value changes with time, so there is no fixed eviction order to keep in a
/// heap; each eviction run scans the cached conversations once (O(cached conversations)) and then takes
/// chunks from the chosen one while they stay below the runner-up, O(1) each. No allocation per call once
/// the per-conversation arrays have grown. `validate()` checks every invariant in O(conversations).
public struct PensieveRetention: Sendable {
    public enum Policy: String, Sendable, CaseIterable {
        case lru, pensieve
        case prefixLRU = "prefix-lru"
    }

    public struct Config: Sendable, Equatable {
        public var gpuChunks: Int
        public var hostChunks: Int
        public var chunkTokens: Int
        public var policy: Policy
        public var cost: RecomputeCost
        /// Modelled seconds to load one token's KV from host memory.
        public var hostSecondsPerToken: Double
        /// Free GPU share below which chunks are swapped to the host ahead of time, in 0...1.
        public var swapThreshold: Double

        public init(gpuChunks: Int, hostChunks: Int, chunkTokens: Int, policy: Policy, cost: RecomputeCost,
                    hostSecondsPerToken: Double, swapThreshold: Double = 0.25) {
            self.gpuChunks = gpuChunks; self.hostChunks = hostChunks; self.chunkTokens = chunkTokens
            self.policy = policy; self.cost = cost; self.hostSecondsPerToken = hostSecondsPerToken
            self.swapThreshold = swapThreshold
        }
    }

    /// What one turn did.
    public struct Served: Sendable, Equatable {
        /// History tokens the conversation had cached (the turn's reusable context).
        public var historyTokens = 0
        public var gpuHitTokens = 0
        public var hostHitTokens = 0
        /// Dropped leading history tokens, recomputed with the turn.
        public var recomputedTokens = 0
        /// Prompt tokens past the cached history.
        public var newTokens = 0
        /// Modelled prefill seconds: recomputed and new tokens on the cost model, plus host loads.
        public var prefillSeconds = 0.0
        public init() {}

        /// Adds `other`'s figures to these (totals over turns).
        public mutating func add(_ other: Served) {
            historyTokens += other.historyTokens; gpuHitTokens += other.gpuHitTokens; hostHitTokens += other.hostHitTokens
            recomputedTokens += other.recomputedTokens; newTokens += other.newTokens; prefillSeconds += other.prefillSeconds
        }
    }

    public struct Counters: Sendable, Equatable {
        /// GPU chunks moved to the host to make room, and ahead of time.
        public var swappedChunks = 0
        public var aheadOfTimeChunks = 0
        public var droppedChunks = 0
    }

    public let config: Config
    public private(set) var counters = Counters()
    public private(set) var gpuUsed = 0
    public private(set) var hostUsed = 0

    private var length: [Int] = []
    /// Chunks in the GPU and in the host; the rest of `chunks(c)` are dropped.
    private var gpuCount: [Int] = []
    private var hostCount: [Int] = []
    private var lastActive: [Double] = []
    /// Conversations holding any chunk in the GPU or the host, and each one's index there (-1: none).
    private var cached: [Int32] = []
    private var cachedIndex: [Int32] = []

    /// Throws `invalidArgument` for a capacity below 0 (GPU below 1), chunk size outside 1...2^20, a
    /// threshold outside 0...1 or a negative or non-finite host load time.
    public init(_ config: Config) throws(CacheModelError) {
        guard config.gpuChunks >= 1, config.hostChunks >= 0 else {
            throw .invalidArgument("need >= 1 GPU chunk and >= 0 host chunks, got \(config.gpuChunks) and \(config.hostChunks)")
        }
        guard (1 ... 1 << 20).contains(config.chunkTokens) else { throw .invalidArgument("chunk tokens must be in 1...\(1 << 20)") }
        guard (0 ... 1).contains(config.swapThreshold) else { throw .invalidArgument("swap threshold must be in 0...1") }
        guard config.hostSecondsPerToken.isFinite, config.hostSecondsPerToken >= 0 else {
            throw .invalidArgument("host load time must be finite and >= 0")
        }
        self.config = config
    }

    private func chunks(_ c: Int) -> Int { (length[c] + config.chunkTokens - 1) / config.chunkTokens }

    /// Serves turn of conversation `c` (a dense id >= 0) at modelled time `now` (non-decreasing per
    /// conversation): a prompt of `promptTokens` that starts with the conversation's history, and a reply
    /// of `outputTokens`. Precondition: sizes >= 0.
    public mutating func serve(conversation c: Int, now: Double, promptTokens: Int, outputTokens: Int) -> Served {
        precondition(c >= 0 && promptTokens >= 0 && outputTokens >= 0, "ids and sizes are >= 0")
        while length.count <= c {
            length.append(0); gpuCount.append(0); hostCount.append(0); lastActive.append(now); cachedIndex.append(-1)
        }
        let C = config.chunkTokens
        var s = Served()
        let history = min(length[c], promptTokens)
        s.historyTokens = history
        s.newTokens = promptTokens - history
        let dropped = chunks(c) - gpuCount[c] - hostCount[c]
        var recomputedContext = 0
        if config.policy == .prefixLRU {
            let gpuEnd = min(gpuCount[c] * C, history), hostEnd = min((gpuCount[c] + hostCount[c]) * C, history)
            s.gpuHitTokens = gpuEnd
            s.hostHitTokens = hostEnd - gpuEnd
            s.recomputedTokens = history - hostEnd
            recomputedContext = hostEnd
        } else {
            let dropEnd = min(dropped * C, history), hostEnd = min((dropped + hostCount[c]) * C, history)
            s.recomputedTokens = dropEnd
            s.hostHitTokens = hostEnd - dropEnd
            s.gpuHitTokens = history - hostEnd
        }
        s.prefillSeconds = config.cost.seconds(tokens: s.recomputedTokens, contextBefore: recomputedContext)
            + config.cost.seconds(tokens: s.newTokens, contextBefore: history)
            + Double(s.hostHitTokens) * config.hostSecondsPerToken
        // Take the conversation out of both tiers while it runs; it is never its own victim.
        gpuUsed -= gpuCount[c]
        hostUsed -= hostCount[c]
        setCached(c, false)
        length[c] = promptTokens + outputTokens
        let total = chunks(c)
        let need = min(total, config.gpuChunks)
        while config.gpuChunks - gpuUsed < need { evictGPUChunks(need: need, now: now, aheadOfTime: false) }
        gpuCount[c] = need
        hostCount[c] = 0
        counters.droppedChunks += total - need
        gpuUsed += need
        lastActive[c] = now
        setCached(c, need > 0)
        // Ahead-of-time swapping into free host room.
        let floor = config.swapThreshold * Double(config.gpuChunks)
        while Double(config.gpuChunks - gpuUsed) < floor && hostUsed < config.hostChunks && gpuUsed > 0 {
            evictGPUChunks(need: Int(floor.rounded(.up)), now: now, aheadOfTime: true)
        }
        return s
    }

    /// Value of conversation `c`'s next GPU victim (host victim with `host`): lower leaves first.
    private func value(_ c: Int, host: Bool = false, now: Double) -> Double {
        switch config.policy {
        case .lru, .prefixLRU: return lastActive[c]
        case .pensieve:
            // The leading GPU chunk (or leading host chunk) of the front layout.
            let k = chunks(c) - gpuCount[c] - (host ? hostCount[c] : 0)
            let idle = max(now - lastActive[c], 1e-9)
            return config.cost.seconds(tokens: config.chunkTokens, contextBefore: k * config.chunkTokens) / idle
        }
    }

    /// Moves GPU chunks to the host (dropping them when the host cannot take them; ahead of time only
    /// while the host has room) from the least valuable conversation until `need` chunks are free, that
    /// conversation runs out, or its next chunk is worth more than the runner-up's.
    private mutating func evictGPUChunks(need: Int, now: Double, aheadOfTime: Bool) {
        var best = -1, bestValue = Double.infinity, second = Double.infinity
        for x in cached {
            let c = Int(x)
            guard gpuCount[c] > 0 else { continue }
            let v = value(c, now: now)
            if v < bestValue { second = bestValue; bestValue = v; best = c } else if v < second { second = v }
        }
        precondition(best >= 0, "the GPU is full of chunks of the running conversation")
        let c = best
        repeat {
            if aheadOfTime {
                guard hostUsed < config.hostChunks else { return }
            } else if hostUsed == config.hostChunks && config.hostChunks > 0 {
                dropHostChunk(now: now)
            }
            if config.hostChunks == 0 || hostCount[c] == 0 && hostUsed == config.hostChunks {
                // No host room: the chunk goes (it borders the dropped region: the conversation has no host chunks).
                counters.droppedChunks += 1
            } else {
                hostCount[c] += 1
                hostUsed += 1
                if aheadOfTime { counters.aheadOfTimeChunks += 1 } else { counters.swappedChunks += 1 }
            }
            gpuCount[c] -= 1
            gpuUsed -= 1
            if gpuCount[c] + hostCount[c] == 0 { setCached(c, false); return }
        } while config.gpuChunks - gpuUsed < need && gpuCount[c] > 0 && value(c, now: now) <= second
    }

    /// Drops the least valuable leading host chunk.
    private mutating func dropHostChunk(now: Double) {
        var best = -1, bestValue = Double.infinity
        for x in cached {
            let c = Int(x)
            guard hostCount[c] > 0 else { continue }
            let v = value(c, host: true, now: now)
            if v < bestValue { bestValue = v; best = c }
        }
        guard best >= 0 else { return }
        hostCount[best] -= 1
        hostUsed -= 1
        counters.droppedChunks += 1
        if gpuCount[best] + hostCount[best] == 0 { setCached(best, false) }
    }

    private mutating func setCached(_ c: Int, _ on: Bool) {
        let at = Int(cachedIndex[c])
        if on, at < 0 {
            cachedIndex[c] = Int32(cached.count)
            cached.append(Int32(c))
        } else if !on, at >= 0 {
            let last = cached.removeLast()
            if Int(last) != c { cached[at] = last; cachedIndex[Int(last)] = Int32(at) }
            cachedIndex[c] = -1
        }
    }

    /// Where conversation `c`'s chunks are: (dropped, host, GPU) chunk counts; nil if unknown.
    public func chunkCounts(of c: Int) -> (dropped: Int, host: Int, gpu: Int)? {
        guard c >= 0, c < length.count else { return nil }
        return (chunks(c) - gpuCount[c] - hostCount[c], hostCount[c], gpuCount[c])
    }

    /// Checks every invariant of the contract; throws `invariant` naming the first broken one.
    public func validate() throws(CacheModelError) {
        var gpu = 0, host = 0
        for c in length.indices {
            guard gpuCount[c] >= 0, hostCount[c] >= 0, gpuCount[c] + hostCount[c] <= chunks(c) else {
                throw .invariant("conversation \(c): \(gpuCount[c]) GPU and \(hostCount[c]) host chunks of \(chunks(c))")
            }
            gpu += gpuCount[c]
            host += hostCount[c]
            let holds = gpuCount[c] + hostCount[c] > 0
            if holds != (cachedIndex[c] >= 0) { throw .invariant("conversation \(c) cached-list membership is wrong") }
            if cachedIndex[c] >= 0 && cached[Int(cachedIndex[c])] != Int32(c) { throw .invariant("cached list index of \(c) is stale") }
        }
        if gpu != gpuUsed || host != hostUsed { throw .invariant("usage \(gpuUsed)/\(hostUsed) chunks, conversations hold \(gpu)/\(host)") }
        if gpuUsed > config.gpuChunks || hostUsed > config.hostChunks { throw .invariant("a tier is over capacity") }
    }
}
