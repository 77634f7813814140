import KVCache

/// Times a workload several times and keeps the median, so one noisy run on a shared machine does
/// not move the figure. Used by `kvcache bench` and by the Benchmarks package.
public enum Measure {
    /// Runs `setup` then times `body` `repetitions` times; returns the median seconds of `body`.
    public static func median(repetitions: Int = 15, setup: () throws -> Void = {}, _ body: () throws -> Void) rethrows -> Double {
        var samples: [Double] = []
        samples.reserveCapacity(repetitions)
        for _ in 0 ..< repetitions {
            try setup()
            let start = KVClock.monotonicNanos()
            try body()
            samples.append(KVClock.seconds(from: start, to: KVClock.monotonicNanos()))
        }
        return median(of: samples)
    }

    /// The median of `samples` (the upper one of an even count). Precondition: not empty. O(n log n).
    public static func median(of samples: [Double]) -> Double {
        precondition(!samples.isEmpty, "the median of no samples")
        return samples.sorted()[samples.count / 2]
    }
}
