import KVCache

/// A hybrid prefix cache under a byte budget: the tree, a logical clock and one radix-tree policy
/// (`sglang+`, `marconi-sim`, `marconi` or `adaptive`; `vllm+` is `HybridBlockCache`).
///
/// The clock follows the simulator: +1 per lookup, +2 per insert (its own tick and its dry run), +1
/// per eviction call; new and split nodes take the current tick. Insert is two-phase so a tuner can run
/// between the dry run and the eviction check: `prepareInsert` then `finishInsert`; `insert` does both
/// and refuses (`.tooLarge`, nothing changed) a sequence that cannot fit even in an empty cache.
///
/// `marconi` and `adaptive` never hold more than `capacityBytes`. `adaptive` (see `AdaptiveSettings`)
/// admits a branch checkpoint only when the branch recurred (`RecurrenceSketch`), drops the checkpoint
/// a continued sequence supersedes, and adds the hits a node served to Marconi's utility; a node
/// without a checkpoint always has two children or more (a single-child one is merged at once).
/// Lookup allocates nothing; eviction reuses scratch arrays (no allocation once warm). Marconi's
/// eviction rescans the tree per victim: O(nodes) per victim.
public struct HybridCache: Sendable {
    public internal(set) var tree: HybridPrefixTree
    public let policy: HybridPolicy
    public let capacityBytes: Int64
    /// Marconi's utility weight on normalised FLOPs per byte.
    public var alpha: Double
    /// The adaptive policy's admission and utility settings (unused by the others).
    public var settings: AdaptiveSettings
    public internal(set) var clock: Int64
    /// Nodes removed (leaves and merged single-child nodes) and eviction calls.
    public private(set) var evictedNodes = 0
    public private(set) var evictionCalls = 0
    /// Structural changes so far (inserts and evictions); a plan is valid only for the value it saw.
    public internal(set) var generation: UInt64 = 0

    var sketch = RecurrenceSketch()
    /// Online re-tuning of `alpha` and `settings` at each commit (adaptive; see `enableOnlineTuning`).
    public internal(set) var tuner: HybridAlphaTuner?
    /// The prompt length of the latest plan (the part of a committed sequence its shadows look up).
    var plannedPrompt = 0
    private var candidates: [Int32] = []
    private var efficiency: [Double] = []
    private var recency: [Double] = []
    private var frequency: [Double] = []
    private var stack: [Int32] = []
    private var heap = IndexedHeap<Int64>()

    /// The adaptive policy's knobs. `recurrenceWeight` weighs the normalised hits a node served in the
    /// utility; a branch checkpoint is admitted once its prefix recurred `branchThreshold` times (1:
    /// always, as Marconi); `dropSuperseded` frees the checkpoint at the end of a cached sequence when a
    /// longer one continues it (a chat turn, an agent step) and it served at most that one hit.
    public struct AdaptiveSettings: Sendable, Equatable, CustomStringConvertible {
        public var recurrenceWeight: Double
        public var branchThreshold: Int
        public var dropSuperseded: Bool
        /// Stamp every node on the path on lookup and insert (SGLang's recency) instead of the deepest.
        public var refreshPath: Bool
        public init(recurrenceWeight: Double = 0.3, branchThreshold: Int = 2, dropSuperseded: Bool = true,
                    refreshPath: Bool = false) {
            self.recurrenceWeight = recurrenceWeight
            self.branchThreshold = branchThreshold
            self.dropSuperseded = dropSuperseded
            self.refreshPath = refreshPath
        }
        public var description: String {
            "beta \(recurrenceWeight), threshold \(branchThreshold), drop \(dropSuperseded), path \(refreshPath)"
        }
    }

    public init(model: HybridModel, policy: HybridPolicy, capacityBytes: Int64, alpha: Double = 0, clock: Int64 = 0,
                settings: AdaptiveSettings = AdaptiveSettings()) {
        precondition(policy != .vllmPlus, "vllm+ runs on HybridBlockCache")
        tree = HybridPrefixTree(model: model)
        self.policy = policy
        self.capacityBytes = capacityBytes
        self.alpha = alpha
        self.clock = clock
        self.settings = settings
    }

    /// Whether lookups and inserts stamp the whole path.
    var refreshesPath: Bool { policy == .sglangPlus || (policy == .adaptive && settings.refreshPath) }

    /// Whether the policy keeps the tree within `capacityBytes` (the library's policies).
    public var staysWithinCapacity: Bool { policy == .marconi || policy == .adaptive }

