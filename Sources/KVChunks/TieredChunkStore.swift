import KVCache
import KVTiers

/// A chunk store whose device blocks spill to host memory and disk through the tiers (`KVTierManager`)
/// with their real bytes, and come back when a prompt reuses the chunk: the tier to load from is the
/// `LoadingController`'s choice among the tiers holding every block of the variant.
///
/// - Contract: the tier manager's device memory is the store's pool (`device.capacityBlocks` >= the pool's
///   blocks; block ids are shared). `insert` returns blocks for the engine to write, after the KV of any
///   variant it evicted has been copied to host (or, past the host, to disk); `commit` marks the written
///   blocks resident. `fetch` serves a chunk from the device, or loads it from host or disk into fresh
///   device blocks and returns it only when every block arrived intact (the disk store checks each
///   block's checksum and key): a variant with any failed block is removed and never served, and the
///   caller recomputes the chunk.
/// - Each block of a variant has a key of its own: the `ChunkKey` of the words (context, computedAt, block
///   index) under the chunk's key as root, so variants of one chunk never share block keys, and block i's
///   parent is block i - 1's key.
/// - Cost: `insert` and `fetch` are O(blocks) plus the copies; a load waits for its transfer. Allocates
///   per call (keys and metadata), not a hot path. Single-threaded, like the store.
public final class TieredChunkStore {
    public private(set) var store: ChunkStore
    public let tiers: KVTierManager
    /// Metadata of variants whose KV left the device, per chunk (the tiers hold the bytes).
    private var spilled: [ChunkKey: [ChunkStore.Variant]] = [:]
    /// Device variants whose KV the engine has written (`commit`) or a load brought back, by (chunk,
    /// context): only these are copied out when evicted (blocks never written hold no KV to keep).
    private var written: Set<WrittenVariant> = []
    private struct WrittenVariant: Hashable { var chunk: ChunkKey; var context: BlockKey }
    public private(set) var loadedVariants = 0
    public private(set) var failedLoads = 0
    /// Spilled variants not loaded because the controller found recomputing them cheaper.
    public private(set) var declinedLoads = 0

    /// Where `fetch` found a chunk.
    public enum Source: Sendable, Equatable { case device, host, disk }

    /// A chunk ready in device blocks, and the controller's decision when it was loaded.
    public struct Fetched: Sendable, Equatable {
        public var variant: ChunkVariantID
        public var source: Source
        public var decision: LoadingController.Decision?
    }

    /// - Throws: `.invalidArgument` when the tiers' device memory has fewer blocks than the store's pool.
    public init(store: ChunkStore, tiers: KVTierManager) throws(ChunkError) {
        guard tiers.device.capacityBlocks >= store.pool.capacity else {
            throw .invalidArgument("the tiers address \(tiers.device.capacityBlocks) device blocks, the store has \(store.pool.capacity)")
        }
        self.store = store
        self.tiers = tiers
    }

    /// The keys of the blocks of `v`, in token order. O(blocks).
    public func blockKeys(of v: ChunkStore.Variant) -> [BlockKey] {
        let n = (v.tokens + store.blockTokens - 1) / store.blockTokens
        return (0 ..< n).map { i in
            let words: [UInt32] = [v.context.lo, v.context.hi, UInt64(v.computedAt), UInt64(i)].flatMap { [UInt32(truncatingIfNeeded: $0), UInt32($0 >> 32)] }
            return words.withUnsafeBufferPointer { ChunkKey(root: v.chunk.bits, tokens: $0).bits }
        }
    }

    /// `ChunkStore.insert`, after which every variant the insert evicted has been handed to the tiers
    /// (its blocks copied to host before the engine may overwrite them). Call `commit` once the engine has
    /// written the returned blocks.
    /// - Throws: as `ChunkStore.insert`; nothing changes then.
    @discardableResult
    public func insert(_ chunk: ChunkKey, tokens: Int, computedAt: Int, context: BlockKey,
                       contextImpact: Float? = nil) throws(ChunkError) -> (ChunkVariantID, [BlockID]) {
        let (id, blocks) = try store.insert(chunk, tokens: tokens, computedAt: computedAt, context: context, contextImpact: contextImpact)
        spill(store.lastEvicted)
        return (id, blocks)
    }

