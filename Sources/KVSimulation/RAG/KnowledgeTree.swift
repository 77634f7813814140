import KVCache

/// RAGCache's knowledge tree: the KV of retrieved documents cached as nodes of a prefix tree under the
/// system prompt, in a GPU tier and a host-memory tier, with one eviction order per tier.
///
/// - A request's path is a sequence of segments (the system prompt's, then its documents in order);
///   node = (parent, segment), so one document after two different prefixes is two nodes, as its KV
///   differs. The tree remembers every path it has seen (metadata only); a node's KV may be in the GPU,
///   in host memory, in both, or nowhere.
/// - Invariants: a node in the GPU has its parent in the GPU; a node anywhere has its parent somewhere
///   (the root, the empty prefix, is always in the GPU and holds nothing); tier usage equals the blocks
///   of its nodes and is within capacity. A node of `t` tokens takes ceil(t / blockTokens) blocks.
/// - Serving a request: the longest cached run of leading nodes is a hit (GPU nodes, then possibly host
///   nodes, which are loaded over the host link); every node of the path is then made GPU-resident,
///   loading host hits and inserting the computed rest, evicting as needed; nodes of the request being
///   served are never victims. When the GPU cannot make room the rest of the path is computed, not cached.
/// - Eviction: the GPU evicts a node with no child in the GPU, the host a node whose host copy nothing
///   depends on (it is in the GPU too, or has no cached child). Swap-out once: a node leaving the GPU is
///   copied to the host unless the host already holds it (a node loaded from the host keeps its host
///   copy, so its later eviction copies nothing); a host eviction drops the copy. A node that fits in no
///   tier is dropped with any host-only descendants.
/// - Policies (`Policy`): `lru` orders both tiers by last use; `pgdsf` by RAGCache's priority
///   clock + frequency x cost, with one clock per tier (set to each victim's priority) and cost the
///   average over the requests that computed the node of (modelled prefill seconds / new tokens), a
///   prefix-aware cost: the same document costs more deep in a long context.
///
/// Complexity: serving a path of `k` nodes costs O(k log n) plus O(log n) per eviction (indexed heaps),
/// with n the nodes in the tree; no allocation per call once the arrays have grown, except for new nodes.
/// `validate()` checks every invariant in O(n).
public struct KnowledgeTree: Sendable {
    public enum Policy: String, Sendable, CaseIterable {
        case lru, pgdsf
    }

    public struct Config: Sendable, Equatable {
        public var gpuBlocks: Int
        public var hostBlocks: Int
        public var blockTokens: Int
        public var policy: Policy
        /// Prices computed tokens (the roofline model's slopes).
        public var cost: RecomputeCost
        /// Modelled seconds to load one token's KV from host memory.
        public var hostSecondsPerToken: Double

        public init(gpuBlocks: Int, hostBlocks: Int, blockTokens: Int, policy: Policy, cost: RecomputeCost,
                    hostSecondsPerToken: Double) {
            self.gpuBlocks = gpuBlocks; self.hostBlocks = hostBlocks; self.blockTokens = blockTokens
            self.policy = policy; self.cost = cost; self.hostSecondsPerToken = hostSecondsPerToken
        }
    }

    /// One segment of a path: its identity (equal for equal content) and its length in tokens.
    public struct Step: Sendable, Equatable {
        public var identity: UInt64
        public var tokens: Int
        public init(identity: UInt64, tokens: Int) { self.identity = identity; self.tokens = tokens }
    }

    /// What serving one request did.
    public struct Served: Sendable, Equatable {
        public var gpuHitTokens = 0
        public var hostHitTokens = 0
        /// Prompt tokens computed (the path's misses and every token after the path).
        public var computedTokens = 0
        /// Modelled prefill seconds the hits save: the hit prefix's recompute time less its host load time.
        public var savedSeconds = 0.0
        public var hitTokens: Int { gpuHitTokens + hostHitTokens }
    }

    /// Running totals.
    public struct Counters: Sendable, Equatable {
        public var gpuEvictions = 0
        /// GPU evictions that copied the node to the host (the others found a host copy or dropped it).
        public var swapOuts = 0
        public var swapOutTokens = 0
        public var hostEvictions = 0
        /// Nodes dropped because no tier could hold them.
        public var drops = 0
        public var hostLoadTokens = 0
    }

    public let config: Config
    public private(set) var counters = Counters()
    public private(set) var gpuUsed = 0
    public private(set) var hostUsed = 0
    /// Priority of the last GPU and host victim (pgdsf's clocks; unused by lru).
    public private(set) var gpuClock = 0.0
    public private(set) var hostClock = 0.0

