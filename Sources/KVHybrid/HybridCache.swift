/// A hybrid prefix cache under a byte budget: the tree, a logical clock and one radix-tree policy
/// (`sglang+`, `marconi-sim` or `marconi`; `vllm+` is `HybridBlockCache`).
///
/// The clock follows the simulator: +1 per lookup, +2 per insert (its own tick and its dry run), +1
/// per eviction call; new and split nodes take the current tick. Insert is two-phase so a tuner can run
/// between the dry run and the eviction check: `prepareInsert` then `finishInsert`.
/// Lookup allocates nothing; eviction reuses scratch arrays (no allocation once warm). Marconi's
/// eviction rescans the tree per victim: O(nodes) per victim. Nothing here can fail.
public struct HybridCache: Sendable {
    public private(set) var tree: HybridPrefixTree
    public let policy: HybridPolicy
    public let capacityBytes: Int64
    /// Marconi's utility weight on normalised FLOPs per byte.
    public var alpha: Double
    public private(set) var clock: Int64
    /// Nodes removed (leaves and merged single-child nodes) and eviction calls.
    public private(set) var evictedNodes = 0
    public private(set) var evictionCalls = 0

    private var candidates: [Int32] = []
    private var efficiency: [Double] = []
    private var recency: [Double] = []
    private var stack: [Int32] = []
    private var heap = PythonHeap()

    public init(model: HybridModel, policy: HybridPolicy, capacityBytes: Int64, alpha: Double = 0, clock: Int64 = 0) {
        precondition(policy != .vllmPlus, "vllm+ runs on HybridBlockCache")
        tree = HybridPrefixTree(model: model)
        self.policy = policy
        self.capacityBytes = capacityBytes
        self.alpha = alpha
        self.clock = clock
    }

    /// Tokens of `seq` reusable from the cache: the depth of the deepest fully matched node (every node
    /// holds a checkpoint in these policies); `raw` counts a partial edge too. Refreshes per policy.
    public mutating func lookup(_ seq: UnsafeBufferPointer<Int32>) -> (hit: Int, raw: Int, branch: Bool) {
        clock += 1
        let m = tree.match(seq, refresh: policy == .sglangPlus ? clock : nil)
        if policy != .sglangPlus && m.node != HybridPrefixTree.root { tree.stamp[Int(m.node)] = clock }
        let hit = tree.checkpointed(atOrAbove: m.node).tokens
        return (hit, m.raw, m.splits)
    }

    /// The dry run of an insert: ticks the clock twice, refreshes as a lookup does, and returns the
    /// bytes Marconi's admission charges (one checkpoint, two at a branch point, plus the new tokens' KV).
    public mutating func prepareInsert(_ seq: UnsafeBufferPointer<Int32>) -> Int64 {
        clock += 2
        return cost(seq, refresh: true)
    }

    private mutating func cost(_ seq: UnsafeBufferPointer<Int32>, refresh: Bool) -> Int64 {
        let m = tree.match(seq, refresh: refresh && policy == .sglangPlus ? clock : nil)
        if refresh && policy != .sglangPlus && m.node != HybridPrefixTree.root { tree.stamp[Int(m.node)] = clock }
        return tree.model.checkpointBytes * (m.splits ? 2 : 1) + tree.model.kvBytesPerToken * Int64(seq.count - m.raw)
    }

    /// Evicts to make room for `cost` bytes, then inserts `seq`. Returns false when the library policy
    /// could not fit the sequence even in an empty cache (it is then not inserted); the simulator's
    /// policies always insert, over capacity if need be.
    @discardableResult
    public mutating func finishInsert(_ seq: UnsafeBufferPointer<Int32>, cost admitted: Int64) -> Bool {
        var charge = admitted
        if tree.bytes + charge > capacityBytes {
            evict(tree.bytes + charge - capacityBytes)
            if policy == .marconi {
                charge = cost(seq, refresh: false)
                while tree.bytes + charge > capacityBytes && !tree.isEmpty {
                    evict(tree.bytes + charge - capacityBytes)
                    charge = cost(seq, refresh: false)
                }
                if tree.bytes + charge > capacityBytes { return false }
            }
        }
        let m = tree.match(seq)
        let end = tree.insert(seq, at: m, stamp: clock)
        if policy == .sglangPlus { tree.refreshPath(from: end, clock) }
        return true
    }

