import KVCache
import KVPlan

/// Decides whether a tier is worth loading from (and so worth storing to): a block is loaded only when
/// the load is expected to beat recomputing its tokens.
///
/// Load time of one block from a tier = per-operation latency + bytes / measured bandwidth (a moving
/// average of observed transfers, seeded at start). Recompute time = tokens x `recomputeSecondsPerToken`,
/// taken from the engine's cost model when there is one. A tier is used when
/// `load time x safetyFactor <= recompute time`. With no recompute cost configured, every tier is used.
public struct TierAdmission: Sendable {
    /// Seconds to recompute one token's KV (prefill), or nil to admit every load.
    public var recomputeSecondsPerToken: Double?
    /// Loads must be this many times faster than recomputation (1 = break even).
    public var safetyFactor: Double = 1.0
    /// Estimated bytes per second for a host (L2) -> device (L1) load.
    public private(set) var hostBytesPerSecond: Double
    /// Estimated bytes per second for a disk (L3) -> host load, decompression included.
    public private(set) var diskBytesPerSecond: Double
    /// Fixed cost per block load.
    public var hostLatencySeconds: Double = 5e-6
    public var diskLatencySeconds: Double = 100e-6
    /// The disk device's read bandwidth (bytes/s) assumed before any read was measured; calibration
    /// combines it with the measured decompression speed.
    public var diskDeviceBytesPerSecond: Double = 1.5e9
    /// Weight of a new observation in the moving average.
    public var smoothing: Double = 0.2

    public init(recomputeSecondsPerToken: Double? = nil, hostBytesPerSecond: Double = 10e9, diskBytesPerSecond: Double = 1.5e9) {
        self.recomputeSecondsPerToken = recomputeSecondsPerToken
        self.hostBytesPerSecond = hostBytesPerSecond
        self.diskBytesPerSecond = diskBytesPerSecond
    }


    /// Seeds the estimates from a start-up measurement: host copy speed, and disk = device read then
    /// decompression (the two in sequence: 1/bw = 1/read + 1/decode).
    public mutating func seed(hostBytesPerSecond host: Double?, decodeBytesPerSecond decode: Double?) {
        if let host, host > 0 { hostBytesPerSecond = host }
        if let decode, decode > 0 { diskBytesPerSecond = 1 / (1 / diskDeviceBytesPerSecond + 1 / decode) }
    }

    /// Folds one measured transfer into the tier's bandwidth estimate.
    public mutating func observe(tier: Tier, bytes: Int, nanos: UInt64) {
        guard bytes > 0, nanos > 0 else { return }
        let bw = Double(bytes) / (Double(nanos) * 1e-9)
        switch tier {
        case .host: hostBytesPerSecond += smoothing * (bw - hostBytesPerSecond)
        case .disk: diskBytesPerSecond += smoothing * (bw - diskBytesPerSecond)
        default: break
        }
    }

    /// Expected seconds to load one block of `bytes` from `tier` into the device.
    public func loadSeconds(tier: Tier, bytes: Int) -> Double {
        switch tier {
        case .device: return 0
        case .host: return hostLatencySeconds + Double(bytes) / hostBytesPerSecond
        case .disk, .remote:
            // Disk -> host, then host -> device.
            return diskLatencySeconds + Double(bytes) / diskBytesPerSecond + loadSeconds(tier: .host, bytes: bytes)
        }
    }

    /// Whether loading a block of `layout` from `tier` beats recomputing its tokens.
    public func worthLoading(tier: Tier, layout: KVGeometry) -> Bool {
        guard let perToken = recomputeSecondsPerToken else { return true }
        return loadSeconds(tier: tier, bytes: layout.bytesPerBlock) * safetyFactor <= perToken * Double(layout.blockTokens)
    }
}
