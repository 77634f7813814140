#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan
import KVTiers

/// The engine's `PagedKVPool` as the tiers' L1 `DeviceMemory`: eviction copies read a block's bytes out
/// of the pool, loads write them back, each a `memcpy` on the transfer worker that asks.
///
/// The pool holds fp32 while `KVGeometry` speaks of 16-bit elements (fp16, bf16): the pool is described to
/// the tiers as twice as many 16-bit words per head (`headDim x 2`, `.fp16`). That is the same bytes per
/// block, per layer and per layer group, so transfers move exactly the pool's bytes; the disk codec then
/// splits each fp32 value's two 16-bit halves into its byte planes, which is lossless for any bytes.
///
/// Thread-safety: the tier manager copies a block only while the cache manager does not hand it to a
/// sequence (eviction copies finish before `waitForEvictionCopies` returns; loads before their handle
/// completes), so no block is read and written at once.
public final class PagedKVPoolMemory: DeviceMemory, @unchecked Sendable {
    // Sendable: `pool`'s storage is fixed; concurrent copies touch distinct blocks (see above).
    public let pool: PagedKVPool
    public let layout: KVGeometry
    public var capacityBlocks: Int { pool.capacityBlocks }

    /// - Throws: `.invalidArgument` when the pool's block cannot be described as a `KVGeometry`.
    public init(pool: PagedKVPool) throws(TierError) {
        self.pool = pool
        do {
            layout = try KVGeometry(layers: pool.layers, kvHeads: pool.kvHeads, headDim: pool.headDim * 2,
                                    dtype: .fp16, blockTokens: pool.blockTokens)
        } catch { throw .cache(error) }
        guard layout.bytesPerBlock == pool.bytesPerBlock else {
            throw .invalidArgument("pool block of \(pool.bytesPerBlock) bytes, layout of \(layout.bytesPerBlock)")
        }
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
