#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan
import KVTiers

/// L1 -> L2 -> L1 round trips of one block through a `KVTierManager` (host tier, stand-in device
/// memory, two transfer workers): each round trip evicts one device block to host (`willEvict`, which
/// also drops the coldest host block once the tier is full), looks its key up in the tiers and loads it
/// back into another device block, waiting for the load. Units are round trips. The keys rotate over more
/// blocks than the host tier holds, so every run is the steady state of a full tier. Measures the
/// transfer machinery (jobs, handles, completions), not bandwidth: blocks are 4 KiB.
public final class TierRoundTripWorkload: Workload {
    public let units: Int
    let tiers: KVTierManager
    let keys: [BlockKey]
    var next = 0
    var plan: [BlockKey] = [.zero]
    var target: [BlockID] = [1]

    /// - Parameter roundTrips: round trips per `run`.
    public init(roundTrips: Int = 256) throws {
        units = roundTrips
        // 2 layers x 2 x 8 heads x 64 x 2 tokens x fp16 = 4 KiB per block, two layer groups.
        let layout = try KVGeometry(layers: 2, kvHeads: 8, headDim: 64, dtype: .fp16, blockTokens: 2)
        let device = try HostDeviceMemory(layout: layout, capacityBlocks: 2)
        _ = device.withBlock(0) { SyntheticKV.fill($0, layout: layout, seed: 7) }
        var config = TierConfig(layout: layout, hostBlocks: 16)
        config.layerGroups = 2
        config.lockHostMemory = false
        config.calibrateAtStart = false
        tiers = try KVTierManager(config: config, device: device)
        keys = (0 ..< 64).map { BlockKey(lo: UInt64($0) &+ 1, hi: 0x7172_6970) }
    }

    public func prepare() throws {}

    public func run() throws {
        for _ in 0 ..< units {
            let key = keys[next]
            next = next == keys.count - 1 ? 0 : next + 1
            tiers.willEvict(block: 0, key: key)
            tiers.waitForEvictionCopies()
            plan[0] = key
            let found = tiers.lookup(keys: plan, deviceBlocks: 0)
            guard found.hostBlocks == 1 else { throw TierError.corrupt("round trip: block not on host") }
            let handle = try tiers.load(found, keys: plan, into: target)
            handle.wait()
            guard handle.loadedPrefixBlocks == 1 else { throw TierError.corrupt("round trip: load failed") }
        }
    }
}

/// What `TierBandwidthBenchmark.measure` found for one dtype. Rates are GB/s (bytes per nanosecond) of
/// the best of the repeats.
public struct TierBandwidthFigures: Sendable {
    public var dtype: KVDType
    public var blockBytes: Int
    public var memcpyGBps: Double
    public var l1ToL2GBps: Double
    public var l2ToL1GBps: Double
    public var diskWriteGBps: Double
    public var diskReadGBps: Double
    /// The codec on the same blocks.
    public var codec: KVCodecFigures
    /// Where the host tier's memory went (nil when no host tier was made).
    public var placement: HostPlacementReport?

    /// The load-or-recompute rule with these measured host and disk bandwidths (5 us and 100 us
    /// latencies) against a recompute of `recomputeSecondsPerToken`.
    public func admission(recomputeSecondsPerToken: Double) throws(TierError) -> LoadOrRecompute {
        let recompute: RecomputeCost
        do { recompute = try RecomputeCost(secondsPerToken: recomputeSecondsPerToken, secondsPerContextPair: 0) }
        catch { throw .cache(error) }
        return LoadOrRecompute(recompute: recompute,
                               host: .init(latencySeconds: 5e-6, bytesPerSecond: l2ToL1GBps * 1e9),
                               disk: .init(latencySeconds: 100e-6, bytesPerSecond: diskReadGBps * 1e9))
    }
}

