import KVCache

/// A prefix tree and a chunk store sharing one pool of blocks, under one eviction policy: the finite-capacity
/// model of chunk reuse on a RAG trace (prompts are sequences of segments: system prompt, passages, ...).
///
/// - Contract: a node is (parent, segment identity), so a segment after two different prefixes is two nodes
///   (its KV differs); the tree remembers every path it has seen (metadata only) and a node's KV is cached
///   or not. A node of `t` tokens takes ceil(t / blockTokens) pool blocks; the pool holds `capacityBlocks`.
///   The chunk store owns no blocks of its own: it indexes the cached nodes by segment identity, so a chunk
///   hit reuses the blocks of any cached node with that identity, wherever it sits (CacheBlend's reuse of a
///   chunk's KV at another position). Evicting a node removes it from both.
/// - Invariants (`validate()`): a cached node's parent is cached (the root always is and holds nothing); the
///   used blocks equal the cached nodes' blocks and are within capacity; the identity index lists exactly the
///   cached nodes; the eviction heap holds exactly the cached nodes with no cached child.
/// - Serving a request (`serve`): the longest cached run of leading nodes is the prefix hit; with chunk reuse,
///   every later segment whose identity has a cached node is a chunk hit, of which ceil(ratio x tokens) are
///   recomputed. Hits are counted before anything of the request is cached (its own segments never hit).
///   Then every node of the path is cached, evicting as needed; nodes of the request being served are never
///   victims, and when the pool cannot make room the rest of the path is computed, not cached.
/// - Policies: `lru` evicts the least recently used leaf (a hit, prefix or chunk, or an insert uses a
///   node); `pgdsf` the leaf of lowest clock + frequency x cost / blocks (GDSF: the clock as of the node's
///   last use, set to each victim's priority; ties by recency), with the prefix-aware cost of a miss: the
///   modelled seconds to compute the node's tokens at the position it was cached at, and with chunk reuse,
///   while another node of the same identity is cached, only the recompute ratio of that (a later request
///   that misses this node's prefix reuses the other copy as a chunk). A node's priority follows when a
///   copy of its identity comes or goes.
/// - Host tier (`hostBlocks` > 0, chunk reuse only): when the pool evicts the last cached node of an
///   identity, that chunk's KV spills to host memory (ceil(t / blockTokens) host blocks; the host evicts
///   its least recently used chunks to make room; a chunk larger than the host is dropped). A later segment
///   of that identity with no cached node but a host copy is a host hit: a chunk hit loaded from host
///   (counted in `chunkHitTokens` and in `hostHitTokens`, recomputed alike), which makes the host copy the
///   most recently used. The host keeps its copy when the identity is cached again. With `hostBlocks` 0
///   (the default) nothing changes.
///
/// Complexity: serving a path of k segments costs O(k) hash probes plus O(log n) per heap change and per
/// eviction (n nodes); no allocation per call once the arrays have grown, except for new nodes.
public struct ChunkPrefixCache: Sendable {
    public enum Policy: String, Sendable, CaseIterable { case lru, pgdsf }

    public struct Config: Sendable, Equatable {
        public var capacityBlocks: Int
        public var blockTokens: Int
        public var policy: Policy
        /// Reuse chunks at any position (false: prefix reuse only).
        public var chunkReuse: Bool
        /// Fraction of a reused chunk's tokens recomputed, in 0...1.
        public var recomputeRatio: Double
        /// Prices a node's tokens at its position (pgdsf).
        public var cost: RecomputeCost
        /// Blocks of host memory that chunks evicted from the pool spill to (chunk reuse only; 0: none).
        public var hostBlocks: Int

        public init(capacityBlocks: Int, blockTokens: Int, policy: Policy, chunkReuse: Bool, recomputeRatio: Double, cost: RecomputeCost,
                    hostBlocks: Int = 0) {
            self.capacityBlocks = capacityBlocks; self.blockTokens = blockTokens; self.policy = policy
            self.chunkReuse = chunkReuse; self.recomputeRatio = recomputeRatio; self.cost = cost; self.hostBlocks = hostBlocks
        }
    }

    /// What serving one request did.
    public struct Served: Sendable, Equatable {
        public var prefixHitTokens = 0
        public var chunkHitTokens = 0
        public var recomputedTokens = 0
        /// The chunk hit tokens loaded from the host tier.
        public var hostHitTokens = 0
    }

