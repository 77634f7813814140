import Foundation
import KVBench
import KVCache
import KVChunks
import KVPlan
import KVReferenceEngine
import KVTestSupport
import KVTiers

/// `kvcache blend --tiers`: the blend mode run again from a `TieredChunkStore` whose chunks were evicted
/// to host memory and disk with their real bytes, so that each comes back through the tiers or is
/// recomputed, as the `LoadingController` decides per chunk.
///
/// The tiered store's pool (`PagedKVPoolMemory`, the engine's own fp32 KV) holds one prompt's chunks,
/// the host tier about half of them and the disk (a temporary folder) the rest. Per sample: every chunk's
/// KV is copied from the blender's store into the tiered store (as computed, after the preamble) and
/// committed, then evicted (a cache under pressure): the first evicted pass on from host to disk. The
/// plan (`TieredChunkStore.plan`, HKVD) fetches each chunk back from the tier the controller picks, or
/// leaves it to be recomputed in full when loading would not pay; the blender executes it from the
/// tiered store. Checked per sample: every fetched variant's KV rows equal the rows stored (bit for bit),
/// and the logits against the device-only blend at the same ratio.
///
/// The controller's inputs: the recompute cost fitted to the full prefills measured so far (seconds per
/// token; or given, `--recompute-ms-per-token`) and the tiers' read bandwidths as the tier manager measures them (`TieredChunkStore.measuredTiers`:
/// a moving average of its own timed loads, seeded by its calibration at open), or for the disk the
/// bandwidth given (`--disk-gbps`, an override for experiments). Loads are synchronous and timed inside
/// the prefill. A loaded chunk's recompute budget is the controller's ratio where above `--ratio`.
///
/// Placement is deterministic: chunks are evicted in prompt order and the store waits for the tiers'
/// transfers before finding each chunk (`TieredChunkStore.settlesTransfers`), so which chunks sit on
/// host and on disk is the same every run; the measured bandwidths and recompute cost still vary.
final class BlendTiers {
    let pool: PagedKVPool
    let tiered: TieredChunkStore
    let directory: TempDirectory
    /// The disk bandwidth given (`--disk-gbps`), or nil: measured.
    let diskBandwidth: Double?
    let layers: Int
    var fittedSecondsPerToken: [Double] = []
    /// The recompute cost given (`--recompute-ms-per-token`), or nil: fitted.
    let givenSecondsPerToken: Double?
    /// Totals over the samples.
    var loadedFromHost = 0, loadedFromDisk = 0, recomputedChunks = 0, fetchedChunks = 0, mismatchedChunks = 0
    /// Fetched chunks whose recompute budget the controller's ratio raised above `--ratio`'s.
    var raisedBudgets = 0
    var maxLogitDifference: Float = 0

    /// A tiered store for chunks of at most `promptBlocks` blocks per prompt on `config`'s geometry.
    init(config: LlamaConfig, blockTokens: Int, promptBlocks: Int, diskGBps: Double?, recomputeMsPerToken: Double? = nil) throws {
        pool = PagedKVPool(config: config, blockTokens: blockTokens, capacityBlocks: promptBlocks)
        directory = TempDirectory("kvcache-blend-tiers")
        let layout = pool.geometry
        var tc = TierConfig(layout: layout, hostBlocks: max(1, (promptBlocks + 1) / 2),
                            disk: DiskStoreConfig(directory: directory.path, capacityBytes: 4 * promptBlocks * layout.bytesPerBlock + (1 << 20),
                                                  layout: layout))
        tc.workers = 1
        tc.spillWatermark = 1
        tc.calibrateAtStart = true
        tc.lockHostMemory = false
        let manager: KVTierManager
        do { manager = try KVTierManager(config: tc, device: PagedKVPoolMemory(pool: pool)) } catch { throw CLIError("tiers: \(error)") }
        do {
            tiered = try TieredChunkStore(store: try ChunkStore(capacityBlocks: promptBlocks, blockTokens: blockTokens), tiers: manager)
        } catch { throw CLIError("tiers: \(error)") }
        tiered.settlesTransfers = true  // the same chunks on host and on disk every run
        diskBandwidth = diskGBps.map { $0 * 1e9 }
        givenSecondsPerToken = recomputeMsPerToken.map { $0 * 1e-3 }
        layers = config.layers
    }

    deinit { tiered.tiers.close() }