    private struct Edge: Hashable { var parent: Int32; var identity: UInt64 }
    private var children: [Edge: Int32] = [:]
    private var parent: [Int32] = [-1]
    private var firstChild: [Int32] = [-1]
    private var nextSibling: [Int32] = [-1]
    private var tokens: [Int] = [0]
    private var blocks: [Int] = [0]
    private var inGPU: [Bool] = [true]
    private var inHost: [Bool] = [false]
    private var pinned: [Bool] = [true]
    /// Children in the GPU, and children cached anywhere.
    private var gpuChildren: [Int32] = [0]
    private var cachedChildren: [Int32] = [0]
    private var frequency: [Double] = [0]
    private var costSum: [Double] = [0]
    private var costCount: [Double] = [0]
    private var lastUse: [UInt64] = [0]
    private var tick: UInt64 = 0
    private var gpuHeap = NodeHeap()
    private var hostHeap = NodeHeap()
    /// The nodes of the request being served (kept between calls for its capacity).
    private var path: [Int32] = []
    private var stack: [Int32] = []

    /// Throws `invalidArgument` for negative capacities, a block size outside 1...2^20 or a negative or
    /// non-finite host load time.
    public init(_ config: Config) throws(CacheModelError) {
        guard config.gpuBlocks >= 0, config.hostBlocks >= 0 else {
            throw .invalidArgument("capacities must be >= 0, got \(config.gpuBlocks) GPU and \(config.hostBlocks) host blocks")
        }
        guard (1 ... 1 << 20).contains(config.blockTokens) else {
            throw .invalidArgument("block tokens must be in 1...\(1 << 20), got \(config.blockTokens)")
        }
        guard config.hostSecondsPerToken.isFinite, config.hostSecondsPerToken >= 0 else {
            throw .invalidArgument("host load time must be finite and >= 0, got \(config.hostSecondsPerToken)")
        }
        self.config = config
    }

    /// Zeroes the counters (after a warm-up); the cache is unchanged.
    public mutating func resetCounters() { counters = Counters() }

    /// Nodes in the tree, the root included (cached or not).
    public var nodeCount: Int { parent.count }

    /// Whether the path `steps` ends at a node whose KV is in the GPU / in host memory.
    public func residency(of steps: [Step]) -> (gpu: Bool, host: Bool)? {
        var node: Int32 = 0
        for s in steps {
            guard let c = children[Edge(parent: node, identity: s.identity)] else { return nil }
            node = c
        }
        return (inGPU[Int(node)], inHost[Int(node)])
    }

    /// Serves one request whose prompt has `promptTokens` tokens and starts with the segments `steps`
    /// (at most `promptTokens` tokens in sum; the caller checks). Returns its hits and saved prefill.
    public mutating func serve<C: Collection<Step>>(_ steps: C, promptTokens: Int) -> Served {
        tick += 1
        path.removeAll(keepingCapacity: true)
        // 1. The cached run: GPU nodes, then host-only nodes (a GPU node's parent is in the GPU).
        var node: Int32 = 0
        var matched = 0
        for s in steps {
            guard let c = children[Edge(parent: node, identity: s.identity)], inGPU[Int(c)] || inHost[Int(c)] else { break }
            node = c
            path.append(c)
            matched += 1
        }
        for n in path { pin(n) }
        // 2. Load host hits into the GPU; a node the GPU cannot take ends the hit.
        var served = Served()
        var usable = 0
        for n in path {
            if !inGPU[Int(n)] {
                guard makeRoom(blocks[Int(n)]) else { break }
                setGPU(n, true)
                served.hostHitTokens += tokens[Int(n)]
            } else {
                served.gpuHitTokens += tokens[Int(n)]
            }
            usable += 1
        }
        for n in path[usable...] { unpin(n) }
        path.removeLast(path.count - usable)
        let hit = served.hitTokens
        served.computedTokens = promptTokens - hit
        counters.hostLoadTokens += served.hostHitTokens
        served.savedSeconds = config.cost.prefixSeconds(tokens: hit) - Double(served.hostHitTokens) * config.hostSecondsPerToken
        // RAGCache's prefix-aware cost of this request: modelled prefill time per new token.
        let perNewToken = served.computedTokens > 0
            ? config.cost.seconds(tokens: served.computedTokens, contextBefore: hit) / Double(served.computedTokens) : 0
        // 3. Insert the computed rest of the path while the GPU makes room.
        var parentNode: Int32 = path.last ?? 0
        var inserting = true
        for (k, s) in steps.enumerated() where k >= usable && inserting {
            let child = findOrAdd(parent: parentNode, step: s)
            costSum[Int(child)] += perNewToken
            costCount[Int(child)] += 1
            if inGPU[Int(child)] {
                // Cached in the GPU below an uncached run (cannot happen: a GPU node's parent is in the GPU).
                path.append(child); pin(child)
            } else if makeRoomPinning(child) {
                setGPU(child, true)
                path.append(child)
            } else {
                inserting = false
            }
            parentNode = child
        }
        // 4. Count the use, reprice, and release the path.
        for n in path {
            frequency[Int(n)] += 1
            lastUse[Int(n)] = tick
        }
        for n in path { unpin(n) }
        return served
    }

