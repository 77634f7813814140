import KVData
import KVScheduler

/// Output-length buckets: bucket `k` holds lengths in `lowerBounds[k] ..< lowerBounds[k + 1]`, the
/// last bucket is open-ended.
public struct LengthBuckets: Sendable, Equatable, Codable {
    /// Strictly increasing lower bounds, starting at 0.
    public let lowerBounds: [Int]

    /// Validates the bounds: non-empty, starting at 0, strictly increasing.
    public init?(lowerBounds: [Int]) {
        guard lowerBounds.first == 0, zip(lowerBounds, lowerBounds.dropFirst()).allSatisfy({ $0 < $1 }) else {
            return nil
        }
        self.lowerBounds = lowerBounds
    }

    /// 21 buckets with edges growing by x1.5 / x1.33 from 8 to 8192 tokens (fine for short answers,
    /// coarse where the relative error matters less).
    public static let standard = LengthBuckets(lowerBounds: [
        0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192,
    ])!

    public var count: Int { lowerBounds.count }

    /// The bucket holding `length`. O(log K), allocates nothing.
    @inlinable
    public func bucket(of length: Double) -> Int {
        var lo = 0
        var hi = lowerBounds.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if Double(lowerBounds[mid]) <= length { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }
}
