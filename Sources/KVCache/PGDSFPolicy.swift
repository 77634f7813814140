/// Prefix-aware Greedy-Dual-Size-Frequency (RAGCache, Jin et al. 2024): a block's priority is
///
///     L + frequency x cost / size
///
/// - `L`, the inflation clock: the priority of the last evicted block. Every insert or access
///   restamps a block with the current `L`, so a block that was hot long ago but is no longer used
///   ages out once `L` has risen past it (as in GDSF).
/// - `frequency`: 1 when the block is published, +1 per prefix hit.
/// - `cost`: the modelled time to recompute the block (`RecomputeCost`) after the `(depth - 1) x tokens`
///   tokens before it, so deeper blocks, whose attention spans more context, are kept longer.
/// - `size`: one block; every block has the same size here, so it divides by 1.
///
/// A release (the end of a use) restamps the block with the current `L` without counting a hit, so a
/// block held for a long time is not judged by the clock of its insertion.
///
/// Ties: `L` moves only at evictions, so blocks of equal frequency and depth touched between two
/// evictions would tie and go by block id. A recency term, the cache's clock x 2^-40 x the cost of a
/// first block (far below any difference of cost or frequency), makes the least recently used of them
/// go first; with a flat cost, this alone turns a 10% loss to LRU into a tie (README, "Eviction
/// policies and the offline bound").
///
/// With a `firstUseWeight` w < 1 (`pgdsf-probation`), a block whose key the `FrequencySketch` has
/// never seen (a first use in the recent history, evicted keys included) counts w instead of 1 for
/// its publishing use, so one-shot blocks, which are most blocks on conversation traces, leave before
/// returning ones of the same cost.
///
/// Each call is O(1) and allocates nothing once the per-block frequency array covers the block ids
/// (it is sized to `capacity` up front). Single-threaded, like the cache that drives it.
public final class PGDSFPolicy: EvictionPolicy {
    /// The cost model that prices a block's recompute.
    public let cost: RecomputeCost
    /// The inflation clock `L`: the highest priority evicted so far (0 after `reset`).
    public private(set) var inflation = 0.0
    /// The weight of a first use (1: plain PGDSF).
    public let firstUseWeight: Double
    private var frequencies: [UInt32]
    /// Per block: published on its key's first use (counts `firstUseWeight`); only with a weight.
    private var firstUse: [Bool]
    private var sketch: FrequencySketch?

    /// - Parameters:
    ///   - capacity: block ids the cache uses (`0 ..< capacity`); larger ids grow the array once.
    ///   - cost: the recompute cost model.
    ///   - firstUseWeight: in 0...1; below 1, first uses count that much (a sketch of 16 x capacity
    ///     uses, at least 2^16, remembers which keys were seen).
    public init(capacity: Int = 0, cost: RecomputeCost, firstUseWeight: Double = 1) {
        self.cost = cost
        self.firstUseWeight = min(1, max(0, firstUseWeight))
        frequencies = Array(repeating: 0, count: max(0, capacity))
        firstUse = Array(repeating: false, count: max(0, capacity))
        if self.firstUseWeight < 1 { sketch = FrequencySketch(history: max(1 << 16, 16 * capacity)) }
    }

    public var name: String { sketch == nil ? "pgdsf" : "pgdsf-probation" }

    /// Hits (plus the publishing use) counted for a cached block; 0 for one never seen. O(1).
    public func frequency(of block: BlockID) -> Int {
        let i = Int(block)
        return frequencies.indices.contains(i) ? Int(frequencies[i]) : 0
    }

    /// The modelled recompute seconds of the block `node` describes. O(1).
    @inlinable
    public func recomputeSeconds(_ node: PolicyNode) -> Double {
        cost.seconds(tokens: node.tokens, contextBefore: max(0, node.depth - 1) * node.tokens)
    }

    public func priorityOnInsert(_ node: PolicyNode) -> Double {
        let i = slot(node.block)
        frequencies[i] = 1
        if sketch != nil { firstUse[i] = sketch!.increment(node.key) < 2 }
        return inflation + weightedFrequency(i) * recomputeSeconds(node) + recency(node)
    }

    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        let i = slot(node.block)
        if kind == .hit && frequencies[i] < .max {
            frequencies[i] += 1
            if sketch != nil { sketch!.increment(node.key) }
        }
        return inflation + weightedFrequency(i) * recomputeSeconds(node) + recency(node)
    }

    /// The tie-breaking recency term (see the type). O(1).
    @inline(__always)
    func recency(_ node: PolicyNode) -> Double {
        let unit = cost.seconds(tokens: node.tokens, contextBefore: 0)
        return Double(node.clock) * 0x1p-40 * (unit > 0 ? unit : 1)
    }

    /// The frequency with a first use weighted. O(1).
    @inline(__always)
    private func weightedFrequency(_ i: Int) -> Double {
        Double(frequencies[i]) - (firstUse[i] ? 1 - firstUseWeight : 0)
    }

    public func didEvict(_ node: PolicyNode, priority: Double) {
        // max: an inner block that outlived its clock (its children kept it off the heap) may carry a
        // priority below L when it is finally evicted; L never moves back.
        inflation = max(inflation, priority)
        let i = Int(node.block)
        if frequencies.indices.contains(i) { frequencies[i] = 0; firstUse[i] = false }
    }

    public func reset() {
        inflation = 0
        for i in frequencies.indices { frequencies[i] = 0; firstUse[i] = false }
        sketch?.reset()
    }

    /// The frequency slot of `block`, growing the array (amortised, only past `capacity`).
    private func slot(_ block: BlockID) -> Int {
        let i = Int(block)
        precondition(i >= 0, "negative block id from the prefix index")
        if i >= frequencies.count {
            let more = max(i + 1, 2 * frequencies.count) - frequencies.count
            frequencies.append(contentsOf: repeatElement(0, count: more))
            firstUse.append(contentsOf: repeatElement(false, count: more))
        }
        return i
    }
}
