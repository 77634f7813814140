import KVData
import KVScheduler

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Scales reserved output lengths online so that the share of requests outgrowing their reserve
/// tends to `1 - quantile`, whatever the predictor's own calibration (small windows, drift, data
/// unlike the training set).
///
/// After each finished request the scale grows by `exp(step x quantile)` if the request outgrew its
/// reserve and shrinks by `exp(-step x (1 - quantile))` otherwise: the expected change is zero
/// exactly when the underpredict rate is `1 - quantile`. The scale stays in [0.25, 8]. O(1), no allocation.
public struct ReserveCalibrator: Sendable, Equatable {
    public let quantile: Double
    public let step: Double
    public private(set) var scale = 1.0

    public init(quantile: Double, step: Double = 0.05) {
        self.quantile = quantile
        self.step = max(0, step)
    }

    /// The calibrated reserve for a raw one, capped at `limit` (at least `floor`).
    @inlinable
    public func apply(_ raw: Double, floor: Int, limit: Int) -> Int {
        let scaled = (raw * scale).rounded(.up)
        return min(limit, max(floor, scaled < Double(limit) ? Int(scaled) : limit))
    }

    /// Records whether a request with this `reserve` outgrew it.
    public mutating func record(reserve: Int, actual: Int) {
        let q = min(max(quantile, 0), 1)
        let delta = actual > reserve ? step * q : -step * (1 - q)
        scale = min(8, max(0.25, scale * exp(delta)))
    }
}