    // MARK: Tier moves

    /// Pins `child` (about to enter the GPU) and frees room for it; false (and unpinned) if impossible.
    private mutating func makeRoomPinning(_ child: Int32) -> Bool {
        pin(child)
        if makeRoom(blocks[Int(child)]) { return true }
        unpin(child)
        return false
    }

    /// Evicts GPU nodes until `need` blocks are free; false when no unpinned victim is left.
    private mutating func makeRoom(_ need: Int) -> Bool {
        guard need <= config.gpuBlocks else { return false }
        while config.gpuBlocks - gpuUsed < need {
            guard let victim = gpuHeap.min else { return false }
            evictFromGPU(victim)
        }
        return true
    }

    private mutating func evictFromGPU(_ n: Int32) {
        let i = Int(n)
        counters.gpuEvictions += 1
        if config.policy == .pgdsf { gpuClock = max(gpuClock, gpuHeap.key(of: n)!.priority) }
        if !inHost[i] {
            pin(n)  // not a host victim while the host makes room for it
            if freeHost(blocks[i]) {
                counters.swapOuts += 1
                counters.swapOutTokens += tokens[i]
                setHost(n, true)
            }
            unpinSilently(n)
        }
        setGPU(n, false)
        if !inHost[i] { drop(n) }
    }

    /// Evicts host copies until `need` blocks are free; false when no victim is left.
    private mutating func freeHost(_ need: Int) -> Bool {
        guard need <= config.hostBlocks else { return false }
        while config.hostBlocks - hostUsed < need {
            guard let victim = hostHeap.min else { return false }
            counters.hostEvictions += 1
            if config.policy == .pgdsf { hostClock = max(hostClock, hostHeap.key(of: victim)!.priority) }
            setHost(victim, false)
            if !inGPU[Int(victim)] { drop(victim) }
        }
        return true
    }

    /// `n` is cached nowhere now: its host-only descendants go too.
    private mutating func drop(_ n: Int32) {
        counters.drops += 1
        stack.removeAll(keepingCapacity: true)
        var c = firstChild[Int(n)]
        while c >= 0 { stack.append(c); c = nextSibling[Int(c)] }
        while let d = stack.popLast() {
            guard inHost[Int(d)] || inGPU[Int(d)] else { continue }
            // A GPU node's parent is in the GPU, so below a dropped node only host copies remain.
            setHost(d, false)
            counters.drops += 1
            var g = firstChild[Int(d)]
            while g >= 0 { stack.append(g); g = nextSibling[Int(g)] }
        }
    }

    private mutating func setGPU(_ n: Int32, _ on: Bool) {
        let i = Int(n)
        let wasCached = inGPU[i] || inHost[i]
        inGPU[i] = on
        gpuUsed += on ? blocks[i] : -blocks[i]
        let p = parent[i]
        gpuChildren[Int(p)] += on ? 1 : -1
        updateCachedChildren(n, wasCached: wasCached)
        refresh(n)
        refresh(p)
    }

    private mutating func setHost(_ n: Int32, _ on: Bool) {
        let i = Int(n)
        let wasCached = inGPU[i] || inHost[i]
        inHost[i] = on
        hostUsed += on ? blocks[i] : -blocks[i]
        updateCachedChildren(n, wasCached: wasCached)
        refresh(n)
        refresh(parent[i])
    }

    private mutating func updateCachedChildren(_ n: Int32, wasCached: Bool) {
        let i = Int(n)
        let cached = inGPU[i] || inHost[i]
        if cached != wasCached { cachedChildren[Int(parent[i])] += cached ? 1 : -1 }
    }