    /// Tokens of `seq` reusable from the cache: the depth of the deepest fully matched node holding a
    /// checkpoint; `raw` counts a partial edge too; `branch` says that `raw` goes past the hit (a branch
    /// point or a node without a state). Refreshes per policy; `adaptive` counts the hit on the node and
    /// the prefix `raw` in its sketch. O(len); allocates nothing.
    public mutating func lookup(_ seq: UnsafeBufferPointer<Int32>) -> (hit: Int, raw: Int, branch: Bool) {
        clock += 1
        let m = tree.match(seq, refresh: refreshesPath ? clock : nil)
        if policy != .sglangPlus && m.node != HybridPrefixTree.root { tree.stamp[Int(m.node)] = clock }
        let (node, hit) = tree.checkpointed(atOrAbove: m.node)
        if policy == .adaptive {
            if node != HybridPrefixTree.root {
                tree.stamp[Int(node)] = clock
                tree.uses[Int(node)] &+= 1
            }
            if m.raw > hit { sketch.add(RecurrenceSketch.hash(seq, count: m.raw)) }
        }
        return (hit, m.raw, policy == .adaptive ? m.raw > hit : m.splits)
    }

    /// The dry run of an insert: ticks the clock twice, refreshes as a lookup does, and returns the
    /// bytes Marconi's admission charges (one checkpoint, two at a branch point, plus the new tokens' KV).
    public mutating func prepareInsert(_ seq: UnsafeBufferPointer<Int32>) -> Int64 {
        clock += 2
        return cost(seq, refresh: true)
    }

    mutating func cost(_ seq: UnsafeBufferPointer<Int32>, refresh: Bool) -> Int64 {
        let m = tree.match(seq, refresh: refresh && refreshesPath ? clock : nil)
        if refresh && policy != .sglangPlus && m.node != HybridPrefixTree.root { tree.stamp[Int(m.node)] = clock }
        if policy == .adaptive { return admission(seq, m).cost }
        return tree.model.checkpointBytes * (m.splits ? 2 : 1) + tree.model.kvBytesPerToken * Int64(seq.count - m.raw)
    }

    /// What the adaptive policy does with `seq` on the current tree (`m` its match): whether the node
    /// where it leaves the tree (split or existing) takes a checkpoint, whether the checkpoint it
    /// continues is dropped, and the net bytes.
    struct Admission {
        var match: HybridPrefixTree.Match
        var checkpointAtBranch: Bool
        var supersedes: Bool
        var cost: Int64
    }

    func admission(_ seq: UnsafeBufferPointer<Int32>, _ m: HybridPrefixTree.Match) -> Admission {
        let model = tree.model
        let endsThere = m.raw == seq.count
        var branch = false, supersedes = false
        if m.splits || (m.node != HybridPrefixTree.root && !tree.hasCheckpoint(m.node)) {
            branch = endsThere || (m.raw > 0
                && sketch.estimate(RecurrenceSketch.hash(seq, count: m.raw)) >= settings.branchThreshold)
        } else if settings.dropSuperseded && !endsThere && m.node != HybridPrefixTree.root && tree.isLeaf(m.node)
                    && tree.uses[Int(m.node)] <= 1 && !tree.branched[Int(m.node)] {
            // The end of one earlier sequence, continued now (a chat turn, an agent step); a shared
            // prefix (hit more than once, or a branch point left a leaf when its children were evicted:
            // a RAG head and its documents) keeps its state.
            supersedes = true
        }
        let checkpoints = (branch ? 1 : 0) + (endsThere ? 0 : 1) - (supersedes ? 1 : 0)
        return Admission(match: m, checkpointAtBranch: branch, supersedes: supersedes,
                         cost: model.checkpointBytes * Int64(checkpoints) + model.kvBytesPerToken * Int64(seq.count - m.raw))
    }

    /// The longest sequence the tree takes (its depths are 32-bit).
    public static let maxSequenceTokens = 1 << 30

    static func checkLength(_ count: Int) throws(HybridCacheError) {
        guard count <= maxSequenceTokens else { throw .invalidArgument("a sequence longer than \(maxSequenceTokens) tokens") }
    }

    /// Bytes `seq` needs in an empty cache: its KV and one checkpoint.
    public func bytesAlone(_ count: Int) -> Int64 {
        tree.model.checkpointBytes + tree.model.kvBytesPerToken * Int64(count)
    }

    /// Lookup-free insert through the policy's admission: the dry run, eviction, the insert. The library
    /// policies refuse a sequence that cannot fit even in an empty cache (`.tooLarge`) before changing
    /// anything; the simulator's policies insert it over capacity.
    public mutating func insert(_ seq: UnsafeBufferPointer<Int32>) throws(HybridCacheError) {
        try Self.checkLength(seq.count)
        if staysWithinCapacity && bytesAlone(seq.count) > capacityBytes {
            throw .tooLarge(bytes: bytesAlone(seq.count), capacity: capacityBytes)
        }
        let cost = prepareInsert(seq)
        finishInsert(seq, cost: cost)
    }

