/// A block's index in the pool: dense in `0..<capacityBlocks`, so an engine copies block tables
/// straight into its block-table tensor.
public typealias BlockID = Int32

/// A sequence (request, or one sample of a forked request) as the server names it.
public struct SequenceID: Hashable, Sendable, CustomStringConvertible {
    public var raw: Int64
    @inlinable public init(_ raw: Int64) { self.raw = raw }
    public var description: String { "seq#\(raw)" }
}

/// Where a copy of a block lives: L1 device pool, L2 host memory, L3 local disk, L4 remote store.
public enum Tier: UInt8, Sendable, BitwiseCopyable, CaseIterable, CustomStringConvertible {
    case device = 0, host = 1, disk = 2, remote = 3
    public var description: String {
        switch self {
        case .device: "device"
        case .host: "host"
        case .disk: "disk"
        case .remote: "remote"
        }
    }
}