    /// The best of three 64 MiB memcpys, in bytes per second.
    static func hostCopyBandwidth() -> Double {
        let bytes = 1 << 26
        let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { a.deallocate(); b.deallocate() }
        memset(a, 1, bytes); memset(b, 0, bytes)
        let clock = ContinuousClock()
        var best = Double.infinity
        for _ in 0 ..< 3 {
            let t0 = clock.now
            memcpy(b, a, bytes)
            let d = (clock.now - t0).components
            best = min(best, Double(d.seconds) + Double(d.attoseconds) * 1e-18)
        }
        return Double(bytes) / best
    }

    /// Whether rows `0 ..< tokens` of the blocks `a` of `poolA` equal those of `b` in `poolB`, every layer's
    /// K and V, bit for bit. O(tokens x layers x kvWidth).
    static func sameRows(_ poolA: PagedKVPool, _ a: [BlockID], _ poolB: PagedKVPool, _ b: [BlockID], tokens: Int) -> Bool {
        let bt = poolA.blockTokens, width = poolA.kvHeads * poolA.headDim, floats = bt * width
        for (i, (x, y)) in zip(a, b).enumerated() {
            let rows = min(bt, tokens - i * bt)
            let same: Bool = poolA.withBlockBytes(x) { (ra: UnsafeRawBufferPointer) -> Bool in
                poolB.withBlockBytes(y) { (rb: UnsafeRawBufferPointer) -> Bool in
                    (0 ..< 2 * poolA.layers).allSatisfy { m in
                        memcmp(ra.baseAddress! + m * floats * 4, rb.baseAddress! + m * floats * 4, rows * width * 4) == 0
                    }
                }
            }
            if !same { return false }
        }
        return true
    }

    /// The sample's chunks into the tiered store (copied from `blender`'s store, where `cache` put them)
    /// and out to the tiers again. O(chunk tokens x layers) plus the copies.
    func stage(_ keys: [ChunkKey], from blender: ChunkBlender, context: BlockKey) throws {
        var staged: [ChunkVariantID] = []
        for key in keys {
            guard let source = blender.store.find(key, context: context), let v = blender.store.variant(source) else {
                throw CLIError("internal: chunk not in the blender's store")
            }
            do {
                let (id, blocks) = try tiered.insert(key, tokens: v.tokens, computedAt: v.computedAt, context: v.context, contextImpact: v.contextImpact)
                if !staged.contains(id) {
                    pool.copyRows(from: blender.storePool, sourceTable: try blender.store.blocks(of: source), sourceStart: 0, to: blocks,
                                  targetStart: 0, count: v.tokens)
                    try tiered.commit(id)
                }
                staged.append(id)
            } catch { throw CLIError("tiers: \(error)") }
        }
        for (i, id) in staged.enumerated() where !staged[..<i].contains(id) && tiered.store.variant(id) != nil {  // in prompt order
            do { try tiered.evict(id) } catch { throw CLIError("tiers: \(error)") }
        }
        tiered.tiers.waitForTransfers()
    }

    /// The controller for this sample: the recompute cost given, else fitted to the full prefills so far.
    func controller(kvBytesPerToken: Int) throws -> LoadingController {
        let perToken = givenSecondsPerToken ?? Measure.median(of: fittedSecondsPerToken)
        do {
            return try LoadingController(cost: try RecomputeCost(secondsPerToken: perToken, secondsPerContextPair: 0), layers: layers,
                                         kvBytesPerToken: kvBytesPerToken)
        } catch { throw CLIError("loading controller: \(error)") }
    }

    /// The disk tier the controller is given: the override, or nil for the measured one.
    var diskTier: LoadingController.Tier? { diskBandwidth.map { .init(name: "disk", bytesPerSecond: $0) } }

    /// Counts one executed plan's spans and checks the fetched KV against the blender's store; `ratio` is
    /// the selection's.
    func check(_ plan: ChunkPrefillPlan, ratio: Double, against blender: ChunkBlender, context: BlockKey) throws {
        for span in plan.reused where span.tier != .device {
            if span.tier == .host { loadedFromHost += 1 } else { loadedFromDisk += 1 }
            fetchedChunks += 1
            if !span.exact, span.recomputeBudget > (try RecomputeSelection.budget(ratio: ratio, tokens: span.target.count)) { raisedBudgets += 1 }
            guard let source = blender.store.find(span.chunk, context: context) else { continue }
            let same = try Self.sameRows(pool, tiered.store.blocks(of: span.variant), blender.storePool, blender.store.blocks(of: source),
                                         tokens: span.target.count)
            if !same { mismatchedChunks += 1 }
        }
        recomputedChunks += plan.missingChunks
    }
}
