/// One accelerator's datasheet figures the roofline needs (per GPU).
public struct HardwareSpec: Sendable, Equatable {
    /// Preset name as used on the command line (`h100`, ...).
    public var name: String
    /// Dense bf16 tensor-core peak, FLOP/s.
    public var peakFlops: Double
    /// HBM bandwidth, bytes/s.
    public var memoryBandwidth: Double
    /// HBM capacity, bytes.
    public var memoryBytes: Double
    /// Host link (PCIe) bandwidth per direction, bytes/s: what swapping KV to host memory costs.
    public var hostLinkBandwidth: Double
    /// GPU-to-GPU link (NVLink) bandwidth per direction, bytes/s: what tensor-parallel all-reduce costs.
    public var interconnectBandwidth: Double

    public init(name: String, peakFlops: Double, memoryBandwidth: Double, memoryBytes: Double,
                hostLinkBandwidth: Double, interconnectBandwidth: Double) {
        self.name = name
        self.peakFlops = peakFlops
        self.memoryBandwidth = memoryBandwidth
        self.memoryBytes = memoryBytes
        self.hostLinkBandwidth = hostLinkBandwidth
        self.interconnectBandwidth = interconnectBandwidth
    }
}

extension HardwareSpec {
    /// NVIDIA A100-SXM4-80GB: 312 TFLOP/s bf16 dense, 2.039 TB/s HBM2e, PCIe 4.0 x16 (32 GB/s), NVLink 3 (300 GB/s per direction).
    public static let a100_80GB = HardwareSpec(name: "a100", peakFlops: 312e12, memoryBandwidth: 2.039e12,
                                               memoryBytes: 80e9, hostLinkBandwidth: 32e9, interconnectBandwidth: 300e9)
    /// NVIDIA H100-SXM5-80GB: 989 TFLOP/s bf16 dense, 3.35 TB/s HBM3, PCIe 5.0 x16 (64 GB/s), NVLink 4 (450 GB/s per direction).
    public static let h100_80GB = HardwareSpec(name: "h100", peakFlops: 989e12, memoryBandwidth: 3.35e12,
                                               memoryBytes: 80e9, hostLinkBandwidth: 64e9, interconnectBandwidth: 450e9)
    /// NVIDIA H200-SXM-141GB: H100 compute, 4.8 TB/s HBM3e.
    public static let h200_141GB = HardwareSpec(name: "h200", peakFlops: 989e12, memoryBandwidth: 4.8e12,
                                                memoryBytes: 141e9, hostLinkBandwidth: 64e9, interconnectBandwidth: 450e9)

    /// Every preset.
    public static let presets: [HardwareSpec] = [a100_80GB, h100_80GB, h200_141GB]

    /// The preset named `name` (case-insensitive, `h100-80gb` and `h100` alike), or nil.
    public static func preset(named name: String) -> HardwareSpec? {
        let n = name.lowercased()
        return presets.first { n == $0.name || n.hasPrefix($0.name + "-") }
    }
}
