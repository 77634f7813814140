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
/// - Ties: among conversations of equal value the one earliest in the cached list (conversations holding
///   chunks, appended when a turn ends, removed by moving the last one into the gap) leaves first; an
///   eviction run keeps taking chunks from its conversation while they are worth no more than the least
///   of the others'.
///
/// Cost: each victim chunk is found in O(log n) over the n cached conversations (`PensieveVictimTree`,
/// one for GPU victims and one for host victims, keyed by value and list position; with `pensieve`
/// O(log^2 n) amortised, for the re-decisions of its time-dependent order), and each moved or dropped
/// chunk re-keys its conversation in both, O(log n).
/// No allocation per call once the per-conversation arrays have grown. `validate()` checks every
/// invariant, the victim trees included, in O(conversations).
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
    /// Cached conversations with GPU chunks (keyed by their leading GPU chunk) and with host chunks
    /// (keyed by their leading host chunk), ties by `cachedIndex`.
    private var gpuVictims: PensieveVictimTree
    private var hostVictims: PensieveVictimTree
    /// Find victims by scanning the cached list (O(cached conversations) per run): the reference the
    /// victim trees are checked against.
    var scansForVictims = false

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
        let order: PensieveVictimTree.Order = config.policy == .pensieve ? .costOverIdle : .oldestFirst
        gpuVictims = PensieveVictimTree(order: order)
        hostVictims = PensieveVictimTree(order: order)
    }

    private func chunks(_ c: Int) -> Int { (length[c] + config.chunkTokens - 1) / config.chunkTokens }

    /// Serves turn of conversation `c` (a dense id >= 0) at modelled time `now` (non-decreasing per
    /// conversation): a prompt of `promptTokens` that starts with the first `reusableTokens` of the
    /// conversation's history (all of it by default; the rest of the history is stale and goes), and a
    /// reply of `outputTokens`. The turn is served at once: `take`, `retain` of its whole context in
    /// the whole GPU, then `swapAheadOfTime`. Precondition: sizes >= 0.
    public mutating func serve(conversation c: Int, now: Double, promptTokens: Int, outputTokens: Int,
                               reusableTokens: Int = .max) -> Served {
        precondition(outputTokens >= 0, "sizes are >= 0")
        let s = take(conversation: c, now: now, promptTokens: promptTokens, reusableTokens: reusableTokens)
        retain(conversation: c, now: now, contextTokens: promptTokens + outputTokens, gpuCapacity: config.gpuChunks)
        swapAheadOfTime(now: now, gpuCapacity: config.gpuChunks)
        return s
    }

    // The phases of a turn, for a caller that runs the turn itself (the modelled engine's
    // `ConversationRetention`: the turn's KV lives in the device pool while it runs, and the chunks
    // the retention may hold are the pool's blocks that running requests do not hold, `gpuCapacity`).

    /// What a turn of conversation `c` with `promptTokens` (starting with `reusableTokens` of its
    /// history) would find now, changing nothing. O(1).
    public func hits(conversation c: Int, promptTokens: Int, reusableTokens: Int = .max) -> Served {
        precondition(promptTokens >= 0 && reusableTokens >= 0, "sizes are >= 0")
        var s = Served()
        guard c >= 0, c < length.count else {
            s.newTokens = promptTokens
            s.prefillSeconds = config.cost.seconds(tokens: promptTokens, contextBefore: 0)
            return s
        }
        let C = config.chunkTokens
        let history = min(length[c], promptTokens, reusableTokens)
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
        return s
    }

    /// A turn of conversation `c` (a dense id >= 0) starts at `now`: returns `hits` and takes the
    /// conversation out of both tiers (its GPU chunks become the turn's, its host chunks are loaded;
    /// it is never a victim while it runs). O(log n).
    public mutating func take(conversation c: Int, now: Double, promptTokens: Int, reusableTokens: Int = .max) -> Served {
        precondition(c >= 0, "conversation ids are >= 0")
        grow(to: c, now: now)
        let s = hits(conversation: c, promptTokens: promptTokens, reusableTokens: reusableTokens)
        release(c, now: now)
        return s
    }

    /// A turn of conversation `c` ended at `now` with `contextTokens` of context to keep: the
    /// conversation's chunks (any it still held are replaced) go to the GPU, up to `gpuCapacity`
    /// chunks in all, moving or dropping other conversations' chunks to make room; a context longer
    /// than `gpuCapacity` keeps its trailing chunks. O(chunks moved x log n).
    public mutating func retain(conversation c: Int, now: Double, contextTokens: Int, gpuCapacity: Int) {
        precondition(c >= 0 && contextTokens >= 0, "ids and sizes are >= 0")
        grow(to: c, now: now)
        if gpuCount[c] + hostCount[c] > 0 { release(c, now: now) }
        let capacity = max(0, min(gpuCapacity, config.gpuChunks))
        length[c] = contextTokens
        let total = chunks(c)
        let need = min(total, capacity)
        makeRoom(gpuCapacity: capacity, need: need, now: now)
        gpuCount[c] = need
        counters.droppedChunks += total - need
        gpuUsed += need
        lastActive[c] = now
        setCached(c, need > 0, now: now)
    }

    /// Moves or drops GPU chunks, least valuable first, until at most `gpuCapacity` are held (a device
    /// pool whose running requests grew). O(chunks moved x log n).
    public mutating func fit(gpuCapacity: Int, now: Double) {
        makeRoom(gpuCapacity: max(0, gpuCapacity), need: 0, now: now)
    }

    /// Ahead-of-time swapping: while fewer than `swapThreshold` of the GPU's chunks are free (of
    /// `gpuCapacity`, the chunks the retention may hold), GPU chunks move to free host room (nothing
    /// is dropped ahead of time). O(chunks moved x log n).
    public mutating func swapAheadOfTime(now: Double, gpuCapacity: Int) {
        let floor = config.swapThreshold * Double(config.gpuChunks)
        while Double(gpuCapacity - gpuUsed) < floor && hostUsed < config.hostChunks && gpuUsed > 0 {
            evictGPUChunks(gpuCapacity: gpuCapacity, need: Int(floor.rounded(.up)), now: now, aheadOfTime: true)
        }
    }

    /// Per-conversation storage up to id `c`.
    private mutating func grow(to c: Int, now: Double) {
        while length.count <= c {
            length.append(0); gpuCount.append(0); hostCount.append(0); lastActive.append(now); cachedIndex.append(-1)
        }
    }

    /// Takes conversation `c`'s chunks out of both tiers.
    private mutating func release(_ c: Int, now: Double) {
        gpuUsed -= gpuCount[c]
        hostUsed -= hostCount[c]
        gpuCount[c] = 0
        hostCount[c] = 0
        setCached(c, false, now: now)
    }

    /// Evicts GPU chunks until `gpuCapacity - gpuUsed >= need`.
    private mutating func makeRoom(gpuCapacity: Int, need: Int, now: Double) {
        while gpuCapacity - gpuUsed < need { evictGPUChunks(gpuCapacity: gpuCapacity, need: need, now: now, aheadOfTime: false) }
    }

    /// Modelled recompute time of conversation `c`'s next GPU victim chunk (host victim with `host`).
    private func victimCost(_ c: Int, host: Bool) -> Double {
        let k = chunks(c) - gpuCount[c] - (host ? hostCount[c] : 0)
        return config.cost.seconds(tokens: config.chunkTokens, contextBefore: k * config.chunkTokens)
    }

    /// Value of conversation `c`'s next GPU victim (host victim with `host`): lower leaves first. The
    /// victim trees order by this same expression.
    private func value(_ c: Int, host: Bool, now: Double) -> Double {
        switch config.policy {
        case .lru, .prefixLRU: return lastActive[c]
        case .pensieve: return victimCost(c, host: host) / max(now - lastActive[c], 1e-9)
        }
    }

    /// Puts cached conversation `c`'s current keys into the victim trees, or takes it out of those it
    /// has no chunks for. O(log n).
    private mutating func reindex(_ c: Int, now: Double) {
        let tie = Int(cachedIndex[c]), pensieve = config.policy == .pensieve
        if tie >= 0 && gpuCount[c] > 0 {
            gpuVictims.set(c, cost: pensieve ? victimCost(c, host: false) : 0, since: lastActive[c], tie: tie, now: now)
        } else {
            gpuVictims.remove(c, now: now)
        }
        if tie >= 0 && hostCount[c] > 0 {
            hostVictims.set(c, cost: pensieve ? victimCost(c, host: true) : 0, since: lastActive[c], tie: tie, now: now)
        } else {
            hostVictims.remove(c, now: now)
        }
    }

    /// The least valuable conversation with GPU chunks (host chunks with `host`) and, when scanning, the
    /// least value among the others; -1 if none.
    private mutating func leastValuable(host: Bool, now: Double) -> (best: Int, second: Double) {
        guard scansForVictims else {
            return ((host ? hostVictims.minimum(now: now) : gpuVictims.minimum(now: now)) ?? -1, .infinity)
        }
        var best = -1, bestValue = Double.infinity, second = Double.infinity
        for x in cached {
            let c = Int(x)
            guard (host ? hostCount[c] : gpuCount[c]) > 0 else { continue }
            let v = value(c, host: host, now: now)
            if v < bestValue { second = bestValue; bestValue = v; best = c } else if v < second { second = v }
        }
        return (best, second)
    }

    /// Whether conversation `c`'s next GPU chunk is worth no more than every other conversation's.
    private mutating func staysLeast(_ c: Int, second: Double, now: Double) -> Bool {
        if scansForVictims { return value(c, host: false, now: now) <= second }
        guard let m = gpuVictims.minimum(now: now) else { return false }
        return m == c || value(c, host: false, now: now) <= value(m, host: false, now: now)
    }

    /// Moves GPU chunks to the host (dropping them when the host cannot take them; ahead of time only
    /// while the host has room) from the least valuable conversation until `need` of `gpuCapacity`
    /// chunks are free, that
    /// conversation runs out, or its next chunk is worth more than the runner-up's.
    private mutating func evictGPUChunks(gpuCapacity: Int, need: Int, now: Double, aheadOfTime: Bool) {
        let (c, second) = leastValuable(host: false, now: now)
        precondition(c >= 0, "the GPU is full of chunks of the running conversation")
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
            if gpuCount[c] + hostCount[c] == 0 { setCached(c, false, now: now); return }
            reindex(c, now: now)
        } while gpuCapacity - gpuUsed < need && gpuCount[c] > 0 && staysLeast(c, second: second, now: now)
    }

    /// Drops the least valuable leading host chunk.
    private mutating func dropHostChunk(now: Double) {
        let best = leastValuable(host: true, now: now).best
        guard best >= 0 else { return }
        hostCount[best] -= 1
        hostUsed -= 1
        counters.droppedChunks += 1
        if gpuCount[best] + hostCount[best] == 0 { setCached(best, false, now: now) } else { reindex(best, now: now) }
    }

    /// Adds `c` to the cached list (or removes it, moving the last one into its place) and re-keys the
    /// conversations whose list position changed. O(log n).
    private mutating func setCached(_ c: Int, _ on: Bool, now: Double) {
        let at = Int(cachedIndex[c])
        if on, at < 0 {
            cachedIndex[c] = Int32(cached.count)
            cached.append(Int32(c))
        } else if !on, at >= 0 {
            let last = Int(cached.removeLast())
            cachedIndex[c] = -1
            if last != c {
                cached[at] = Int32(last)
                cachedIndex[last] = Int32(at)
                reindex(last, now: now)
            }
        }
        reindex(c, now: now)
    }

    /// Where conversation `c`'s chunks are: (dropped, host, GPU) chunk counts; nil if unknown.
    public func chunkCounts(of c: Int) -> (dropped: Int, host: Int, gpu: Int)? {
        guard c >= 0, c < length.count else { return nil }
        return (chunks(c) - gpuCount[c] - hostCount[c], hostCount[c], gpuCount[c])
    }

    /// Checks every invariant of the contract; throws `invariant` naming the first broken one.
    public func validate() throws(CacheModelError) {
        var gpu = 0, host = 0, gpuMembers = 0, hostMembers = 0
        for c in length.indices {
            guard gpuCount[c] >= 0, hostCount[c] >= 0, gpuCount[c] + hostCount[c] <= chunks(c) else {
                throw .invariant("conversation \(c): \(gpuCount[c]) GPU and \(hostCount[c]) host chunks of \(chunks(c))")
            }
            gpu += gpuCount[c]
            host += hostCount[c]
            let holds = gpuCount[c] + hostCount[c] > 0
            if holds != (cachedIndex[c] >= 0) { throw .invariant("conversation \(c) cached-list membership is wrong") }
            if cachedIndex[c] >= 0 && cached[Int(cachedIndex[c])] != Int32(c) { throw .invariant("cached list index of \(c) is stale") }
            if gpuCount[c] > 0 { gpuMembers += 1 }
            if hostCount[c] > 0 { hostMembers += 1 }
        }
        if gpu != gpuUsed || host != hostUsed { throw .invariant("usage \(gpuUsed)/\(hostUsed) chunks, conversations hold \(gpu)/\(host)") }
        if gpuUsed > config.gpuChunks || hostUsed > config.hostChunks { throw .invariant("a tier is over capacity") }
        if gpuVictims.count != gpuMembers || hostVictims.count != hostMembers {
            throw .invariant("victim trees hold \(gpuVictims.count)/\(hostVictims.count) conversations, \(gpuMembers)/\(hostMembers) hold chunks")
        }
        try gpuVictims.validate()
        try hostVictims.validate()
    }
}
