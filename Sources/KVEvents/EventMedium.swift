import KVCache

/// The `medium` string an event names for each tier: vLLM's `GPU` and `CPU` for the device and host
/// tiers, `DISK` for the local disk store and `REMOTE` for a shared store. A router that expects other
/// names (vLLM's offloading connectors say `STORAGE`) sets its own. Plain value, O(1) lookup.
public struct EventMedium: Sendable, Equatable {
    public var device = "GPU"
    public var host = "CPU"
    public var disk = "DISK"
    public var remote = "REMOTE"

    public init() {}

    public func name(of tier: Tier) -> String {
        switch tier {
        case .device: device
        case .host: host
        case .disk: disk
        case .remote: remote
        }
    }
}
