import Foundation

/// Sets request arrival times for a replay: the trace's own times divided by a rate scale, or a
/// seeded Poisson process for traces without times (or when asked), or all at 0 (an offline batch)
/// when the trace has no times and no rate is given.
public enum ArrivalSchedule {
    /// The requests with their arrivals replaced. O(n).
    public static func apply(to requests: [TraceRequest], hasTimestamps: Bool, rateScale: Double = 1,
                             poissonRate: Double? = nil, seed: UInt64 = 1) -> [TraceRequest] {
        var out = requests
        if let rate = poissonRate, rate > 0 {
            var rng = SplitMix64(seed: seed)
            var t = 0.0
            for i in out.indices {
                out[i].arrival = t
                t += -log(1 - rng.nextUnit()) / rate
            }
        } else if hasTimestamps {
            let scale = rateScale > 0 ? rateScale : 1
            for i in out.indices { out[i].arrival /= scale }
        } else {
            for i in out.indices { out[i].arrival = 0 }
        }
        return out
    }
}

/// A small, seedable generator (SplitMix64) so replays repeat exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }
}