/// What `KVCodecBenchmark.measure` found: compression ratios (raw / encoded bytes) of plain zstd level 1
/// and of the byte-plane codec, and the codec's rates in GB/s, by wall time and per thread CPU second.
public struct KVCodecFigures: Sendable {
    public var ratioPlain: Double
    public var ratioCodec: Double
    public var compressGBps: Double
    public var decompressGBps: Double
    public var compressGBpsPerCPUSecond: Double
    public var decompressGBpsPerCPUSecond: Double
    /// Blocks the codec stored raw (compression did not pay).
    public var rawBlocks: Int
}

/// Bytes per nanosecond, i.e. GB/s.
func gigabytesPerSecond(_ bytes: Int, _ nanos: UInt64) -> Double { Double(bytes) / Double(max(nanos, 1)) }

/// The KV byte-plane codec on whole blocks: plain zstd level 1 against byte planes, one thread, reused
/// contexts, every block decoded back and compared. Allocates its buffers once per `measure`.
public struct KVCodecBenchmark {
    /// Repetitions per timing; the best is kept.
    public var repeats: Int

    public init(repeats: Int) { self.repeats = repeats }

    /// - Throws: `TierError` from the codec, `.corrupt` when a decoded block differs.
    public func measure(_ src: UnsafeRawBufferPointer, blockBytes B: Int, elementSize: Int) throws -> KVCodecFigures {
        let blocks = src.count / B
        let total = blocks * B
        let plain = try KVByteCodec(elementSize: elementSize, bytePlanes: false, maxInputBytes: B)
        let codec = try KVByteCodec(elementSize: elementSize, bytePlanes: true, maxInputBytes: B)
        let encCap = KVByteCodec.maxEncodedSize(rawBytes: B)
        let enc = UnsafeMutableRawBufferPointer.allocate(byteCount: encCap * blocks, alignment: 64)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 4096)
        defer { enc.deallocate(); dst.deallocate() }
        memset(dst.baseAddress!, 0, total)
        var plainBytes = 0, codecBytes = 0
        var modes = [KVCodecMode](repeating: .raw, count: blocks), sizes = [Int](repeating: 0, count: blocks)
        for b in 0 ..< blocks {
            plainBytes += try plain.encode(UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B]),
                                           into: UnsafeMutableRawBufferPointer(rebasing: enc[0 ..< encCap])).count
        }
        func encodeAll() throws {
            codecBytes = 0
            for b in 0 ..< blocks {
                let (m, n) = try codec.encode(UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B]),
                                              into: UnsafeMutableRawBufferPointer(rebasing: enc[b * encCap ..< (b + 1) * encCap]))
                modes[b] = m; sizes[b] = n; codecBytes += n
            }
        }
        func decodeAll() throws {
            for b in 0 ..< blocks {
                let stored = modes[b] == .raw ? UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B])
                                              : UnsafeRawBufferPointer(rebasing: enc[b * encCap ..< b * encCap + sizes[b]])
                try codec.decode(stored, mode: modes[b], into: UnsafeMutableRawBufferPointer(rebasing: dst[b * B ..< (b + 1) * B]))
            }
        }
        let compressNanos = try best(repeats, KVClock.monotonicNanos, encodeAll)
        let decompressNanos = try best(repeats, KVClock.monotonicNanos, decodeAll)
        guard memcmp(src.baseAddress!, dst.baseAddress!, total) == 0 else { throw TierError.corrupt("codec round trip differs") }
        let compressCPU = try best(repeats, KVClock.threadCPUNanos, encodeAll)
        let decompressCPU = try best(repeats, KVClock.threadCPUNanos, decodeAll)
        return KVCodecFigures(
            ratioPlain: Double(total) / Double(plainBytes), ratioCodec: Double(total) / Double(codecBytes),
            compressGBps: gigabytesPerSecond(total, compressNanos), decompressGBps: gigabytesPerSecond(total, decompressNanos),
            compressGBpsPerCPUSecond: gigabytesPerSecond(total, compressCPU),
            decompressGBpsPerCPUSecond: gigabytesPerSecond(total, decompressCPU),
            rawBlocks: modes.count { $0 == .raw })
    }
}