    private mutating func pin(_ n: Int32) { pinned[Int(n)] = true; refresh(n) }
    private mutating func unpin(_ n: Int32) { pinned[Int(n)] = false; refresh(n) }
    /// Unpins without repricing (the caller reprices when the move is done).
    private mutating func unpinSilently(_ n: Int32) { pinned[Int(n)] = false }

    /// Puts `n` in or out of each tier's heap by the eviction rules, at its current price.
    private mutating func refresh(_ n: Int32) {
        let i = Int(n)
        guard n != 0 else { return }
        if inGPU[i] && gpuChildren[i] == 0 && !pinned[i] {
            gpuHeap.update(n, key: NodeEvictionKey(priority: price(n, clock: gpuClock), tie: tieBreak(n)))
        } else {
            gpuHeap.remove(n)
        }
        if inHost[i] && (inGPU[i] || cachedChildren[i] == 0) && !pinned[i] {
            hostHeap.update(n, key: NodeEvictionKey(priority: price(n, clock: hostClock), tie: tieBreak(n)))
        } else {
            hostHeap.remove(n)
        }
    }

    /// lru: last use; pgdsf: clock + frequency x average cost per new token.
    private func price(_ n: Int32, clock: Double) -> Double {
        let i = Int(n)
        switch config.policy {
        case .lru: return Double(lastUse[i])
        case .pgdsf: return clock + frequency[i] * (costCount[i] > 0 ? costSum[i] / costCount[i] : 0)
        }
    }

    /// Older first, then deeper (higher id) first.
    private func tieBreak(_ n: Int32) -> UInt64 { lastUse[Int(n)] << 32 | UInt64(UInt32.max - UInt32(n)) }

    private mutating func findOrAdd(parent p: Int32, step: Step) -> Int32 {
        let edge = Edge(parent: p, identity: step.identity)
        if let c = children[edge] { return c }
        let n = Int32(parent.count)
        children[edge] = n
        parent.append(p)
        nextSibling.append(firstChild[Int(p)])
        firstChild[Int(p)] = n
        firstChild.append(-1)
        tokens.append(step.tokens)
        blocks.append((step.tokens + config.blockTokens - 1) / config.blockTokens)
        inGPU.append(false); inHost.append(false); pinned.append(false)
        gpuChildren.append(0); cachedChildren.append(0)
        frequency.append(0); costSum.append(0); costCount.append(0); lastUse.append(tick)
        return n
    }

    /// Checks every invariant of the contract; throws `invariant` naming the first broken one. O(n).
    public func validate() throws(CacheModelError) {
        var gpu = 0, host = 0
        var gpuKids = [Int32](repeating: 0, count: parent.count)
        var cachedKids = [Int32](repeating: 0, count: parent.count)
        for i in 1 ..< parent.count {
            let p = Int(parent[i])
            if inGPU[i] { gpu += blocks[i]; gpuKids[p] += 1; if !inGPU[p] { throw .invariant("node \(i) is in the GPU, its parent \(p) is not") } }
            if inHost[i] { host += blocks[i] }
            if inGPU[i] || inHost[i] {
                cachedKids[p] += 1
                if !(inGPU[p] || inHost[p]) { throw .invariant("node \(i) is cached, its parent \(p) is not") }
            }
            if pinned[i] { throw .invariant("node \(i) pinned between requests") }
            let gpuCandidate = inGPU[i] && gpuChildren[i] == 0
            if gpuHeap.contains(Int32(i)) != gpuCandidate { throw .invariant("node \(i) GPU heap membership is wrong") }
            let hostCandidate = inHost[i] && (inGPU[i] || cachedChildren[i] == 0)
            if hostHeap.contains(Int32(i)) != hostCandidate { throw .invariant("node \(i) host heap membership is wrong") }
        }
        if gpuKids != gpuChildren { throw .invariant("GPU child counts are stale") }
        if cachedKids != cachedChildren { throw .invariant("cached child counts are stale") }
        if gpu != gpuUsed || host != hostUsed { throw .invariant("usage \(gpuUsed)/\(hostUsed) blocks, nodes hold \(gpu)/\(host)") }
        if gpuUsed > config.gpuBlocks || hostUsed > config.hostBlocks { throw .invariant("a tier is over capacity") }
        do { try gpuHeap.validate() } catch { throw .invariant("GPU heap: \(error)") }
        do { try hostHeap.validate() } catch { throw .invariant("host heap: \(error)") }
    }
}
