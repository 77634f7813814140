import CKVCache
import KVCache
import KVCacheC
import KVChunks
import KVPlan
import KVTiers

/// RoPE re-rotation of a chunk's cached keys (PIE) and, on the same bytes, `memcpy`: what moving a reused
/// chunk to a new position costs next to merely copying its keys. Keys are `tokens x kvHeads` vectors of
/// `headDim` fp32 per layer, all layers in one buffer (the keys of a chunk across a model); a run rotates
/// them in place by +delta, the next by -delta, so the values stay bounded. Units are bytes.
public final class RopeRotationWorkload: Workload {
    public let units: Int
    let rotator: RopeRotator
    let vectors: Int
    let headDim: Int
    let keys: UnsafeMutablePointer<Float>
    var delta = 1_000

    public init(layout: RopeSpec.Layout, tokens: Int = 512, layers: Int = 8, kvHeads: Int = 8, headDim: Int = 128) throws {
        rotator = RopeRotator(spec: try RopeSpec(base: 500_000, dims: headDim, headDim: headDim, layout: layout))
        vectors = tokens * layers * kvHeads
        self.headDim = headDim
        units = vectors * headDim * 4
        keys = .allocate(capacity: vectors * headDim)
        var rng = SplitMix64(seed: 11)
        for i in 0 ..< vectors * headDim { keys[i] = Float(Int(rng.next() % 2001) - 1000) / 1000 }
    }
    deinit { keys.deallocate() }

    public func prepare() {}
    public func run() {
        rotator.rotate(keys, count: vectors, stride: headDim, by: delta)
        delta = -delta
    }
}

/// `memcpy` of `bytes` bytes between two buffers; units are bytes.
public final class CopyWorkload: Workload {
    public let units: Int
    let source: UnsafeMutableRawPointer
    let target: UnsafeMutableRawPointer

    public init(bytes: Int) {
        units = bytes
        source = .allocate(byteCount: bytes, alignment: 64)
        target = .allocate(byteCount: bytes, alignment: 64)
        source.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
        target.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    }
    deinit { source.deallocate(); target.deallocate() }

    public func prepare() {}
    public func run() { target.copyMemory(from: source, byteCount: units) }
}

/// Re-rotation against `memcpy` of the same bytes, measured in one run (interleaved repetitions).
public struct RopeRotationFigures: Sendable {
    public var layout: RopeSpec.Layout
    public var bytes: Int
    /// Bytes of keys re-rotated per second (in place).
    public var rotateBytesPerSecond: Double
    /// Bytes copied per second by `memcpy` (source to a second buffer).
    public var copyBytesPerSecond: Double
    /// rotate / copy throughput: 1 means re-rotating costs what copying costs.
    public var ratio: Double { rotateBytesPerSecond / copyBytesPerSecond }

    /// Medians of `repetitions` runs of each workload, alternating between the two so that both see the
    /// same machine load.
    public static func measure(layout: RopeSpec.Layout, tokens: Int = 512, repetitions: Int = 15) throws -> RopeRotationFigures {
        let rotate = try RopeRotationWorkload(layout: layout, tokens: tokens)
        let copy = CopyWorkload(bytes: rotate.units)
        rotate.run(); copy.run()  // touch every page once
        var r: [Double] = [], c: [Double] = []
        for _ in 0 ..< repetitions {
            r.append(try Measure.median(repetitions: 1) { rotate.run() })
            c.append(try Measure.median(repetitions: 1) { copy.run() })
        }
        r.sort(); c.sort()
        let bytes = Double(rotate.units)
        return RopeRotationFigures(layout: layout, bytes: rotate.units, rotateBytesPerSecond: bytes / r[r.count / 2],
                                   copyBytesPerSecond: bytes / c[c.count / 2])
    }
}

/// A chunk store holding `chunks` chunks of `chunkTokens` tokens (one variant each), and their keys in a
/// shuffled order: the state the chunk lookup and plan workloads share.
struct ChunkStoreFixture {
    var store: ChunkStore
    let keys: [ChunkKey]
    let root: BlockKey