/// The shortest time of `repeats` runs of `body` on `clock` (wall or thread CPU), in nanoseconds.
func best(_ repeats: Int, _ clock: () -> UInt64, _ body: () throws -> Void) rethrows -> UInt64 {
    var bestNanos = UInt64.max
    for _ in 0 ..< repeats {
        let t0 = clock()
        try body()
        bestNanos = min(bestNanos, clock() - t0)
    }
    return bestNanos
}

/// The tier data path on KV-like data (synthetic blocks of `KVGeometry.llama3_8B`, 2 MiB per fp16 block):
/// memcpy as the reference, L1 -> L2 (eviction copies) and L2 -> L1 (loads) through a `KVTierManager`
/// with four layer groups, disk tier writes (fsync at the end) and cold reads (page cache dropped), and
/// the codec. Every copy is checked against the original. Allocates its buffers per `measure`.
public struct TierBandwidthBenchmark {
    /// Blocks per measurement.
    public var blocks: Int
    /// Repetitions per measurement; the best is kept.
    public var repeats: Int
    /// An existing directory for the disk tier runs (`run0`, `run1`, ... inside it).
    public var diskDirectory: String
    /// Keep the last run's disk tier (`run<repeats-1>`) instead of removing it.
    public var keepLastDiskRun: Bool

    public init(blocks: Int, repeats: Int, diskDirectory: String, keepLastDiskRun: Bool) {
        self.blocks = blocks
        self.repeats = repeats
        self.diskDirectory = diskDirectory
        self.keepLastDiskRun = keepLastDiskRun
    }