    public let config: Config
    public private(set) var usedBlocks = 0
    public private(set) var evictedNodes = 0
    /// Host blocks in use, and chunks spilled to host (each spill of an identity not already there).
    public private(set) var hostUsedBlocks = 0
    public private(set) var hostSpills = 0
    /// The host tier: identity -> (blocks, stamp of its last use); `hostQueue` lists (stamp, identity) in
    /// use order from `hostHead`, entries whose stamp is no longer the identity's skipped (lazy LRU).
    private var host: [UInt64: (blocks: Int, stamp: UInt64)] = [:]
    private var hostQueue: [(stamp: UInt64, identity: UInt64)] = []
    private var hostHead = 0
    private var hostTick: UInt64 = 0
    /// Priority of the last victim (pgdsf's clock).
    public private(set) var clock = 0.0

    private struct Edge: Hashable { var parent: Int32; var identity: UInt64 }
    private var children: [Edge: Int32] = [:]
    private var parent: [Int32] = [-1]
    private var identity: [UInt64] = [0]
    private var tokens: [Int] = [0]
    private var cached: [Bool] = [true]
    private var cachedChildren: [Int32] = [0]
    private var frequency: [Double] = [0]
    /// pgdsf's clock at the node's last use.
    private var base: [Double] = [0]
    private var cost: [Double] = [0]
    private var lastUse: [UInt64] = [0]
    private var pinnedAt: [UInt64] = [0]
    /// Cached nodes of one identity: a doubly linked list through the nodes, most recently used first.
    private var sameHead: [UInt64: Int32] = [:]
    private var sameNext: [Int32] = [-1]
    private var samePrev: [Int32] = [-1]
    private var tick: UInt64 = 0
    private var epoch: UInt64 = 0
    private var heap = NodeHeap()
    private var path: [Int32] = []
    private var setAside: [Int32] = []

    /// Throws `invalidArgument` for a negative capacity, a block size outside 1...2^20 or a ratio outside 0...1.
    public init(_ config: Config) throws(CacheModelError) {
        guard config.capacityBlocks >= 0 else { throw .invalidArgument("capacity must be >= 0 blocks, got \(config.capacityBlocks)") }
        guard config.hostBlocks >= 0 else { throw .invalidArgument("host capacity must be >= 0 blocks, got \(config.hostBlocks)") }
        guard (1 ... 1 << 20).contains(config.blockTokens) else { throw .invalidArgument("block tokens must be in 1...2^20, got \(config.blockTokens)") }
        guard config.recomputeRatio.isFinite, (0 ... 1).contains(config.recomputeRatio) else {
            throw .invalidArgument("recompute ratio must be in 0...1, got \(config.recomputeRatio)")
        }
        self.config = config
    }

    private func blocks(_ n: Int32) -> Int { (tokens[Int(n)] + config.blockTokens - 1) / config.blockTokens }

    /// Serves one request whose prompt starts with the segments `steps` (identity, tokens). O(k) probes
    /// plus O(log n) per heap change.
    public mutating func serve(_ steps: some Collection<KnowledgeTree.Step>) -> Served {
        var served = Served()
        epoch += 1
        path.removeAll(keepingCapacity: true)
        // The prefix hit: the longest cached run of leading nodes.
        var node: Int32 = 0, position = 0
        var it = steps.startIndex
        while it != steps.endIndex, let child = children[Edge(parent: node, identity: steps[it].identity)], cached[Int(child)] {
            served.prefixHitTokens += steps[it].tokens
            position += steps[it].tokens
            use(child)
            path.append(child)
            node = child
            steps.formIndex(after: &it)
        }
        // Chunk hits: later segments with a cached node anywhere (before this request caches anything).
        if config.chunkReuse {
            var j = it
            while j != steps.endIndex {
                if let holder = sameHead[steps[j].identity] {
                    served.chunkHitTokens += steps[j].tokens
                    served.recomputedTokens += Int((config.recomputeRatio * Double(steps[j].tokens)).rounded(.up))
                    use(holder)
                } else if let entry = host[steps[j].identity] {
                    served.chunkHitTokens += steps[j].tokens
                    served.hostHitTokens += steps[j].tokens
                    served.recomputedTokens += Int((config.recomputeRatio * Double(steps[j].tokens)).rounded(.up))
                    touchHost(steps[j].identity, blocks: entry.blocks)
                }
                steps.formIndex(after: &j)
            }
        }
        // Cache the rest of the path, evicting other requests' leaves as needed.
        while it != steps.endIndex {
            let step = steps[it]
            let edge = Edge(parent: node, identity: step.identity)
            let child: Int32
            if let c = children[edge] {
                child = c
            } else {
                child = Int32(parent.count)
                children[edge] = child
                parent.append(node); identity.append(step.identity); tokens.append(step.tokens); cached.append(false)
                cachedChildren.append(0); frequency.append(0); base.append(0); cost.append(0); lastUse.append(0); pinnedAt.append(0)
                sameNext.append(-1); samePrev.append(-1)
            }
            let need = blocks(child)
            guard makeRoom(need) else { break }
            usedBlocks += need
            cached[Int(child)] = true
            if cachedChildren[Int(node)] == 0 { heap.remove(node) }
            cachedChildren[Int(node)] += 1
            link(child)
            cost[Int(child)] = config.cost.seconds(tokens: step.tokens, contextBefore: position)
            frequency[Int(child)] = 0
            use(child)
            path.append(child)
            position += step.tokens
            node = child
            steps.formIndex(after: &it)
        }
        return served
    }

