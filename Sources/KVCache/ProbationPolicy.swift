/// Admission by probation (S3-FIFO's small queue with TinyLFU's memory; Yang et al. 2023, Einziger
/// et al. 2017): a block whose key is used for the first time in the sketch's history enters on
/// probation and is evicted before any block seen before, unless it is reused first; a block whose
/// key was used before (a prefix that came back, even after its block was evicted) is protected.
///
/// Time is the count of blocks published so far (so the rules scale with the pool, not with how
/// often the caller touches it). Priority, set on each release (the end of a use):
///
///     published blocks so far + (uses of the key >= 2 ? protection x capacity : 0)
///
/// so among probationary blocks and among protected ones the least recently used goes first, and a
/// protected block outlives probationary ones for `protection x capacity` more publications; after
/// that it ages out like any other (no lock-out by blocks that were hot long ago).
///
/// Why priority rather than refusal: a refused block would leave a hole below which no descendant
/// can be cached; on probation the block is cached (the tree's invariants hold, the facade publishes
/// every block) and merely goes first. Leaves go before their parents, so a one-shot tail behind a
/// shared prefix leaves before the prefix.
///
/// O(1) per call (4 sketch counters); no allocation after init. Single-threaded.
public final class ProbationPolicy: EvictionPolicy {
    /// Pool size in blocks (scales the protection).
    public let capacity: Int
    /// How many pool-fulls of publications a protected block outlives probationary ones.
    public let protection: Double
    /// Uses of each key over the recent history (`historyFactor x capacity` uses, at least 2^16).
    public private(set) var sketch: FrequencySketch
    private var published: Double = 0

    /// The defaults were tuned on the first half of a Mooncake conversation trace (see README).
    public init(capacity: Int, protection: Double = 3, historyFactor: Int = 16) {
        self.capacity = max(1, capacity)
        self.protection = protection
        sketch = FrequencySketch(history: max(1 << 16, historyFactor * max(1, capacity)))
    }

    public var name: String { "probation" }

    public func priorityOnInsert(_ node: PolicyNode) -> Double {
        published += 1
        return published
    }

    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        guard kind == .release else { return previous }  // pinned while held: only the release ranks it
        let uses = sketch.increment(node.key)
        return published + (uses >= 2 ? protection * Double(capacity) : 0)
    }

    /// Whether `key` was used before in the sketch's history (it would be protected at its next release).
    public func isProtected(_ key: BlockKey) -> Bool { sketch.estimate(key) >= 1 }

    public func reset() {
        sketch.reset()
        published = 0
    }
}