    init(chunks: Int, chunkTokens: Int, blockTokens: Int = 16) throws {
        let root = BlockHasher.rootKey(namespace: "bench")
        self.root = root
        let blocksPerChunk = (chunkTokens + blockTokens - 1) / blockTokens
        store = try ChunkStore(capacityBlocks: chunks * blocksPerChunk, blockTokens: blockTokens)
        var rng = SplitMix64(seed: 5)
        var keys: [ChunkKey] = []
        for c in 0 ..< chunks {
            let tokens = (0 ..< chunkTokens).map { UInt32(c * chunkTokens + $0) }
            let key = tokens.withUnsafeBufferPointer { ChunkKey(root: root, tokens: $0) }
            try store.insert(key, tokens: chunkTokens, computedAt: 0, context: root)
            keys.append(key)
        }
        for i in stride(from: keys.count - 1, to: 0, by: -1) { keys.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        self.keys = keys
    }
}

/// `ChunkStore.lookup` of every stored chunk once, in a shuffled order (each a hit, marked used): one hash
/// probe and a walk over the chunk's variants. Units are lookups. Allocates nothing.
public final class ChunkLookupWorkload: Workload {
    public let units: Int
    var fixture: ChunkStoreFixture
    public private(set) var found = 0

    public init(chunks: Int = 4_096, chunkTokens: Int = 256) throws {
        fixture = try ChunkStoreFixture(chunks: chunks, chunkTokens: chunkTokens)
        units = chunks
    }

    public func prepare() {}
    public func run() {
        var hits = 0
        for key in fixture.keys where fixture.store.lookup(key, context: fixture.root) != nil { hits += 1 }
        found = hits
    }
}

/// Plans of prompts of `chunksPerPrompt` reused chunks between fresh pieces under HKVD at 0.15: the Swift
/// `ChunkPrefillPlan.draft` into one reused plan, `acquire`, `release` (`throughCAPI` false), or
/// `kvcache_chunks_plan` and `kvcache_chunks_commit` on a handle with caller buffers (true). `prompts`
/// prompts per run, each naming the next chunks of the shuffled keys. Units are planned chunks. Allocates
/// nothing once the plan's arrays (or the handle's scratch) have grown.
public final class ChunkPlanWorkload: Workload {
    public let units: Int
    let throughCAPI: Bool
    let chunksPerPrompt: Int
    let prompts: Int
    let chunkTokens: Int
    var fixture: ChunkStoreFixture
    var plan = ChunkPrefillPlan()
    var pieces: [[PromptPiece]] = []
    var segments: [[kvcache_prompt_segment]] = []
    var handle: OpaquePointer?
    var spans: [kvcache_reused_span]
    var recompute: [Int64]
    var fresh: [kvcache_token_range]

