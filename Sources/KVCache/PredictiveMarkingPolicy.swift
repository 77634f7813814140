/// Paging with predictions (Lykouris and Vassilvitskii 2018; Rohatgi 2020) on the prefix tree: a
/// marking algorithm whose choice among unmarked blocks follows a learned reuse predictor, so it
/// keeps a marking algorithm's worst case whatever the predictions are worth.
///
/// Marking: a block used in the current phase is marked; only unmarked blocks (not used since the
/// phase began) are evicted while there are any; when a victim has to be a marked block, a new
/// phase begins and every block is unmarked. Here the phase is part of the priority,
///
///     phase of the block's last use x 2 + predicted reuse probability (in [0, 1), in steps of
///     1/256) + recency within the phase (below one step)
///
/// so the heap's minimum is an unmarked block with the lowest predicted reuse (older phases first;
/// among equal predictions, the least recently used), and a victim from the current phase starts the
/// next one (O(1): nothing is re-ranked, since every block of the old phase now sorts as unmarked).
///
/// Predictions come from `ReusePredictor` (online, delayed labels, never the future), or, with
/// `noise`, from a seeded uniform generator: the fallback the marking structure guarantees (hit
/// tokens stay near LRU's with useless predictions; the README shows the measurement).
///
/// O(1) per call; no allocation after init. Single-threaded.
public final class PredictiveMarkingPolicy: EvictionPolicy {
    public let capacity: Int
    /// Replaces every prediction by uniform noise (seeded), to measure the fallback.
    public let noise: Bool
    public private(set) var predictor: ReusePredictor
    public private(set) var sketch: FrequencySketch
    /// Phases begun so far.
    public private(set) var phase: Double = 0
    private var published: Double = 0
    private var phaseStart: Double = 0
    private var random: SplitMix64
    private let seed: UInt64
    // The request being released, read from the call order (see `ReusePredictor`).
    private var hitClock: UInt64 = .max, hitDepth = 0
    private var releaseClock: UInt64 = .max, runTop = 0, requestHitDepth = 0

    /// - Parameters:
    ///   - capacity: pool size in blocks; the predictor's horizon is `horizonFactor x capacity`
    ///     publications (tuned on the first half of a Mooncake trace).
    ///   - noise: predictions replaced by uniform noise from `seed`.
    public init(capacity: Int, horizonFactor: Double = 4, noise: Bool = false, seed: UInt64 = 1) {
        self.capacity = max(1, capacity)
        self.noise = noise
        self.seed = seed
        random = SplitMix64(seed: seed)
        let horizon = horizonFactor * Double(self.capacity)
        predictor = ReusePredictor(horizon: horizon, slots: Int(min(horizon * 4, Double(1 << 26))))
        sketch = FrequencySketch(history: max(1 << 16, 16 * self.capacity))
    }

    public var name: String { noise ? "marking-noise" : "marking" }

    public func priorityOnInsert(_ node: PolicyNode) -> Double {
        published += 1
        return phase * 2
    }

    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        if kind == .hit {
            if node.clock != hitClock { hitClock = node.clock; hitDepth = 0 }
            hitDepth = max(hitDepth, node.depth)
            return phase * 2
        }
        if node.clock != releaseClock {  // the deepest block of a request's chain: a new release run
            requestHitDepth = hitClock != .max && (releaseClock == .max || hitClock > releaseClock) ? hitDepth : 0
            releaseClock = node.clock
            runTop = node.depth
        }
        let role = requestHitDepth == 0 ? 0 : (node.depth <= requestHitDepth ? 1 : 2)
        let bucket = ReusePredictor.bucket(uses: sketch.increment(node.key), role: role, fromEnd: runTop - node.depth)
        predictor.observe(node.key, bucket: bucket, now: published)
        let p = noise ? Double(random.next() >> 11) * 0x1p-53 : predictor.probability(bucket)
        let step = (min(p, 0.999) * 256).rounded(.down) / 256
        let age = published - phaseStart
        return phase * 2 + step + age / (age + Double(capacity)) / 256
    }

    public func didEvict(_ node: PolicyNode, priority: Double) {
        if priority >= phase * 2 {  // no unmarked leaf was left
            phase += 1
            phaseStart = published
        }
    }

    public func reset() {
        phase = 0
        published = 0
        phaseStart = 0
        random = SplitMix64(seed: seed)
        predictor.reset()
        sketch.reset()
        hitClock = .max; hitDepth = 0; releaseClock = .max; runTop = 0; requestHitDepth = 0
    }
}