    /// Holds `id` for a reader (not evicted or removed until `release`). O(1).
    public func acquire(_ id: ChunkVariantID) throws(ChunkError) { try store.acquire(id) }

    /// Ends a `fetch`'s hold on `id` (after the engine has read it). O(1).
    public func release(_ id: ChunkVariantID) throws(ChunkError) { try store.release(id) }

    /// The engine has written `id`'s KV: its blocks are device-resident for the tiers. O(blocks).
    public func commit(_ id: ChunkVariantID) throws(ChunkError) {
        guard let v = store.variant(id) else { throw .unknownVariant(id) }
        let keys = blockKeys(of: v)
        for (i, b) in try store.blocks(of: id).enumerated() { tiers.noteStored(block: b, key: keys[i], parent: i == 0 ? nil : keys[i - 1]) }
        written.insert(WrittenVariant(chunk: v.chunk, context: v.context))
    }

    private func spill(_ evicted: [(variant: ChunkStore.Variant, blocks: [BlockID])]) {
        guard !evicted.isEmpty else { return }
        for (v, blocks) in evicted where written.remove(WrittenVariant(chunk: v.chunk, context: v.context)) != nil {
            let keys = blockKeys(of: v)
            for (i, b) in blocks.enumerated() { tiers.willEvict(block: b, key: keys[i], parent: i == 0 ? nil : keys[i - 1]) }
            spilled[v.chunk, default: []].append(v)
        }
        tiers.waitForEvictionCopies()
    }

    /// Where the variant `v` of a spilled chunk can be loaded from: disk when any block is only there, host
    /// when all are on host, nil when a block is nowhere. O(blocks).
    private func location(of v: ChunkStore.Variant) -> Source? {
        var source = Source.host
        for key in blockKeys(of: v) {
            switch tiers.loadableTier(of: key) {
            case .host?: continue
            case .some: source = .disk
            case nil: return nil
            }
        }
        return source
    }

    /// The chunk `chunk` in device blocks, held for the caller (release with `store.release`): the device
    /// variant `ChunkStore.lookup` picks, else a spilled variant (the one computed after `context` first)
    /// loaded from the tier `controller` picks among `host` and `disk` (the tiers holding all of it, given
    /// cheapest first) for a prompt of `contextTokens` tokens. Nil when no tier holds it, when the
    /// controller finds recomputing it cheaper than loading (`Decision.load` false: nothing is loaded, the
    /// variant stays in its tier), or when its load failed (the variant is then removed: never served).
    /// Without a controller every whole variant is loaded.
    /// - Throws: `.insufficientBlocks` when held variants leave no room to load into; the controller's
    ///   `.invalidArgument`. Nothing is loaded then.
    public func fetch(_ chunk: ChunkKey, context: BlockKey, contextTokens: Int, controller: LoadingController?,
                      host: LoadingController.Tier, disk: LoadingController.Tier) throws(ChunkError) -> Fetched? {
        if let id = store.lookup(chunk, context: context) {
            try store.acquire(id)
            return Fetched(variant: id, source: .device, decision: nil)
        }
        guard var candidates = spilled[chunk] else { return nil }
        candidates.removeAll { location(of: $0) == nil }
        spilled[chunk] = candidates.isEmpty ? nil : candidates
        guard let v = candidates.first(where: { $0.context == context }) ?? candidates.first, let source = location(of: v) else { return nil }
        let tiersHolding = source == .host ? [host, disk] : [disk]
        let decision = try controller?.decide(reusedTokens: v.tokens, contextTokens: max(contextTokens, v.tokens), tiers: tiersHolding)
        if let decision, !decision.load {
            declinedLoads += 1
            return nil
        }
        let (id, blocks) = try store.insert(chunk, tokens: v.tokens, computedAt: v.computedAt, context: v.context, contextImpact: v.contextImpact)
        spill(store.lastEvicted)
        spilled[chunk]?.removeAll { $0.context == v.context }
        if spilled[chunk]?.isEmpty == true { spilled[chunk] = nil }
        let keys = blockKeys(of: v)
        let handle: TransferHandle
        do { handle = try tiers.load(keys: keys, first: 0, into: blocks) } catch {
            try! store.remove(id)  // just inserted, unheld
            throw .invalidArgument("the tiers refused the load: \(error)")
        }
        handle.wait()
        let failed = handle.failedBlocks
        guard failed.isEmpty, handle.loadedPrefixBlocks == blocks.count else {
            failedLoads += 1
            // The blocks that did arrive leave the device again (their keys are on host: nothing is copied);
            // the failed ones were never resident. The variant's bytes are never served.
            for (i, b) in blocks.enumerated() where !failed.contains(i) {
                tiers.willEvict(block: b, key: keys[i], parent: i == 0 ? nil : keys[i - 1])
            }
            try! store.remove(id)  // just inserted, unheld
            return nil
        }
        loadedVariants += 1
        written.insert(WrittenVariant(chunk: v.chunk, context: v.context))
        try store.acquire(id)
        // Host is never dearer than disk, so the controller's tier is where the tiers load from: `source`.
        return Fetched(variant: id, source: source, decision: decision)
    }

