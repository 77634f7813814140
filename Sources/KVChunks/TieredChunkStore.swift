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
/// - Bandwidths: unless the caller passes its own, the controller is fed the tier manager's measured
///   estimates (`measuredTiers`): per tier, a moving average (weight 0.2) of the bandwidth of every load
///   the tiers complete, each timed with `KVClock`, seeded at open by the tier manager's calibration
///   (`TierConfig.calibrateAtStart`: one block's host copy and codec decode) or by the configured rows.
///   A server wants exactly this: the estimate follows the tier's real speed under load without a probe
///   of its own. A tier whose every load the controller declines keeps its last estimate.
/// - Recompute budgets: a chunk `plan` loads under a controller is budgeted at max(selection's ratio, the
///   controller's ratio for it): loading time pays for that recompute. Chunks in the pool keep the
///   selection's ratio. With `settlesTransfers`, where each chunk is found is the same run to run.
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
    /// Whether `fetch` and `plan` wait for the tiers' transfers in flight (`KVTierManager.waitForTransfers`)
    /// before finding where a chunk is, so that which tier serves it does not depend on the timing of the
    /// tiers' background copies (a host block on its way to disk): for runs that must reproduce exactly.
    /// Default false: a server does not stall a prompt on unrelated copies.
    public var settlesTransfers = false

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

    /// The read bandwidths of host and disk into the device as the tier manager estimates them now: per
    /// block, the measured moving average of its loads plus the per-block latency, a disk block's through
    /// host as well (`LoadOrRecompute.loadSeconds`), as bytes per second. A tier without a row (no disk
    /// store) reports the least positive bandwidth: the controller never loads from it. O(1).
    public var measuredTiers: (host: LoadingController.Tier, disk: LoadingController.Tier) {
        let model = tiers.loadOrRecompute, bytes = tiers.layout.bytesPerBlock
        func tier(_ name: String, _ t: Tier) -> LoadingController.Tier {
            let bandwidth = Double(bytes) / model.loadSeconds(tier: t, bytes: bytes)
            return .init(name: name, bytesPerSecond: bandwidth.isFinite && bandwidth > 0 ? bandwidth : .leastNormalMagnitude)
        }
        return (tier("host", .host), tier("disk", tiers.store?.tier ?? .disk))
    }

    /// What `fetch` would do for `chunk` now, changing nothing: nil when the device holds a variant or
    /// no tier holds one whole; else the spilled variant it would load, its tier, and the controller's
    /// decision (nil without a controller: loaded). `host` and `disk` nil: `measuredTiers`.
    /// O(variants x blocks).
    /// - Throws: the controller's `.invalidArgument`.
    public func loadDecision(_ chunk: ChunkKey, context: BlockKey, contextTokens: Int, controller: LoadingController?,
                             host: LoadingController.Tier? = nil, disk: LoadingController.Tier? = nil) throws(ChunkError)
        -> (variant: ChunkStore.Variant, source: Source, decision: LoadingController.Decision?)? {
        guard store.find(chunk, context: context) == nil, let (v, source) = spilledVariant(chunk, context: context) else { return nil }
        guard let controller else { return (v, source, nil) }
        let measured = host == nil || disk == nil ? measuredTiers : nil
        let h = host ?? measured!.host, d = disk ?? measured!.disk   // measured is set when either is nil
        let decision = try controller.decide(reusedTokens: v.tokens, contextTokens: max(contextTokens, v.tokens),
                                             tiers: source == .host ? [h, d] : [d])
        return (v, source, decision)
    }

    /// The chunk `chunk` in device blocks, held for the caller (release with `store.release`): the device
    /// variant `ChunkStore.lookup` picks, else a spilled variant (the one computed after `context` first)
    /// loaded from the tier `controller` picks among `host` and `disk` (the tiers holding all of it, given
    /// cheapest first; nil: `measuredTiers`) for a prompt of `contextTokens` tokens. Nil when no tier holds it, when the
    /// controller finds recomputing it cheaper than loading (`Decision.load` false: nothing is loaded, the
    /// variant stays in its tier), or when its load failed (the variant is then removed: never served).
    /// Without a controller every whole variant is loaded.
    /// - Throws: `.insufficientBlocks` when held variants leave no room to load into; the controller's
    ///   `.invalidArgument`. Nothing is loaded then.
    public func fetch(_ chunk: ChunkKey, context: BlockKey, contextTokens: Int, controller: LoadingController?,
                      host: LoadingController.Tier? = nil, disk: LoadingController.Tier? = nil) throws(ChunkError) -> Fetched? {
        if let id = store.lookup(chunk, context: context) {
            try store.acquire(id)
            return Fetched(variant: id, source: .device, decision: nil)
        }
        guard var candidates = spilled[chunk] else { return nil }
        if settlesTransfers { tiers.waitForTransfers() }
        candidates.removeAll { location(of: $0) == nil }
        spilled[chunk] = candidates.isEmpty ? nil : candidates
        guard let (v, source, decision) = try loadDecision(chunk, context: context, contextTokens: contextTokens, controller: controller,
                                                           host: host, disk: disk) else { return nil }
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

    /// What a plan did with one chunk segment of the prompt.
    public struct ChunkLoad: Sendable, Equatable {
        public enum Action: Sendable, Equatable {
            /// The variant was in the device pool.
            case device
            /// Loaded from this tier for the plan.
            case loaded(Source)
            /// Left in this tier: the controller found recomputing it cheaper (`Decision.load` false).
            case recompute(Source)
            /// No tier held a whole variant, or its load failed: computed as fresh.
            case missing
        }
        /// Index of the segment in the prompt's pieces.
        public var piece: Int
        public var chunk: ChunkKey
        public var action: Action
        /// The controller's decision for a chunk a tier held (nil on the device, without a controller, or
        /// when missing).
        public var decision: LoadingController.Decision?
    }

    /// The plan of `pieces` (as `ChunkPrefillPlan.build`) after every chunk not on the device but in a tier
    /// has been fetched back (`fetch`) or left to be recomputed as `controller` decides: its spans name the
    /// tier each chunk came from, and a chunk no tier could serve intact, or one the controller declined, is
    /// a missing chunk (computed as fresh). Every chunk is decided with the same bandwidths: `host` and
    /// `disk`, or where nil `measuredTiers` read once before the first load. The plan holds its variants;
    /// `release` them with `release(plan:)`.
    ///
    /// Recompute budgets (CacheBlend's loading controller): the time a chunk's load takes lets more of its
    /// tokens be recomputed at no cost, so a span of a chunk loaded for this plan under a controller is
    /// budgeted at max(selection's ratio, its `Decision.ratio`) (`ChunkPrefillPlan.draft`'s
    /// `minimumRatios`; not under `.none`, and 0 for an exact span). A chunk already in the pool, one
    /// loaded without a controller, and every span of a plain store's plan keep the selection's ratio.
    /// - Throws: as `fetch` and `ChunkPrefillPlan.build`; the fetched chunks stay on the device then, unheld.
    public func plan(_ pieces: [PromptPiece], context: BlockKey, selection: TokenSelection, controller: LoadingController?,
                     host: LoadingController.Tier? = nil, disk: LoadingController.Tier? = nil) throws(ChunkError) -> ChunkPrefillPlan {
        var loads: [ChunkLoad] = []
        return try plan(pieces, context: context, selection: selection, controller: controller, host: host, disk: disk, loads: &loads)
    }

    /// `plan`, also writing into `loads` (emptied first) one record per chunk segment, in prompt order.
    public func plan(_ pieces: [PromptPiece], context: BlockKey, selection: TokenSelection, controller: LoadingController?,
                     host: LoadingController.Tier?, disk: LoadingController.Tier?, loads: inout [ChunkLoad]) throws(ChunkError) -> ChunkPrefillPlan {
        let promptTokens = pieces.reduce(0) { $0 + max(0, $1.tokens) }
        let measured = controller != nil && (host == nil || disk == nil) ? measuredTiers : nil
        let host = host ?? measured?.host, disk = disk ?? measured?.disk
        var held: [ChunkVariantID] = []
        var fetchedFrom: [ChunkKey: Source] = [:]
        var loadedRatios: [ChunkKey: Double] = [:]
        loads.removeAll(keepingCapacity: true)
        defer { for id in held { try? store.release(id) } }
        // Hold the device's chunks first, so that loading the others cannot evict them.
        for (i, piece) in pieces.enumerated() {
            guard case let .chunk(key) = piece.kind else { continue }
            loads.append(ChunkLoad(piece: i, chunk: key, action: .missing, decision: nil))
            guard let id = store.find(key, context: context) else { continue }
            try store.acquire(id)
            held.append(id)
            loads[loads.count - 1].action = .device
        }
        for l in loads.indices where loads[l].action == .missing {
            let key = loads[l].chunk
            if store.find(key, context: context) != nil {  // a repeat of a chunk loaded for this plan
                loads[l].action = fetchedFrom[key].map { .loaded($0) } ?? .device
                continue
            }
            if settlesTransfers { tiers.waitForTransfers() }
            guard let (_, source, decision) = try loadDecision(key, context: context, contextTokens: promptTokens, controller: controller,
                                                               host: host, disk: disk) else { continue }
            loads[l].decision = decision
            if let decision, !decision.load { loads[l].action = .recompute(source) }
            guard let fetched = try fetch(key, context: context, contextTokens: promptTokens, controller: controller, host: host, disk: disk)
            else { continue }
            held.append(fetched.variant)
            fetchedFrom[key] = fetched.source
            if let ratio = fetched.decision?.ratio { loadedRatios[key] = ratio }
            loads[l].action = .loaded(fetched.source)
        }
        var plan = try ChunkPrefillPlan.build(pieces, store: &store, context: context, selection: selection, minimumRatios: loadedRatios)
        for i in plan.reused.indices {
            plan.reused[i].tier = fetchedFrom[plan.reused[i].chunk].map { $0 == .disk ? ChunkTier.disk : .host } ?? .device
        }
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