    public init(throughCAPI: Bool, chunksPerPrompt: Int = 8, prompts: Int = 256, chunks: Int = 4_096, chunkTokens: Int = 256) throws {
        self.throughCAPI = throughCAPI
        self.chunksPerPrompt = chunksPerPrompt
        self.prompts = prompts
        self.chunkTokens = chunkTokens
        units = chunksPerPrompt * prompts
        fixture = try ChunkStoreFixture(chunks: chunks, chunkTokens: chunkTokens)
        spans = Array(repeating: kvcache_reused_span(), count: 2 * chunksPerPrompt + 2)
        recompute = Array(repeating: 0, count: chunksPerPrompt * chunkTokens)
        fresh = Array(repeating: kvcache_token_range(), count: 2 * chunksPerPrompt + 2)
        for p in 0 ..< prompts {
            var pi: [PromptPiece] = [PromptPiece(.cachedPrefix, tokens: 64)]
            var seg = [kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_CACHED_PREFIX.rawValue), tokens: 64, chunk: kvcache_key())]
            for c in 0 ..< chunksPerPrompt {
                let key = fixture.keys[(p * chunksPerPrompt + c) % fixture.keys.count]
                pi.append(PromptPiece(.chunk(key), tokens: chunkTokens))
                seg.append(kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_CHUNK.rawValue), tokens: Int64(chunkTokens),
                                                  chunk: kvcache_key(lo: key.bits.lo, hi: key.bits.hi)))
            }
            pi.append(PromptPiece(.fresh, tokens: 32))
            seg.append(kvcache_prompt_segment(kind: Int32(KVCACHE_SEGMENT_FRESH.rawValue), tokens: 32, chunk: kvcache_key()))
            pieces.append(pi)
            segments.append(seg)
        }
        if throughCAPI {
            var out: OpaquePointer?
            guard kvcacheChunksCreateImpl(Int64(chunks * ((chunkTokens + 15) / 16)), 16, 4, "bench", &out) == 0, let out else {
                throw TraceControlPlane.CallFailed(description: "kvcache_chunks_create failed")
            }
            handle = out
            for key in fixture.keys {
                var variant: UInt64 = 0, n = 0
                var blocks = [kvcache_block_id](repeating: 0, count: (chunkTokens + 15) / 16)
                guard kvcacheChunksInsertImpl(out, kvcache_key(lo: key.bits.lo, hi: key.bits.hi), Int64(chunkTokens), 0,
                                              kvcache_key(lo: fixture.root.lo, hi: fixture.root.hi), .nan, &variant, &blocks, blocks.count, &n) == 0 else {
                    throw TraceControlPlane.CallFailed(description: "kvcache_chunks_insert failed")
                }
            }
        }
    }
    deinit { if let handle { _ = kvcacheChunksDestroyImpl(handle) } }

    public func prepare() {}
    public func run() throws {
        let context = fixture.root
        if let handle {
            let ctx = kvcache_key(lo: context.lo, hi: context.hi)
            var summary = kvcache_chunk_plan()
            for p in 0 ..< prompts {
                let status = segments[p].withUnsafeBufferPointer { seg in
                    kvcacheChunksPlanImpl(handle, seg.baseAddress, seg.count, ctx, Int32(KVCACHE_SELECT_HKVD.rawValue), 0.15, 0,
                                          &spans, spans.count, &recompute, recompute.count, &fresh, fresh.count, &summary)
                }
                guard status == 0, kvcacheChunksCommitImpl(handle, summary.plan_id) == 0 else { throw TraceControlPlane.CallFailed(description: "kvcache_chunks_plan failed") }
            }
        } else {
            for p in 0 ..< prompts {
                try plan.draft(pieces[p], store: fixture.store, context: context, selection: .highDeviation(ratio: 0.15))
                plan.acquire(in: &fixture.store)
                try plan.release(from: &fixture.store)
            }
        }
    }
}

/// Chunk lookup and plan building, in ns per chunk (medians).
public struct ChunkPlanFigures: Sendable {
    public var lookupNanosPerChunk: Double
    public var planNanosPerChunk: Double
    public var planCAPINanosPerChunk: Double

    public static func measure(repetitions: Int = 15) throws -> ChunkPlanFigures {
        let lookup = try ChunkLookupWorkload()
        let plan = try ChunkPlanWorkload(throughCAPI: false)
        let capi = try ChunkPlanWorkload(throughCAPI: true)
        lookup.run(); try plan.run(); try capi.run()  // grow every array once
        return ChunkPlanFigures(lookupNanosPerChunk: try lookup.medianSecondsPerUnit(repetitions: repetitions) * 1e9,
                                planNanosPerChunk: try plan.medianSecondsPerUnit(repetitions: repetitions) * 1e9,
                                planCAPINanosPerChunk: try capi.medianSecondsPerUnit(repetitions: repetitions) * 1e9)
    }
}

/// Chunks spilled from the device to host memory and disk with their real bytes and fetched back through
/// `TieredChunkStore` (the blend engine's geometry: SmolLM2-135M, 30 layers x 3 KV heads x 64 dims, fp16,
/// 16-token blocks; 256-token chunks of 5.9 MB): `chunks` chunks through a device of `deviceChunks` and a
/// host of `hostChunks`, so the oldest reach disk; then every chunk fetched back once, newest first. Each
/// fetch is timed alone (load and checks; the evictions it causes included) and its bytes compared with
/// what was written. Measured, not modelled.
public struct ChunkFetchFigures: Sendable {
    public var chunkBytes: Int
    /// Fetches served from each tier, and their median GB/s (chunk bytes / fetch seconds; 0 when none).
    public var fromDevice = 0, fromHost = 0, fromDisk = 0, missing = 0
    public var hostGBps = 0.0, diskGBps = 0.0
    /// Fetched chunks whose bytes differ from those written (must be 0).
    public var mismatches = 0