    /// The plan of `pieces` (as `ChunkPrefillPlan.build`) after every chunk not on the device but in a tier
    /// has been fetched back (`fetch`): its spans name the tier each chunk came from, and a chunk no tier
    /// could serve intact is a missing chunk (computed as fresh). The plan holds its variants; `release`
    /// them with `plan.release(from:)` on `store` through `release(plan:)`.
    /// - Throws: as `fetch` and `ChunkPrefillPlan.build`; the fetched chunks stay on the device then, unheld.
    public func plan(_ pieces: [PromptPiece], context: BlockKey, selection: TokenSelection, controller: LoadingController?,
                     host: LoadingController.Tier, disk: LoadingController.Tier) throws(ChunkError) -> ChunkPrefillPlan {
        let promptTokens = pieces.reduce(0) { $0 + max(0, $1.tokens) }
        var held: [ChunkVariantID] = []
        var sources: [ChunkKey: ChunkTier] = [:]
        defer { for id in held { try? store.release(id) } }
        // Hold the device's chunks first, so that loading the others cannot evict them.
        for piece in pieces {
            guard case let .chunk(key) = piece.kind, let id = store.find(key, context: context) else { continue }
            try store.acquire(id)
            held.append(id)
        }
        for piece in pieces {
            guard case let .chunk(key) = piece.kind, store.find(key, context: context) == nil,
                  let fetched = try fetch(key, context: context, contextTokens: promptTokens, controller: controller, host: host, disk: disk)
            else { continue }
            held.append(fetched.variant)
            sources[key] = fetched.source == .disk ? .disk : .host
        }
        var plan = try ChunkPrefillPlan.build(pieces, store: &store, context: context, selection: selection)
        for i in plan.reused.indices { plan.reused[i].tier = sources[plan.reused[i].chunk] ?? .device }
        return plan
    }

    /// The spilled variant `fetch` would load for `chunk` after `context` (when the device holds none),
    /// and the tier it would come from: nil when no tier holds one whole. Changes nothing. O(variants x
    /// blocks).
    public func spilledVariant(_ chunk: ChunkKey, context: BlockKey) -> (variant: ChunkStore.Variant, source: Source)? {
        guard let candidates = spilled[chunk]?.filter({ location(of: $0) != nil }),
              let v = candidates.first(where: { $0.context == context }) ?? candidates.first, let source = location(of: v) else { return nil }
        return (v, source)
    }

    /// Variants whose KV left the device and that a tier may still hold (some may have been dropped
    /// there since: `fetch` finds out). O(chunks).
    public var spilledVariants: Int { spilled.values.reduce(0) { $0 + $1.count } }

    /// Takes the unheld variant `id` off the device as an eviction does: its KV goes to the tiers (host,
    /// or past it disk) and `fetch` can bring it back. O(blocks) plus the copies.
    /// - Throws: `.unknownVariant`, `.variantHeld`; nothing changes then.
    public func evict(_ id: ChunkVariantID) throws(ChunkError) {
        guard let v = store.variant(id) else { throw .unknownVariant(id) }
        let blocks = try store.blocks(of: id)
        try store.remove(id)
        spill([(v, blocks)])
    }

    /// Ends `plan`'s hold on its variants (after the engine has read them).
    public func release(plan: ChunkPrefillPlan) throws(ChunkError) { try plan.release(from: &store) }
}
