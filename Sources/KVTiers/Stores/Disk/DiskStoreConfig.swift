#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan

/// Configuration of the L3 disk tier.
public struct DiskStoreConfig: Sendable {
    /// The directory that holds the segment files (created with mode 0700; files are 0600).
    public var directory: String
    /// The most bytes the segments may hold together; the oldest segment is evicted beyond it.
    public var capacityBytes: Int
    /// The most live blocks (optional), for callers that size the tier in blocks.
    public var capacityBlocks: Int?
    /// The largest block (decoded) the store accepts; also sizes the codec's buffers.
    public var maxBlockBytes: Int
    /// Bytes per element of the blocks (2: fp16/bf16, byte-plane codec; 1: fp8, plain zstd).
    public var elementSize: Int
    /// Compress blocks (the KV byte-plane codec); false stores them raw.
    public var compress: Bool = true
    /// `fsync` every record (durable on power loss) instead of only when a segment is sealed or the store
    /// closes. Crash safety against torn writes does not depend on it: checksums do that.
    public var syncEveryWrite: Bool = false
    /// Physically drop torn and corrupt records found when opening (rewriting the damaged segments).
    public var repairOnOpen: Bool = true
    /// Give blocks read since they were written a second chance when their segment is evicted.
    public var secondChance: Bool = true
    /// Where warnings go (files skipped when opening, a full disk): one line each, naming the path.
    public var warn: @Sendable (String) -> Void = TierWarnings.once
    #if DEBUG
    /// Debug builds only: fault injection for the I/O wrapper.
    public var faults: IOFaultInjector?
    #endif

    public init(directory: String, capacityBytes: Int, capacityBlocks: Int? = nil, maxBlockBytes: Int, elementSize: Int = 2) {
        self.directory = directory
        self.capacityBytes = capacityBytes
        self.capacityBlocks = capacityBlocks
        self.maxBlockBytes = maxBlockBytes
        self.elementSize = elementSize
    }

    /// A store for blocks of `layout` (fp32 is coded as two 16-bit words per element, like
    /// `KVByteCodec(layout:)`).
    public init(directory: String, capacityBytes: Int, capacityBlocks: Int? = nil, layout: KVGeometry) {
        self.init(directory: directory, capacityBytes: capacityBytes, capacityBlocks: capacityBlocks,
                  maxBlockBytes: layout.bytesPerBlock, elementSize: min(layout.dtype.size, 2))
    }

    /// The most bytes one record of a `blockBytes`-byte block takes on disk: header plus worst-case encoding.
    public static func maxRecordBytes(blockBytes: Int) -> Int {
        DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: blockBytes)
    }
}