    public static func measure(directory: String, chunks: Int = 24, deviceChunks: Int = 8, hostChunks: Int = 8,
                               chunkTokens: Int = 256) throws -> ChunkFetchFigures {
        let layout = try KVGeometry(layers: 30, kvHeads: 3, headDim: 64, dtype: .fp16, blockTokens: 16)
        let blocksPerChunk = (chunkTokens + 15) / 16
        var config = TierConfig(layout: layout, hostBlocks: hostChunks * blocksPerChunk,
                                disk: DiskStoreConfig(directory: directory, capacityBytes: (chunks + 4) * blocksPerChunk * layout.bytesPerBlock * 2,
                                                      layout: layout))
        config.calibrateAtStart = false
        config.lockHostMemory = false
        config.spillWatermark = 1
        let device = try HostDeviceMemory(layout: layout, capacityBlocks: deviceChunks * blocksPerChunk)
        let tiers = try KVTierManager(config: config, device: device)
        defer { tiers.close() }
        let tiered = try TieredChunkStore(store: try ChunkStore(capacityBlocks: deviceChunks * blocksPerChunk, blockTokens: 16), tiers: tiers)
        let root = BlockHasher.rootKey(namespace: "bench-fetch")
        let keys = (0 ..< chunks).map { c in ChunkKey(tokens: (0 ..< chunkTokens).map { UInt32(c * chunkTokens + $0) }, namespace: "bench-fetch") }
        func fill(_ c: Int, _ b: Int, _ dst: UnsafeMutableRawBufferPointer) {
            var rng = SplitMix64(seed: UInt64(c * 4096 + b + 1))
            let words = dst.bindMemory(to: UInt64.self)
            for i in words.indices { words[i] = rng.next() }
        }
        func same(_ c: Int, _ b: Int, _ got: UnsafeMutableRawBufferPointer) -> Bool {
            var rng = SplitMix64(seed: UInt64(c * 4096 + b + 1))
            let words = got.bindMemory(to: UInt64.self)
            return words.allSatisfy { $0 == rng.next() }
        }
        for c in 0 ..< chunks {
            let (id, blocks) = try tiered.insert(keys[c], tokens: chunkTokens, computedAt: 0, context: root)
            for (b, block) in blocks.enumerated() { device.withBlock(block) { fill(c, b, $0) } }
            try tiered.commit(id)
        }
        tiers.waitForTransfers()
        let controller = try LoadingController(cost: try RecomputeCost(secondsPerToken: 4.9e-3, secondsPerContextPair: 0), layers: 30,
                                               kvBytesPerToken: layout.bytesPerBlock / 16)
        var figures = ChunkFetchFigures(chunkBytes: blocksPerChunk * layout.bytesPerBlock)
        var host: [Double] = [], disk: [Double] = []
        for c in (0 ..< chunks).reversed() {
            let start = KVClock.monotonicNanos()
            let fetched = try tiered.fetch(keys[c], context: root, contextTokens: 4 * chunkTokens, controller: controller,
                                           host: .init(name: "host", bytesPerSecond: 20e9), disk: .init(name: "disk", bytesPerSecond: 2e9))
            let seconds = KVClock.seconds(from: start, to: KVClock.monotonicNanos())
            guard let fetched else { figures.missing += 1; continue }
            switch fetched.source {
            case .device: figures.fromDevice += 1
            case .host: figures.fromHost += 1; host.append(seconds)
            case .disk: figures.fromDisk += 1; disk.append(seconds)
            }
            let intact = try tiered.store.blocks(of: fetched.variant).enumerated().allSatisfy { b, block in
                device.withBlock(block) { same(c, b, $0) } ?? false
            }
            if !intact { figures.mismatches += 1 }
            try tiered.release(fetched.variant)
        }
        func gbps(_ s: [Double]) -> Double { s.isEmpty ? 0 : Double(figures.chunkBytes) / Measure.median(of: s) / 1e9 }
        figures.hostGBps = gbps(host)
        figures.diskGBps = gbps(disk)
        return figures
    }
}
