import CKVCache
import KVCache
import KVCacheC
import KVChunks
import KVPlan

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