    /// Evicts to make room for `cost` bytes, then inserts `seq`. Returns false when the library policy
    /// could not fit the sequence even in an empty cache (it is then not inserted, nothing evicted); the
    /// simulator's policies always insert, over capacity if need be.
    @discardableResult
    public mutating func finishInsert(_ seq: UnsafeBufferPointer<Int32>, cost admitted: Int64) -> Bool {
        if staysWithinCapacity && bytesAlone(seq.count) > capacityBytes { return false }
        var charge = admitted
        if tree.bytes + charge > capacityBytes {
            evict(tree.bytes + charge - capacityBytes)
            if staysWithinCapacity {
                charge = cost(seq, refresh: false)
                while tree.bytes + charge > capacityBytes && !tree.isEmpty {
                    evict(tree.bytes + charge - capacityBytes)
                    charge = cost(seq, refresh: false)
                }
            }
        }
        generation &+= 1
        let m = tree.match(seq)
        if policy == .adaptive {
            place(seq, admission(seq, m))
            if settings.refreshPath { tree.refreshPath(from: tree.match(seq).node, clock) }
            return true
        }
        let end = tree.insert(seq, at: m, stamp: clock)
        if policy == .sglangPlus { tree.refreshPath(from: end, clock) }
        return true
    }

    /// Applies an adaptive admission: the branch checkpoint (on the split or existing node), the new
    /// leaf with its checkpoint, the superseded checkpoint dropped (its node merged into the leaf).
    mutating func place(_ seq: UnsafeBufferPointer<Int32>, _ a: Admission) {
        let m = a.match
        tree.insert(seq, at: m, stamp: clock, checkpointSplit: a.checkpointAtBranch)
        if !m.splits && m.node != HybridPrefixTree.root && a.checkpointAtBranch { tree.giveCheckpoint(m.node) }
        if a.supersedes && tree.children(m.node) == 1 { tree.mergeIntoChild(m.node) }
    }

    /// Frees at least `need` bytes (as the policy counts them) or empties the tree. One clock tick.
    public mutating func evict(_ need: Int64) {
        clock += 1
        generation &+= 1
        evictionCalls += 1
        if policy == .sglangPlus { evictLRU(need) } else { evictByUtility(need) }
    }

    // SGLang+: leaves in DFS order into a Python-ordered heap keyed by stamp; a parent left childless
    // joins the heap.
    private mutating func evictLRU(_ need: Int64) {
        heap.removeAll()
        collect(leavesOnly: true)
        for x in candidates { heap.appendUnordered(x, key: tree.stamp[Int(x)]) }
        heap.heapify()
        let model = tree.model
        var freed: Int64 = 0
        while freed < need && !heap.isEmpty {
            let x = heap.popMin()!
            let p = tree.parent[Int(x)]
            freed += model.checkpointBytes + model.kvBytesPerToken * Int64(tree.edgeTokens(x))
            tree.removeLeaf(x)
            evictedNodes += 1
            if p != HybridPrefixTree.root && tree.isLeaf(p) { heap.insert(p, key: tree.stamp[Int(p)]) }
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
            frequency.removeAll(keepingCapacity: true)
            for x in candidates {
                frequency.append(Double(tree.uses[Int(x)]))
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
            let beta = policy == .adaptive ? settings.recurrenceWeight : 0
            if beta != 0 { Self.normalise(&frequency) }
            var best = 0
            var bestUtility = recency[0] + alpha * efficiency[0] + (beta == 0 ? 0 : beta * frequency[0])
            for i in 1 ..< candidates.count {
                let u = recency[i] + alpha * efficiency[i] + (beta == 0 ? 0 : beta * frequency[i])
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
                let p = tree.parentOf(victim)
                tree.removeLeaf(victim)
                // A node without a state left with one child serves nothing: merge it (frees no bytes).
                if p != HybridPrefixTree.root && !tree.hasCheckpoint(p) && tree.children(p) == 1 { tree.mergeIntoChild(p) }
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

    /// The tree's invariants (`HybridPrefixTree.validate`) and the policy's: the library policies never
    /// over capacity; every node holds a checkpoint under the Marconi-style policies, and under
    /// `adaptive` a node without one has two children or more. O(nodes + tokens). The first violation,
    /// or nil.
    public func validate() -> String? {
        if let problem = tree.validate() { return problem }
        if staysWithinCapacity && tree.bytes > capacityBytes { return "\(tree.bytes) bytes held, capacity \(capacityBytes)" }
        for i in 1 ..< tree.parent.count where tree.parent[i] != HybridPrefixTree.freedMark {
            let x = Int32(i)
            if tree.hasCheckpoint(x) { continue }
            if policy != .adaptive { return "node \(x) holds no checkpoint" }
            if tree.children(x) < 2 { return "node \(x): no checkpoint and \(tree.children(x)) children" }
        }
        return nil
    }
}
