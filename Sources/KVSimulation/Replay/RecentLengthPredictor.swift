import KVScheduler

/// A simple predictor for traces without text, used by the timed replay: the recent output lengths of requests with the same template
/// key (else of all requests), summarised as a mean (expected) and a quantile (reserve).
///
/// Until `minimumHistory` outputs are known it predicts `maxTokens` (no evidence, no risk).
/// `predict` is O(1); `observe` is O(window) (a sorted window kept by insertion).
public final class RecentLengthPredictor: OutputLengthPredictor {
    public let window: Int
    public let reserveQuantile: Double
    public let minimumHistory: Int

    final class History {
        var ring: [Int32] = []
        var sorted: [Int32] = []
        var next = 0
        var sum = 0
    }

    private let global = History()
    private var byTemplate: [UInt64: History] = [:]

    public init(window: Int = 512, reserveQuantile: Double = 0.9, minimumHistory: Int = 8) {
        self.window = max(1, window)
        self.reserveQuantile = min(1, max(0, reserveQuantile))
        self.minimumHistory = max(1, minimumHistory)
    }

    public func predict(_ input: PredictionInput) -> LengthPrediction {
        var h = global
        if let key = input.templateKey, let t = byTemplate[key], t.sorted.count >= minimumHistory { h = t }
        guard h.sorted.count >= minimumHistory else {
            return LengthPrediction(expected: input.maxTokens, reserve: input.maxTokens, bucket: 0)
        }
        let expected = (h.sum + h.sorted.count / 2) / h.sorted.count
        let q = Int(h.sorted[min(h.sorted.count - 1, Int(reserveQuantile * Double(h.sorted.count)))])
        return LengthPrediction(expected: min(input.maxTokens, max(1, expected)),
                                reserve: min(input.maxTokens, max(1, q)), bucket: 0)
    }

    public func observe(_ input: PredictionInput, actualOutput: Int) {
        let v = Int32(clamping: max(0, actualOutput))
        add(v, to: global)
        if let key = input.templateKey {
            let t: History
            if let existing = byTemplate[key] { t = existing } else { t = History(); byTemplate[key] = t }
            add(v, to: t)
        }
    }

    private func add(_ v: Int32, to h: History) {
        if h.ring.count < window {
            h.ring.append(v)
        } else {
            let old = h.ring[h.next]
            h.ring[h.next] = v
            h.next = (h.next + 1) % window
            h.sum -= Int(old)
            h.sorted.remove(at: lowerBound(h.sorted, old))
        }
        h.sum += Int(v)
        h.sorted.insert(v, at: lowerBound(h.sorted, v))
    }

    private func lowerBound(_ a: [Int32], _ v: Int32) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let m = (lo + hi) / 2
            if a[m] < v { lo = m + 1 } else { hi = m }
        }
        return lo
    }
}
