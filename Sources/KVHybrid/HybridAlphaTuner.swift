/// Online re-tuning of the adaptive policy: shadow caches, one per candidate setting (alpha, recurrence
/// weight, branch threshold, superseded checkpoints), see every request the real cache sees; every
/// `window` requests the real cache takes the setting whose shadow saved the most FLOPs, scored with
/// exponential decay (`decay` per window) so that recent windows weigh most. A challenger must beat
/// the current setting's score by `margin` (relative); ties go to the earliest candidate. The first
/// decision comes early, as Marconi tunes: at request `firstFactor` x N0, N0 the request whose insert
/// first evicted (before it every setting holds the same contents), when that is before the first
/// window's end; the windows then count from there.
///
/// Shadows hold only the tree (token ids, no KV or state): an engine runs them beside its real cache at
/// the cost of one lookup and one insert per candidate per request. Cost: candidates x the replay's,
/// O(candidates) memory of trees bounded by the same capacity. Nothing here can fail.
public struct HybridAlphaTuner: Sendable {
    /// One candidate setting.
    public struct Candidate: Sendable, Equatable {
        public var alpha: Double
        public var settings: HybridCache.AdaptiveSettings
        public init(alpha: Double, settings: HybridCache.AdaptiveSettings) {
            self.alpha = alpha
            self.settings = settings
        }
    }

    /// The default grid, its first candidate the starting one: SGLang's path recency with recurrence
    /// weight 0.3 at alpha 0 and 0.1, and at alpha 0 without recurrence; alpha in {0, 0.1, 0.25, 0.5,
    /// 1, 2} x recurrence weight in {0, 0.3} with Marconi's recency (the deepest node); branch
    /// checkpoints only once the branch recurred (threshold 2) at alpha 0 and 0.5. Every candidate drops
    /// superseded checkpoints.
    public static let defaultGrid: [Candidate] = {
        var grid: [Candidate] = []
        for (alpha, beta) in [(0.0, 0.3), (0.1, 0.3), (0.0, 0.0)] {
            grid.append(Candidate(alpha: alpha, settings: .init(recurrenceWeight: beta, branchThreshold: 1, refreshPath: true)))
        }
        for beta in [0.0, 0.3] {
            for alpha in [0.0, 0.1, 0.25, 0.5, 1.0, 2.0] {
                grid.append(Candidate(alpha: alpha, settings: .init(recurrenceWeight: beta, branchThreshold: 1)))
            }
        }
        for alpha in [0.0, 0.5] {
            grid.append(Candidate(alpha: alpha, settings: .init(recurrenceWeight: 0.3, branchThreshold: 2)))
        }
        return grid
    }()

    public let candidates: [Candidate]
    public let window: Int
    public let decay: Double
    /// How much more (relative) a challenger's score must be to replace the current setting.
    public let margin: Double
    /// The first decision at `firstFactor` x N0 requests (0: at the first window's end).
    public let firstFactor: Int
    private var shadows: [HybridCache]
    private var scores: [Double]
    private var windowSaved: [Int64]
    private var seen = 0
    /// The request of the next decision (1-based count of requests seen).
    private var nextDecision: Int
    private var firstEvictionSeen = false
    public private(set) var current: Int
    /// Settings adopted so far (one per window that changed it).
    public private(set) var switches = 0
    /// Decisions taken so far (whether or not they changed the setting).
    public private(set) var decisions = 0

    public init(model: HybridModel, capacityBytes: Int64, candidates: [Candidate] = defaultGrid, window: Int = 25,
                decay: Double = 0.5, margin: Double = 0.1, firstFactor: Int = 5, start: Int = 0) {
        precondition(!candidates.isEmpty && window > 0 && firstFactor >= 0 && start < candidates.count)
        self.candidates = candidates
        self.window = window
        self.decay = decay
        self.margin = margin
        self.firstFactor = firstFactor
        nextDecision = window
        shadows = candidates.map {
            HybridCache(model: model, policy: .adaptive, capacityBytes: capacityBytes, alpha: $0.alpha, settings: $0.settings)
        }
        scores = Array(repeating: 0, count: candidates.count)
        windowSaved = Array(repeating: 0, count: candidates.count)
        current = start
    }

    /// Replays one request (lookup of `input`, insert of `sequence`) on every shadow. Returns the candidate
    /// to adopt when a window just ended and the best one changed, else nil.
    public mutating func observe(input: UnsafeBufferPointer<Int32>, sequence: UnsafeBufferPointer<Int32>) -> Candidate? {
        let model = shadows[0].tree.model
        for k in shadows.indices {
            let hit = shadows[k].lookup(input).hit
            windowSaved[k] += model.savedFLOPs(hitTokens: Int64(hit)).total
            try? shadows[k].insert(sequence)
        }
        seen += 1
        if !firstEvictionSeen && shadows[current].evictionCalls > 0 {
            // The current setting's shadow holds what the real cache holds: its first eviction is the cache's.
            firstEvictionSeen = true
            if firstFactor > 0 { nextDecision = min(nextDecision, max(seen, firstFactor * seen)) }
        }
        guard seen == nextDecision else { return nil }
        nextDecision = seen + window
        decisions += 1
        var best = 0
        for k in scores.indices {
            scores[k] = scores[k] * decay + Double(windowSaved[k])
            windowSaved[k] = 0
        }
        for k in scores.indices where scores[k] > scores[best] { best = k }
        // A challenger must beat the current setting by `margin`: following noise costs hits.
        guard best != current, scores[best] > scores[current] * (1 + margin) else { return nil }
        current = best
        switches += 1
        return candidates[best]
    }
}
