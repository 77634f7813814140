#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan
import KVTiers

/// The engine's `PagedKVPool` as the tiers' L1 `DeviceMemory`: eviction copies read a block's bytes out
/// of the pool, loads write them back, each a `memcpy` on the transfer worker that asks.
///
/// The tiers see the pool's own geometry (`PagedKVPool.geometry`, `.fp32`): transfers move exactly the
/// pool's bytes per block, layer and layer group; the disk codec codes each fp32 value as two 16-bit
/// words (byte planes of their low and high bytes), which is lossless for any bytes.
///
/// Thread-safety: the tier manager copies a block only while the cache manager does not hand it to a
/// sequence (eviction copies finish before `waitForEvictionCopies` returns; loads before their handle
/// completes), so no block is read and written at once.
public final class PagedKVPoolMemory: DeviceMemory, @unchecked Sendable {
    // Sendable: `pool`'s storage is fixed; concurrent copies touch distinct blocks (see above).
    public let pool: PagedKVPool
    public let layout: KVGeometry
    public var capacityBlocks: Int { pool.capacityBlocks }

    public init(pool: PagedKVPool) {
        self.pool = pool
        layout = pool.geometry
    }

    /// Copies `range` of `block` to `host`. O(range).
    public func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        guard pool.contains(block), range.lowerBound >= 0, range.upperBound <= pool.bytesPerBlock else { return done(false) }
        pool.withBlockBytes(block) { src in _ = memcpy(host.pointer, src.baseAddress! + range.lowerBound, range.count) }
        done(true)
    }

    /// Copies `host` into `range` of `block`. O(range).
    public func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        guard pool.contains(block), range.lowerBound >= 0, range.upperBound <= pool.bytesPerBlock else { return done(false) }
        pool.withMutableBlockBytes(block) { dst in _ = memcpy(dst.baseAddress! + range.lowerBound, host.pointer, range.count) }
        done(true)
    }
}