    /// Frees at least `need` bytes (as the policy counts them) or empties the tree. One clock tick.
    public mutating func evict(_ need: Int64) {
        clock += 1
        evictionCalls += 1
        if policy == .sglangPlus { evictLRU(need) } else { evictByUtility(need) }
    }

    // SGLang+: leaves in DFS order into a Python-ordered heap keyed by stamp; a parent left childless
    // joins the heap.
    private mutating func evictLRU(_ need: Int64) {
        heap.reset()
        collect(leavesOnly: true)
        for x in candidates { heap.appendUnordered(key: tree.stamp[Int(x)], id: x) }
        heap.heapify()
        let model = tree.model
        var freed: Int64 = 0
        while freed < need && !heap.isEmpty {
            let x = heap.pop()
            let p = tree.parent[Int(x)]
            freed += model.checkpointBytes + model.kvBytesPerToken * Int64(tree.edgeTokens(x))
            tree.removeLeaf(x)
            evictedNodes += 1
            if p != HybridPrefixTree.root && tree.isLeaf(p) { heap.push(key: tree.stamp[Int(p)], id: p) }
        }
    }

    // Marconi: candidates are nodes with at most one child, in DFS order; utility = normalised recency
    // + alpha x normalised FLOPs saved per byte; the first minimum goes; rescored after every victim.
    private mutating func evictByUtility(_ need: Int64) {
        let model = tree.model
        let sim = policy == .marconiSim
        var freed: Int64 = 0
        while freed < need && !tree.isEmpty {
            collect(leavesOnly: false)
            if candidates.isEmpty { break }
            efficiency.removeAll(keepingCapacity: true)
            recency.removeAll(keepingCapacity: true)
            for x in candidates {
                let total = Int64(tree.tokensFromRoot(x)), own = Int64(tree.edgeTokens(x)), par = total - own
                let mlpParent = sim ? model.attentionFLOPs(par) : model.mlpFLOPs(par)
                let saved = model.mambaLayers * model.mambaFLOPs(own)
                    + model.attentionLayers * (model.attentionFLOPs(total) - model.attentionFLOPs(par))
                    + model.mlpLayers * (model.mlpFLOPs(total) - mlpParent)
                let memory = model.checkpointBytes + model.kvBytesPerToken * total
                efficiency.append(Double(saved) / Double(memory))
                recency.append(1 / Double(clock - tree.stamp[Int(x)]))
            }
            Self.normalise(&efficiency)
            Self.normalise(&recency)
            var best = 0
            var bestUtility = recency[0] + alpha * efficiency[0]
            for i in 1 ..< candidates.count {
                let u = recency[i] + alpha * efficiency[i]
                if u < bestUtility {
                    bestUtility = u
                    best = i
                }
            }
            let victim = candidates[best]
            if tree.isLeaf(victim) {
                // The simulator counts the freed KV from the last candidate it scored (its behaviour 1).
                let counted = sim ? candidates[candidates.count - 1] : victim
                freed += model.checkpointBytes + model.kvBytesPerToken * Int64(tree.edgeTokens(counted))
                tree.removeLeaf(victim)
            } else {
                freed += model.checkpointBytes
                tree.mergeIntoChild(victim)
            }
            evictedNodes += 1
        }
    }

    /// Min-max normalisation in place; all equal (or one value): every value becomes 1.
    static func normalise(_ v: inout [Double]) {
        var lo = v[0], hi = v[0]
        for x in v {
            lo = min(lo, x)
            hi = max(hi, x)
        }
        if hi == lo {
            for i in v.indices { v[i] = 1 }
        } else {
            for i in v.indices { v[i] = (v[i] - lo) / (hi - lo) }
        }
    }

    /// Fills `candidates` in DFS pre-order, children in insertion order: leaves only, or every non-root
    /// node with at most one child.
    private mutating func collect(leavesOnly: Bool) {
        candidates.removeAll(keepingCapacity: true)
        stack.removeAll(keepingCapacity: true)
        pushChildrenReversed(HybridPrefixTree.root)
        while let x = stack.popLast() {
            let children = tree.children(x)
            if leavesOnly ? children == 0 : children <= 1 { candidates.append(x) }
            pushChildrenReversed(x)
        }
    }

    private mutating func pushChildrenReversed(_ x: Int32) {
        var c = tree.lastChild[Int(x)]
        while c != HybridPrefixTree.none {
            stack.append(c)
            c = tree.prevSibling[Int(c)]
        }
    }
}