    /// A hit or an insert of the cached node `n`: recency, frequency, its place among its identity's
    /// nodes, its heap key when it is a leaf; pinned for the rest of the request. O(log n).
    private mutating func use(_ n: Int32) {
        tick += 1
        lastUse[Int(n)] = tick
        frequency[Int(n)] += 1
        base[Int(n)] = clock
        pinnedAt[Int(n)] = epoch
        if sameHead[identity[Int(n)]] != n { unlink(n); link(n) }
        if cachedChildren[Int(n)] == 0 { heap.update(n, key: NodeEvictionKey(priority: priority(n), tie: lastUse[Int(n)])) }
    }

    private func priority(_ n: Int32) -> Double {
        switch config.policy {
        case .lru: Double(lastUse[Int(n)])
        case .pgdsf: base[Int(n)] + frequency[Int(n)] * missCost(n) / Double(blocks(n))
        }
    }

    /// What losing the cached node `n` costs a later request that would have hit it: its compute, or with
    /// chunk reuse and another cached copy of its identity, only that copy's recompute. O(1).
    private func missCost(_ n: Int32) -> Double {
        let shared = config.chunkReuse && (sameNext[Int(n)] >= 0 || samePrev[Int(n)] >= 0)
        return shared ? config.recomputeRatio * cost[Int(n)] : cost[Int(n)]
    }

    /// Re-keys `n` in the heap (when it is there) after a change of its miss cost. O(log n).
    private mutating func refresh(_ n: Int32) {
        if n >= 0, heap.contains(n) { heap.update(n, key: NodeEvictionKey(priority: priority(n), tie: lastUse[Int(n)])) }
    }

    private mutating func link(_ n: Int32) {
        let id = identity[Int(n)]
        let head = sameHead[id] ?? -1
        sameNext[Int(n)] = head
        samePrev[Int(n)] = -1
        if head >= 0 { samePrev[Int(head)] = n }
        sameHead[id] = n
        if head >= 0 && sameNext[Int(head)] < 0 { refresh(head) }  // was the only copy
    }

    private mutating func unlink(_ n: Int32) {
        let next = sameNext[Int(n)], prev = samePrev[Int(n)]
        if prev >= 0 { sameNext[Int(prev)] = next } else if next >= 0 { sameHead[identity[Int(n)]] = next } else { sameHead[identity[Int(n)]] = nil }
        if next >= 0 { samePrev[Int(next)] = prev }
        sameNext[Int(n)] = -1; samePrev[Int(n)] = -1
        // A copy left alone is dear again.
        if let head = sameHead[identity[Int(n)]], sameNext[Int(head)] < 0 { refresh(head) }
    }

