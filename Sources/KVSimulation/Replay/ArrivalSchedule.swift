import Foundation
import KVCache
import KVData

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
                t += -log(1 - Double(rng.next() >> 11) * 0x1p-53) / rate
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