    /// - Throws: `TierError` from the tiers, `.corrupt` when a copy differs from its original.
    public func measure(dtype: KVDType) throws -> TierBandwidthFigures {
        let layout = KVGeometry.llama3_8B(dtype: dtype)
        let B = layout.bytesPerBlock
        let total = B * blocks
        // L1 stand-in with 2 x blocks: the first half holds data, loads go into the second half.
        let device = try HostDeviceMemory(layout: layout, capacityBlocks: 2 * blocks)
        for b in 0 ..< blocks { _ = device.withBlock(BlockID(b)) { SyntheticKV.fill($0, layout: layout, seed: UInt64(b)) } }

        // memcpy of the same sizes: block by block, one thread.
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 4096)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 4096)
        defer { src.deallocate(); dst.deallocate() }
        for b in 0 ..< blocks { _ = device.withBlock(BlockID(b)) { (src.baseAddress! + b * B).copyMemory(from: $0.baseAddress!, byteCount: B) } }
        memset(dst.baseAddress!, 0, total)
        let memcpyNanos = best(repeats, KVClock.monotonicNanos) {
            for b in 0 ..< blocks { memcpy(dst.baseAddress! + b * B, src.baseAddress! + b * B, B) }
        }

        // L1 -> L2 (eviction copies) and L2 -> L1 (loads) through the tier manager.
        var cfg = TierConfig(layout: layout, hostBlocks: blocks)
        cfg.layerGroups = 4
        let keys = (0 ..< blocks).map { BlockKey(lo: UInt64($0) &+ 1, hi: 0xBE9C_4000 | UInt64(dtype == .fp16 ? 1 : 2)) }
        var l1ToL2 = UInt64.max, l2ToL1 = UInt64.max
        var placement: HostPlacementReport?
        for _ in 0 ..< repeats {
            let tiers = try KVTierManager(config: cfg, device: device)
            placement = tiers.host?.placement
            let t0 = KVClock.monotonicNanos()
            for (b, k) in keys.enumerated() {
                tiers.noteStored(block: BlockID(b), key: k)
                tiers.willEvict(block: BlockID(b), key: k)
            }
            tiers.waitForEvictionCopies()
            l1ToL2 = min(l1ToL2, KVClock.monotonicNanos() - t0)
            let plan = tiers.lookup(keys: keys, deviceBlocks: 0)
            guard plan.hostBlocks == blocks else { throw TierError.corrupt("host tier lost blocks") }
            let t1 = KVClock.monotonicNanos()
            let h = try tiers.load(plan, keys: keys, into: (0 ..< blocks).map { BlockID(blocks + $0) })
            h.wait()
            l2ToL1 = min(l2ToL1, KVClock.monotonicNanos() - t1)
            guard h.loadedPrefixBlocks == blocks else { throw TierError.corrupt("load failed") }
        }
        // The loaded copies must equal the originals.
        for b in 0 ..< blocks {
            let same = device.withBlock(BlockID(blocks + b)) { l in device.withBlock(BlockID(b)) { o in memcmp(l.baseAddress!, o.baseAddress!, B) == 0 } ?? false } ?? false
            guard same else { throw TierError.corrupt("block \(b) differs after the round trip") }
        }

        // Codec: plain zstd level 1 vs byte planes, one thread, reused contexts.
        let codec = try KVCodecBenchmark(repeats: repeats).measure(UnsafeRawBufferPointer(src), blockBytes: B,
                                                                    elementSize: layout.dtype.size)

        // Disk tier: write every block (compressed, fsync at the end), drop the files from the page
        // cache, then read them all back (cold, decompressed, checksums verified).
        var writeNanos = UInt64.max, readNanos = UInt64.max
        for r in 0 ..< repeats {
            let sub = diskDirectory + "/run\(r)"
            try? Self.removeStore(sub)   // a run left by an earlier invocation
            let store = try DiskBlockStore(DiskStoreConfig(directory: sub, capacityBytes: 2 * total + (64 << 20), layout: layout))
            let t0 = KVClock.monotonicNanos()
            for b in 0 ..< blocks {
                guard store.put(keys[b], bytes: UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B])) == .stored else {
                    throw TierError.invalidArgument("disk write failed: \(store.statistics)")
                }
            }
            store.close()   // fsync
            writeNanos = min(writeNanos, KVClock.monotonicNanos() - t0)
            Self.dropFromPageCache(directory: sub)
            memset(dst.baseAddress!, 0, total)   // the round trip check below must see the read's bytes
            let t1 = KVClock.monotonicNanos()
            for b in 0 ..< blocks {
                guard store.read(keys[b], into: UnsafeMutableRawBufferPointer(rebasing: dst[b * B ..< (b + 1) * B])) == .hit else {
                    throw TierError.corrupt("disk read failed")
                }
            }
            readNanos = min(readNanos, KVClock.monotonicNanos() - t1)
            guard memcmp(src.baseAddress!, dst.baseAddress!, total) == 0 else { throw TierError.corrupt("disk round trip differs") }
            if !keepLastDiskRun || r < repeats - 1 { try? Self.removeStore(sub) }
        }
        return TierBandwidthFigures(
            dtype: dtype, blockBytes: B, memcpyGBps: gigabytesPerSecond(total, memcpyNanos),
            l1ToL2GBps: gigabytesPerSecond(total, l1ToL2), l2ToL1GBps: gigabytesPerSecond(total, l2ToL1),
            diskWriteGBps: gigabytesPerSecond(total, writeNanos), diskReadGBps: gigabytesPerSecond(total, readNanos),
            codec: codec, placement: placement)
    }

    /// Removes a disk tier directory this benchmark made (its segments, format and lock files, then the
    /// directory); a missing one is fine.
    static func removeStore(_ dir: String) throws(TierError) {
        try DiskBlockStore.removeSegments(in: dir)
        let io = SystemIO()
        try io.unlink(dir + "/LOCK")
        guard rmdir(dir) == 0 || errno == ENOENT else { throw .system(call: "rmdir \(dir)", errno: errno) }
    }

    /// Asks the kernel to drop the directory's files from the page cache (`posix_fadvise(DONTNEED)`
    /// after they were fsynced), so the read measurement hits the disk.
    static func dropFromPageCache(directory: String) {
        guard let names = try? SystemIO().listDirectory(directory) else { return }
        for n in names where n.hasSuffix(".kvlog") {
            let fd = open(directory + "/" + n, O_RDONLY)
            guard fd >= 0 else { continue }
            _ = fdatasync(fd)
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
            close(fd)
        }
    }
}