    /// Evicts unpinned leaves by the policy until `need` more blocks fit; false (nothing evicted beyond
    /// what was needed so far) when the pinned nodes leave too little. O(log n) per eviction.
    private mutating func makeRoom(_ need: Int) -> Bool {
        guard need <= config.capacityBlocks else { return false }
        setAside.removeAll(keepingCapacity: true)
        defer { for n in setAside { heap.update(n, key: NodeEvictionKey(priority: priority(n), tie: lastUse[Int(n)])) } }
        while usedBlocks + need > config.capacityBlocks {
            guard let victim = heap.min else { return false }
            if pinnedAt[Int(victim)] == epoch {
                heap.remove(victim)
                setAside.append(victim)
                continue
            }
            if config.policy == .pgdsf { clock = heap.key(of: victim)!.priority }
            heap.remove(victim)
            evict(victim)
        }
        return true
    }

    /// Makes `identity` (of `blocks` host blocks, already on host) the most recently used host chunk. O(1)
    /// amortized.
    private mutating func touchHost(_ identity: UInt64, blocks: Int) {
        hostTick += 1
        host[identity] = (blocks, hostTick)
        hostQueue.append((hostTick, identity))
    }

    /// The chunk `identity` of `blocks` blocks leaves the pool: onto the host tier, evicting the host's least
    /// recently used chunks to make room (dropped when larger than the host). O(1) amortized.
    private mutating func spillToHost(_ identity: UInt64, blocks: Int) {
        guard blocks <= config.hostBlocks else { return }
        if host[identity] == nil {
            while hostUsedBlocks + blocks > config.hostBlocks {
                let (stamp, victim) = hostQueue[hostHead]
                hostHead += 1
                guard let entry = host[victim], entry.stamp == stamp else { continue }
                host[victim] = nil
                hostUsedBlocks -= entry.blocks
            }
            hostUsedBlocks += blocks
            hostSpills += 1
        }
        touchHost(identity, blocks: blocks)
        if hostHead > 1024 && hostHead * 2 > hostQueue.count {
            hostQueue.removeFirst(hostHead)
            hostHead = 0
        }
    }

    private mutating func evict(_ n: Int32) {
        cached[Int(n)] = false
        usedBlocks -= blocks(n)
        evictedNodes += 1
        unlink(n)
        if config.chunkReuse, config.hostBlocks > 0, sameHead[identity[Int(n)]] == nil { spillToHost(identity[Int(n)], blocks: blocks(n)) }
        let p = parent[Int(n)]
        cachedChildren[Int(p)] -= 1
        if cachedChildren[Int(p)] == 0 && p != 0 { heap.update(p, key: NodeEvictionKey(priority: priority(p), tie: lastUse[Int(p)])) }
    }

    /// Checks every invariant. O(n).
    public func validate() throws(CacheModelError) {
        do { try heap.validate() } catch { throw .invariant(error.description) }
        var used = 0
        var counted = Array(repeating: Int32(0), count: parent.count)
        for n in 1 ..< parent.count where cached[n] {
            guard cached[Int(parent[n])] else { throw .invariant("node \(n) is cached but its parent is not") }
            used += blocks(Int32(n))
            counted[Int(parent[n])] += 1
        }
        guard used == usedBlocks, used <= config.capacityBlocks else { throw .invariant("\(usedBlocks) blocks used, nodes hold \(used), capacity \(config.capacityBlocks)") }
        for n in 0 ..< parent.count where cached[n] {
            guard counted[n] == cachedChildren[n] else { throw .invariant("node \(n) counts \(cachedChildren[n]) cached children, has \(counted[n])") }
            guard heap.contains(Int32(n)) == (n != 0 && counted[n] == 0) else { throw .invariant("node \(n): heap membership is not leafhood") }
        }
        var listed = 0
        for (id, head) in sameHead {
            var n = head, prev: Int32 = -1
            while n >= 0 {
                guard cached[Int(n)], identity[Int(n)] == id, samePrev[Int(n)] == prev else { throw .invariant("identity list of \(id) is broken at \(n)") }
                listed += 1
                prev = n
                n = sameNext[Int(n)]
            }
        }
        guard listed == cached.dropFirst().filter({ $0 }).count else { throw .invariant("the identity index lists \(listed) nodes") }
        let onHost = host.values.reduce(0) { $0 + $1.blocks }
        guard onHost == hostUsedBlocks, onHost <= config.hostBlocks else {
            throw .invariant("\(hostUsedBlocks) host blocks used, host chunks hold \(onHost), host capacity \(config.hostBlocks)")
        }
    }
}
