import CKVCache
import KVCache
import KVChunks
import KVTiers

// The chunk store and the engine-neutral prefill plan (kvcache_chunks_*): one `ChunkStore` behind an
// opaque handle, through the same `withHandle` boundary as the cache's calls (NULL handle, NULL pointers
// and every refusal become a status and the thread's last error; nothing is changed by a refused call;
// no input traps).

/// What a `kvcache_chunks_t *` points to: the store (plain, or tiered over a tier manager and the
/// library's device pool or the engine's copy callbacks), the root chunk keys are computed under, the scratch one plan is drafted into,
/// and the open plans with the variants each holds.
///
/// Open plans live in reusable slots (their variant lists keep their capacity), named by
/// `generation << 32 | slot` with generations from 1, so an id is never 0 and a committed plan's id never
/// names a later plan. Drafting reuses `pieces` and `scratch`: once they have grown to the largest prompt,
/// planning and committing allocate nothing (`ChunkPrefillPlan.draft`). Single-threaded.
final class ChunksHandle {
    private var plain: ChunkStore
    /// The tiered store (`kvcache_chunks_create_tiered`), or nil; its device pool when the library holds
    /// it (nil with the engine's copy callbacks), and the copies handed to the engine's callbacks.
    let tiered: TieredChunkStore?
    let device: HostDeviceMemory?
    let copies: PendingCopies?
    let root: BlockKey
    var pieces: [PromptPiece] = []
    var scratch = ChunkPrefillPlan()
    var planVariants: [[ChunkVariantID]] = []
    /// Per slot, what a tiered plan did with each chunk segment (empty for a plain store's plans).
    var planLoads: [[TieredChunkStore.ChunkLoad]] = []
    /// The tiered plan's records, filled by `TieredChunkStore.plan`, before `open` keeps them.
    var loads: [TieredChunkStore.ChunkLoad] = []
    /// The loading controller of a tiered store's plans (`kvcache_chunks_set_loading_controller`) and the
    /// bandwidths given with it (nil: the tiers' measured estimate).
    var controller: LoadingController?
    var givenHost: LoadingController.Tier?
    var givenDisk: LoadingController.Tier?
    var planGenerations: [UInt32] = []
    var planOpen: [Bool] = []
    var freePlans: [Int32] = []
    var openPlans = 0

    init(_ store: ChunkStore, root: BlockKey) { plain = store; tiered = nil; device = nil; copies = nil; self.root = root }

    init(tiered: TieredChunkStore, device: HostDeviceMemory?, copies: PendingCopies, root: BlockKey) {
        plain = tiered.store; self.tiered = tiered; self.device = device; self.copies = copies; self.root = root
    }

    /// The store as it is now (read only: the changes go through the calls below, which spill and load
    /// for a tiered store). O(1), no allocation.
    var store: ChunkStore { tiered?.store ?? plain }

    /// `ChunkStore.insert`, or `TieredChunkStore.insert` (the evicted variants' KV copied to host first).
    func insert(_ chunk: ChunkKey, tokens: Int, computedAt: Int, context: BlockKey,
                contextImpact: Float?) throws(ChunkError) -> (ChunkVariantID, [BlockID]) {
        if let tiered { return try tiered.insert(chunk, tokens: tokens, computedAt: computedAt, context: context, contextImpact: contextImpact) }
        return try plain.insert(chunk, tokens: tokens, computedAt: computedAt, context: context, contextImpact: contextImpact)
    }

    /// `ChunkStore.remove`, or on a tiered store `TieredChunkStore.evict` (the KV moves to host).
    func remove(_ id: ChunkVariantID) throws(ChunkError) {
        if let tiered { try tiered.evict(id) } else { try plain.remove(id) }
    }

    func release(_ id: ChunkVariantID) throws(ChunkError) {
        if let tiered { try tiered.release(id) } else { try plain.release(id) }
    }

    /// The bandwidths one tiered plan decides with: those given, else the tiers' estimates read now
    /// (nil without a controller). O(1).
    func planTiers(_ tiered: TieredChunkStore) -> (host: LoadingController.Tier?, disk: LoadingController.Tier?) {
        guard controller != nil else { return (nil, nil) }
        let measured = givenHost == nil || givenDisk == nil ? tiered.measuredTiers : nil
        return (givenHost ?? measured?.host, givenDisk ?? measured?.disk)
    }

    /// Holds the scratch plan's variants (plain store: a tiered plan holds them as it is built).
    func acquireScratch() { scratch.acquire(in: &plain) }

    /// The slot of the open plan `id`, or nil. O(1).
    func openSlot(_ id: UInt64) -> Int? {
        let slot = Int(UInt32(truncatingIfNeeded: id)), generation = UInt32(id >> 32)
        guard slot < planOpen.count, planOpen[slot], planGenerations[slot] == generation else { return nil }
        return slot
    }

    /// Records the scratch plan's variants as a new open plan and returns its id. O(spans); allocates
    /// only when no slot is free or a slot's list must grow.
    func open() -> UInt64 {
        let slot: Int
        if let free = freePlans.popLast() {
            slot = Int(free)
        } else {
            slot = planOpen.count
            planVariants.append([]); planLoads.append([]); planGenerations.append(0); planOpen.append(false)
        }
        planGenerations[slot] &+= 1
        if planGenerations[slot] == 0 { planGenerations[slot] = 1 }
        planOpen[slot] = true
        planVariants[slot].removeAll(keepingCapacity: true)
        for span in scratch.reused { planVariants[slot].append(span.variant) }
        planLoads[slot].removeAll(keepingCapacity: true)
        if tiered != nil { planLoads[slot].append(contentsOf: loads) }
        openPlans += 1
        return UInt64(planGenerations[slot]) << 32 | UInt64(slot)
    }

    /// Ends the open plan in `slot`: releases its variants. O(spans).
    func close(_ slot: Int) {
        for v in planVariants[slot] { try! release(v) }  // held by this plan since `open`
        planVariants[slot].removeAll(keepingCapacity: true)
        planLoads[slot].removeAll(keepingCapacity: true)
        planOpen[slot] = false
        freePlans.append(Int32(slot))
        openPlans -= 1
    }

    /// The store's invariants, and that each live variant is held exactly as often as the open plans
    /// name it. O(slots + blocks + spans).
    func validate() throws(CAPIError) {
        do { try store.validate() } catch { throw .invariantViolation(error.description) }
        if let tiered {
            do throws(InvariantViolation) { try tiered.tiers.validate() } catch { throw .invariantViolation(error.description) }
        }
        var holds: [ChunkVariantID: Int] = [:]
        for slot in planOpen.indices where planOpen[slot] {
            for v in planVariants[slot] { holds[v, default: 0] += 1 }
        }
        for (v, n) in holds where store.holders(of: v) != n {
            throw .invariantViolation("variant \(v.raw) is held \(store.holders(of: v)) times, open plans name it \(n) times")
        }
        guard openPlans == planOpen.filter({ $0 }).count, freePlans.count + openPlans == planOpen.count else {
            throw .invariantViolation("open plan count \(openPlans) does not match the slots")
        }
    }
}

extension CAPIError {
    /// A refusal of the chunk store, as static text where the text would otherwise allocate (the store's
    /// error changed nothing).
    static func chunks(_ e: ChunkError) -> CAPIError {
        switch e {
        case .unknownVariant: .invalidArgument("unknown chunk variant (never stored, or evicted or removed since)")
        case .variantHeld: .cache(.blocksInUse(1))
        case let .insufficientBlocks(needed, evictable): .cache(.insufficientBlocks(needed: needed, available: evictable))
        case .invalidArgument: .invalidArgument("a stored chunk's length differs from its segment's, or every variant of the chunk is held")
        }
    }
}

@inline(__always) private func key(_ k: kvcache_key) -> BlockKey { BlockKey(lo: k.lo, hi: k.hi) }

/// A span's tier as enum kvcache_tier. O(1).
@inline(__always) private func cTier(_ t: ChunkTier) -> Int32 {
    switch t {
    case .device: Int32(KVCACHE_TIER_DEVICE.rawValue)
    case .host: Int32(KVCACHE_TIER_HOST.rawValue)
    case .disk: Int32(KVCACHE_TIER_DISK.rawValue)
    }
}

/// kvcache_chunks_create: an empty store. O(capacity).
@_cdecl("kvcache_chunks_create")
public func kvcacheChunksCreateImpl(_ capacityBlocks: Int64, _ blockTokens: Int64, _ maxVariants: Int64,
                                    _ keyNamespace: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    do throws(CAPIError) {
        let out = try required(out, "out")
        guard capacityBlocks >= 1, capacityBlocks <= Int64(Int32.max) else { throw .invalidArgument("capacity_blocks outside 1...INT32_MAX") }
        guard blockTokens >= 1, blockTokens <= 1 << 20 else { throw .invalidArgument("block_tokens outside 1...2^20") }
        guard maxVariants >= 1, maxVariants <= 1 << 16 else { throw .invalidArgument("max_variants outside 1...65536") }
        let namespace = try utf8String(keyNamespace, "key_namespace")
        let store: ChunkStore
        do throws(ChunkError) {
            store = try ChunkStore(capacityBlocks: Int(capacityBlocks), blockTokens: Int(blockTokens), maxVariantsPerChunk: Int(maxVariants))
        } catch { throw .chunks(error) }
        let handle = ChunksHandle(store, root: BlockHasher.rootKey(namespace: namespace, lora: "", salt: ""))
        out.pointee = OpaquePointer(Unmanaged.passRetained(handle).toOpaque())
        return Status.ok
    } catch {
        return fail(error, "kvcache_chunks_create")
    }
}

/// kvcache_chunks_destroy: releases the handle's reference. O(variants).
@_cdecl("kvcache_chunks_destroy")
public func kvcacheChunksDestroyImpl(_ chunks: OpaquePointer?) -> kvcache_status {
    guard let chunks else { return fail(.nullHandle, "kvcache_chunks_destroy") }
    Unmanaged<ChunksHandle>.fromOpaque(UnsafeRawPointer(chunks)).release()
    return Status.ok
}

/// kvcache_chunks_key: `ChunkKey(root:tokens:)`. O(n_tokens).
@_cdecl("kvcache_chunks_key")
public func kvcacheChunksKeyImpl(_ chunks: OpaquePointer?, _ tokens: UnsafePointer<UInt32>?, _ count: Int,
                                 _ out: UnsafeMutablePointer<kvcache_key>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_key", as: ChunksHandle.self) { h throws(CAPIError) in
        let out = try required(out, "out")
        let ids = try inputBuffer(tokens, count, "tokens")
        guard !ids.isEmpty, ids.count <= 1 << 48 else { throw .invalidArgument("a chunk needs 1...KVCACHE_MAX_SEQUENCE_TOKENS tokens") }
        let k = ChunkKey(root: h.root, tokens: ids).bits
        out.pointee = kvcache_key(lo: k.lo, hi: k.hi)
    }
}

/// kvcache_chunks_insert: `ChunkStore.insert`. O(blocks + evicted).
@_cdecl("kvcache_chunks_insert")
public func kvcacheChunksInsertImpl(_ chunks: OpaquePointer?, _ chunk: kvcache_key, _ tokens: Int64, _ computedAt: Int64,
                                    _ context: kvcache_key, _ contextImpact: Double, _ variant: UnsafeMutablePointer<UInt64>?,
                                    _ blocks: UnsafeMutablePointer<kvcache_block_id>?, _ capacity: Int,
                                    _ count: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_insert", as: ChunksHandle.self) { h throws(CAPIError) in
        let variant = try required(variant, "variant"), count = try required(count, "n_blocks")
        let buffer = try outputBuffer(blocks, capacity: capacity, "blocks")
        guard tokens >= 1, tokens <= 1 << 48, computedAt >= 0, computedAt <= 1 << 48 else {
            throw .invalidArgument("tokens outside 1...KVCACHE_MAX_SEQUENCE_TOKENS or computed_at outside 0...KVCACHE_MAX_SEQUENCE_TOKENS")
        }
        guard contextImpact.isNaN || (contextImpact.isFinite && contextImpact >= 0) else {
            throw .invalidArgument("context_impact must be NaN, or finite and >= 0")
        }
        let bt = Int64(h.store.blockTokens)
        let needed = Int((tokens + bt - 1) / bt)
        count.pointee = needed
        try requireRoom(needed, capacity: capacity, "blocks")
        let (id, list): (ChunkVariantID, [BlockID])
        do throws(ChunkError) {
            (id, list) = try h.insert(ChunkKey(bits: key(chunk)), tokens: Int(tokens), computedAt: Int(computedAt),
                                      context: key(context), contextImpact: contextImpact.isNaN ? nil : Float(contextImpact))
        } catch { throw .chunks(error) }
        for (i, b) in list.enumerated() { buffer![i] = b }  // non-nil: capacity >= needed >= 1
        variant.pointee = id.raw
    }
}

/// kvcache_chunks_blocks: `ChunkStore.blocks(of:)` into the caller's buffer. O(blocks), no allocation.
@_cdecl("kvcache_chunks_blocks")
public func kvcacheChunksBlocksImpl(_ chunks: OpaquePointer?, _ variant: UInt64, _ blocks: UnsafeMutablePointer<kvcache_block_id>?,
                                    _ capacity: Int, _ count: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_blocks", as: ChunksHandle.self) { h throws(CAPIError) in
        let count = try required(count, "n_blocks")
        let buffer = try outputBuffer(blocks, capacity: capacity, "blocks")
        let id = ChunkVariantID(raw: variant)
        guard let v = h.store.variant(id) else { throw .chunks(.unknownVariant(id)) }
        let needed = (v.tokens + h.store.blockTokens - 1) / h.store.blockTokens
        count.pointee = needed
        try requireRoom(needed, capacity: capacity, "blocks")
        let list = try! h.store.blocks(of: id)  // live: checked above; the store's own array, not a copy
        for i in 0 ..< list.count { buffer![i] = list[i] }
    }
}

/// kvcache_chunks_remove: `ChunkStore.remove`. O(blocks).
@_cdecl("kvcache_chunks_remove")
public func kvcacheChunksRemoveImpl(_ chunks: OpaquePointer?, _ variant: UInt64) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_remove", as: ChunksHandle.self) { h throws(CAPIError) in
        do throws(ChunkError) { try h.remove(ChunkVariantID(raw: variant)) } catch { throw .chunks(error) }
    }
}

/// kvcache_chunks_plan: `ChunkPrefillPlan.draft` into the handle's scratch, written into the caller's
/// buffers, then `acquire` and a new open plan. O(segments + recomputed positions) plus one hash probe per
/// chunk; no allocation in steady state for NONE, HKVD and LEADING.
@_cdecl("kvcache_chunks_plan")
public func kvcacheChunksPlanImpl(_ chunks: OpaquePointer?, _ segments: UnsafePointer<kvcache_prompt_segment>?, _ nSegments: Int,
                                  _ context: kvcache_key, _ selection: Int32, _ ratio: Double, _ seed: UInt64,
                                  _ spans: UnsafeMutablePointer<kvcache_reused_span>?, _ spansCapacity: Int,
                                  _ recompute: UnsafeMutablePointer<Int64>?, _ recomputeCapacity: Int,
                                  _ fresh: UnsafeMutablePointer<kvcache_token_range>?, _ freshCapacity: Int,
                                  _ out: UnsafeMutablePointer<kvcache_chunk_plan>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_plan", as: ChunksHandle.self) { h throws(CAPIError) in
        let out = try required(out, "out")
        let input = try inputBuffer(segments, nSegments, "segments")
        let spanBuffer = try outputBuffer(spans, capacity: spansCapacity, "spans")
        let recomputeBuffer = try outputBuffer(recompute, capacity: recomputeCapacity, "recompute")
        let freshBuffer = try outputBuffer(fresh, capacity: freshCapacity, "fresh")
        guard ratio.isFinite, ratio >= 0, ratio <= 1 else { throw .invalidArgument("ratio outside [0, 1]") }
        let how: TokenSelection
        switch selection {
        case Int32(KVCACHE_SELECT_NONE.rawValue): how = .none
        case Int32(KVCACHE_SELECT_HKVD.rawValue): how = .highDeviation(ratio: ratio)
        case Int32(KVCACHE_SELECT_RANDOM.rawValue): how = .random(ratio: ratio, seed: seed)
        case Int32(KVCACHE_SELECT_LEADING.rawValue): how = .leading(ratio: ratio)
        case Int32(KVCACHE_SELECT_CONTEXT_IMPACT.rawValue): how = .contextImpact(ratio: ratio)
        default: throw .invalidArgument("unknown recompute selection")
        }
        h.pieces.removeAll(keepingCapacity: true)
        var total: Int64 = 0
        for (i, s) in input.enumerated() {
            guard s.tokens >= 1, s.tokens <= 1 << 48 - total else { throw .invalidArgument("a segment of fewer than 1 token, or a prompt above KVCACHE_MAX_SEQUENCE_TOKENS") }
            total += s.tokens
            switch s.kind {
            case Int32(KVCACHE_SEGMENT_FRESH.rawValue): h.pieces.append(PromptPiece(.fresh, tokens: Int(s.tokens)))
            case Int32(KVCACHE_SEGMENT_CACHED_PREFIX.rawValue):
                guard i == 0 else { throw .invalidArgument("a cached prefix that is not the first segment") }
                h.pieces.append(PromptPiece(.cachedPrefix, tokens: Int(s.tokens)))
            case Int32(KVCACHE_SEGMENT_CHUNK.rawValue): h.pieces.append(PromptPiece(.chunk(ChunkKey(bits: key(s.chunk))), tokens: Int(s.tokens)))
            default: throw .invalidArgument("unknown segment kind")
            }
        }
        if let tiered = h.tiered {
            // Drafted first against a copy of the store with the loadable chunks in place, so that the
            // buffers are checked before anything is loaded.
            // Every chunk is decided with the same bandwidths, read once here.
            let (host, disk) = h.planTiers(tiered)
            do throws(ChunkError) {
                let loaded = try loadedCopy(h, tiered, key(context), promptTokens: Int(total), host: host, disk: disk)
                try h.scratch.draft(h.pieces, store: loaded.store, context: key(context), selection: how, minimumRatios: loaded.minimumRatios)
            } catch { throw .chunks(error) }
            _ = try checkRoom(h.scratch, spansCapacity, recomputeCapacity, freshCapacity, out)
            do throws(ChunkError) {
                h.scratch = try tiered.plan(h.pieces, context: key(context), selection: how, controller: h.controller,
                                            host: host, disk: disk, loads: &h.loads)
            } catch { throw .chunks(error) }
            // Only a failed load changes the counts: the plan's holds end before the refusal.
            do throws(CAPIError) { _ = try checkRoom(h.scratch, spansCapacity, recomputeCapacity, freshCapacity, out) } catch {
                try! tiered.release(plan: h.scratch)  // held by the plan just built
                throw error
            }
        } else {
            do throws(ChunkError) { try h.scratch.draft(h.pieces, store: h.store, context: key(context), selection: how) } catch { throw .chunks(error) }
        }
        let plan = h.scratch
        var summary = try checkRoom(plan, spansCapacity, recomputeCapacity, freshCapacity, out)
        // Buffers are non-nil wherever an element is written: each capacity >= its count.
        for (i, s) in plan.reused.enumerated() {
            spanBuffer![i] = kvcache_reused_span(
                chunk: kvcache_key(lo: s.chunk.bits.lo, hi: s.chunk.bits.hi), variant: s.variant.raw, tier: cTier(s.tier),
                exact: s.exact, source_start: Int64(s.source.lowerBound), target_start: Int64(s.target.lowerBound),
                tokens: Int64(s.target.count), recompute_budget: Int64(s.recomputeBudget))
        }
        for (i, p) in plan.recompute.enumerated() { recomputeBuffer![i] = Int64(p) }
        for (i, r) in plan.fresh.enumerated() { freshBuffer![i] = kvcache_token_range(start: Int64(r.lowerBound), end: Int64(r.upperBound)) }
        if h.tiered == nil { h.acquireScratch() }
        summary.plan_id = h.open()
        out.pointee = summary
    }
}

/// The summary of `plan`; when a buffer is too short for it, the summary goes to `out` and
/// `.bufferTooSmall` names the buffer. O(spans), no allocation.
private func checkRoom(_ plan: ChunkPrefillPlan, _ spansCapacity: Int, _ recomputeCapacity: Int, _ freshCapacity: Int,
                       _ out: UnsafeMutablePointer<kvcache_chunk_plan>) throws(CAPIError) -> kvcache_chunk_plan {
    var summary = kvcache_chunk_plan(plan_id: 0, prompt_tokens: Int64(plan.promptTokens), prefix_tokens: Int64(plan.prefix.count),
                                     reused_tokens: 0, missing_chunks: Int64(plan.missingChunks), n_spans: plan.reused.count,
                                     n_recompute: plan.recompute.count, n_fresh: plan.fresh.count)
    for span in plan.reused { summary.reused_tokens += Int64(span.target.count) }
    guard plan.reused.count <= spansCapacity, plan.recompute.count <= recomputeCapacity, plan.fresh.count <= freshCapacity else {
        out.pointee = summary
        if plan.reused.count > spansCapacity { throw .bufferTooSmall("spans", needed: plan.reused.count, capacity: spansCapacity) }
        if plan.recompute.count > recomputeCapacity {
            throw .bufferTooSmall("recompute", needed: plan.recompute.count, capacity: recomputeCapacity)
        }
        throw .bufferTooSmall("fresh", needed: plan.fresh.count, capacity: freshCapacity)
    }
    return summary
}

/// A copy of the tiered store with the prompt's chunks in place as `TieredChunkStore.plan` brings them:
/// the device's held, then each one a tier holds whole and the handle's controller would load (with
/// `host` and `disk`) inserted and held. Drafting against it gives the plan `plan` makes with the same
/// bandwidths unless a load fails; with it, the loaded chunks' controller ratios (the plan's `minimumRatios`). Allocates the
/// copy (tiered calls allocate).
/// - Throws: `.insufficientBlocks` where the loads would not fit, the controller's `.invalidArgument`;
///   nothing changes.
private func loadedCopy(_ h: ChunksHandle, _ tiered: TieredChunkStore, _ context: BlockKey, promptTokens: Int,
                        host: LoadingController.Tier?, disk: LoadingController.Tier?) throws(ChunkError)
    -> (store: ChunkStore, minimumRatios: [ChunkKey: Double]) {
    var copy = tiered.store, ratios: [ChunkKey: Double] = [:]
    for piece in h.pieces {
        guard case let .chunk(key) = piece.kind, let id = copy.find(key, context: context) else { continue }
        try copy.acquire(id)
    }
    for piece in h.pieces {
        guard case let .chunk(key) = piece.kind, copy.find(key, context: context) == nil,
              let (v, _, decision) = try tiered.loadDecision(key, context: context, contextTokens: promptTokens, controller: h.controller,
                                                             host: host, disk: disk),
              decision?.load ?? true else { continue }
        let (id, _) = try copy.insert(key, tokens: v.tokens, computedAt: v.computedAt, context: v.context, contextImpact: v.contextImpact)
        try copy.acquire(id)
        if let decision { ratios[key] = decision.ratio }  // the loaded chunk's budget, as `TieredChunkStore.plan` sets it
    }
    return (copy, ratios)
}

/// kvcache_chunks_commit: ends an open plan's hold on its variants. O(spans).
@_cdecl("kvcache_chunks_commit")
public func kvcacheChunksCommitImpl(_ chunks: OpaquePointer?, _ planID: UInt64) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_commit", as: ChunksHandle.self) { h throws(CAPIError) in
        guard let slot = h.openSlot(planID) else { throw .invalidArgument("a plan that is not open (never made, or committed already)") }
        h.close(slot)
    }
}

/// kvcache_chunks_get_stats: sizes and counters. O(1).
@_cdecl("kvcache_chunks_get_stats")
public func kvcacheChunksGetStatsImpl(_ chunks: OpaquePointer?, _ out: UnsafeMutablePointer<kvcache_chunks_stats>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_get_stats", as: ChunksHandle.self) { h throws(CAPIError) in
        let out = try required(out, "out")
        let s = h.store
        out.pointee = kvcache_chunks_stats(capacity_blocks: Int64(s.pool.capacity), free_blocks: Int64(s.pool.freeCount),
                                           block_tokens: Int64(s.blockTokens), variants: Int64(s.count),
                                           evicted_variants: Int64(s.evictedVariants), open_plans: Int64(h.openPlans))
    }
}

/// kvcache_chunks_validate: the store's invariants and the open plans' holds. O(slots + blocks + spans).
@_cdecl("kvcache_chunks_validate")
public func kvcacheChunksValidateImpl(_ chunks: OpaquePointer?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_validate", as: ChunksHandle.self) { h throws(CAPIError) in try h.validate() }
}

/// kvcache_chunks_create_tiered_checked: a `TieredChunkStore` over a tier manager on the library's device
/// pool (`HostDeviceMemory`) of the config's blocks. O(device + host blocks).
@_cdecl("kvcache_chunks_create_tiered_checked")
public func kvcacheChunksCreateTieredCheckedImpl(_ abiVersion: UInt32, _ configSize: Int, _ config: UnsafePointer<kvcache_tiers_config>?,
                                                 _ maxVariants: Int64, _ keyNamespace: UnsafePointer<CChar>?,
                                                 _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_chunks_create_tiered_checked"
    do throws(CAPIError) {
        var (c, _, tc) = try tierConfig(abiVersion, configSize, config)
        let out = try required(out, "out")
        tc.calibrateAtStart = true  // seeds the bandwidths a loading controller reads (one block's copy and decode)
        guard c.host_blocks >= 1 else { throw .invalidArgument("config.host_blocks: a tiered chunk store needs a host tier") }
        guard maxVariants >= 1, maxVariants <= 1 << 16 else { throw .invalidArgument("max_variants outside 1...65536") }
        let namespace = try utf8String(keyNamespace, "key_namespace")
        let (device, standIn, copies) = try tierDevice(tc, deviceBlocks: Int(c.device_blocks), toHost: c.device_to_host,
                                                       toDevice: c.host_to_device, context: c.copy_context)
        let manager = try liftTier { () throws(TierError) in try KVTierManager(config: tc, device: device) }
        let tiered: TieredChunkStore
        do throws(ChunkError) {
            tiered = try TieredChunkStore(store: try ChunkStore(capacityBlocks: Int(c.device_blocks), blockTokens: Int(c.block_tokens),
                                                                maxVariantsPerChunk: Int(maxVariants)),
                                          tiers: manager)
        } catch {
            manager.close()
            throw .chunks(error)
        }
        let handle = ChunksHandle(tiered: tiered, device: standIn, copies: copies,
                                  root: BlockHasher.rootKey(namespace: namespace, lora: "", salt: ""))
        out.pointee = OpaquePointer(Unmanaged.passRetained(handle).toOpaque())
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// The tiered store of `h` and the bytes of `variant`'s KV in the library's pool, or the refusal. O(1).
private func tieredVariant(_ h: ChunksHandle, _ variant: UInt64) throws(CAPIError) -> (TieredChunkStore, HostDeviceMemory, [BlockID], Int) {
    guard h.tiered != nil else { throw .invalidArgument("a chunk store without tiers (kvcache_chunks_create_tiered)") }
    guard let tiered = h.tiered, let device = h.device else {
        throw .invalidArgument("the engine's own device memory (copy callbacks): it writes and reads the blocks itself")
    }
    let id = ChunkVariantID(raw: variant)
    guard h.store.variant(id) != nil else { throw .chunks(.unknownVariant(id)) }
    let blocks = try! h.store.blocks(of: id)  // live: checked above; the store's own array
    return (tiered, device, blocks, blocks.count * device.layout.bytesPerBlock)
}

/// kvcache_chunks_put: the engine's KV into the variant's device blocks, then `TieredChunkStore.commit`.
/// O(bytes).
@_cdecl("kvcache_chunks_put")
public func kvcacheChunksPutImpl(_ chunks: OpaquePointer?, _ variant: UInt64, _ kv: UnsafeRawPointer?, _ nBytes: Int) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_put", as: ChunksHandle.self) { h throws(CAPIError) in
        guard let kv else { throw .nullPointer("kv") }
        let (tiered, device, blocks, bytes) = try tieredVariant(h, variant)
        guard nBytes == bytes else { throw .invalidArgument("n_bytes is not the variant's n_blocks x block_bytes") }
        let per = device.layout.bytesPerBlock
        for (i, b) in blocks.enumerated() {
            _ = device.withBlock(b) { $0.copyMemory(from: UnsafeRawBufferPointer(start: kv + i * per, count: per)) }
        }
        try! tiered.commit(ChunkVariantID(raw: variant))  // live: checked above
    }
}

/// kvcache_chunks_fetch: the variant's device blocks into the caller's buffer. O(bytes), no allocation.
@_cdecl("kvcache_chunks_fetch")
public func kvcacheChunksFetchImpl(_ chunks: OpaquePointer?, _ variant: UInt64, _ kv: UnsafeMutableRawPointer?, _ capacity: Int,
                                   _ nBytes: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_fetch", as: ChunksHandle.self) { h throws(CAPIError) in
        let nBytes = try required(nBytes, "n_bytes")
        guard capacity >= 0, kv != nil || capacity == 0 else { throw .nullPointer("kv") }
        let (_, device, blocks, bytes) = try tieredVariant(h, variant)
        nBytes.pointee = bytes
        guard bytes <= capacity else { throw .bufferTooSmall("kv", needed: bytes, capacity: capacity) }
        let per = device.layout.bytesPerBlock
        for (i, b) in blocks.enumerated() {
            _ = device.withBlock(b) { (kv! + i * per).copyMemory(from: UnsafeRawPointer($0.baseAddress!), byteCount: per) }  // non-nil: capacity >= bytes > 0
        }
    }
}

/// kvcache_chunks_get_tier_stats. O(chunks).
@_cdecl("kvcache_chunks_get_tier_stats")
public func kvcacheChunksGetTierStatsImpl(_ chunks: OpaquePointer?, _ out: UnsafeMutablePointer<kvcache_chunks_tier_stats>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_get_tier_stats", as: ChunksHandle.self) { h throws(CAPIError) in
        let out = try required(out, "out")
        guard let tiered = h.tiered else { throw .invalidArgument("a chunk store without tiers (kvcache_chunks_create_tiered)") }
        let s = tiered.tiers.statistics
        out.pointee = kvcache_chunks_tier_stats(
            block_bytes: Int64(tiered.tiers.layout.bytesPerBlock), spilled_variants: Int64(tiered.spilledVariants),
            loaded_variants: Int64(tiered.loadedVariants), failed_loads: Int64(tiered.failedLoads),
            tiers: kvcache_tier_stats(block_bytes: Int64(tiered.tiers.layout.bytesPerBlock), device: .init(s.device), host: .init(s.host), disk: .init(s.disk)))
    }
}

/// kvcache_chunks_set_loading_controller: the `LoadingController` of the handle's tiered plans, on the
/// store's geometry, or none. O(1).
@_cdecl("kvcache_chunks_set_loading_controller")
public func kvcacheChunksSetLoadingControllerImpl(_ chunks: OpaquePointer?, _ controller: UnsafePointer<kvcache_loading_controller>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_set_loading_controller", as: ChunksHandle.self) { h throws(CAPIError) in
        guard let tiered = h.tiered else { throw .invalidArgument("a chunk store without tiers (kvcache_chunks_create_tiered)") }
        guard let c = controller?.pointee else {
            h.controller = nil; h.givenHost = nil; h.givenDisk = nil
            return
        }
        guard c.recompute_seconds_per_token.isFinite, c.recompute_seconds_per_token >= 0,
              c.recompute_seconds_per_context_pair.isFinite, c.recompute_seconds_per_context_pair >= 0,
              c.recompute_seconds_per_token > 0 || c.recompute_seconds_per_context_pair > 0 else {
            throw .invalidArgument("controller: recompute costs must be finite, >= 0 and not both 0")
        }
        for bandwidth in [c.host_bytes_per_second, c.disk_bytes_per_second] where !(bandwidth.isFinite && bandwidth >= 0) {
            throw .invalidArgument("controller: a bandwidth that is negative or not finite")
        }
        let layout = tiered.tiers.layout
        let built: LoadingController
        do throws(ChunkError) {
            let cost = try! RecomputeCost(secondsPerToken: c.recompute_seconds_per_token,  // checked above
                                          secondsPerContextPair: c.recompute_seconds_per_context_pair)
            built = try LoadingController(cost: cost, layers: layout.layers, kvBytesPerToken: layout.bytesPerBlock / layout.blockTokens,
                                          minimumRatio: c.minimum_ratio)
        } catch { throw .invalidArgument("controller: minimum_ratio outside [0, 1]") }
        h.controller = built
        h.givenHost = c.host_bytes_per_second > 0 ? .init(name: "host", bytesPerSecond: c.host_bytes_per_second) : nil
        h.givenDisk = c.disk_bytes_per_second > 0 ? .init(name: "disk", bytesPerSecond: c.disk_bytes_per_second) : nil
    }
}

/// A tiered plan's record of one chunk segment as `kvcache_chunk_load`. O(1).
private func cLoad(_ l: TieredChunkStore.ChunkLoad) -> kvcache_chunk_load {
    func tier(_ s: TieredChunkStore.Source) -> Int32 { cTier(s == .disk ? .disk : s == .host ? .host : .device) }
    let (action, where_): (kvcache_chunk_action, Int32)
    switch l.action {
    case .device: (action, where_) = (KVCACHE_CHUNK_IN_POOL, cTier(.device))
    case let .loaded(s): (action, where_) = (KVCACHE_CHUNK_LOADED, tier(s))
    case let .recompute(s): (action, where_) = (KVCACHE_CHUNK_RECOMPUTE, tier(s))
    case .missing: (action, where_) = (KVCACHE_CHUNK_MISSING, cTier(.device))
    }
    let d = l.decision
    return kvcache_chunk_load(segment: Int64(l.piece), chunk: kvcache_key(lo: l.chunk.bits.lo, hi: l.chunk.bits.hi),
                              action: Int32(action.rawValue), tier: where_, decided: d != nil, ratio: d?.ratio ?? 0,
                              load_seconds: d?.loadSeconds ?? 0, recompute_seconds: d?.recomputeSeconds ?? 0,
                              pipelined_seconds: d?.pipelinedSeconds ?? 0, recompute_all_seconds: d?.recomputeAllSeconds ?? 0)
}

/// kvcache_chunks_plan_loads: the open plan's records into the caller's buffer. O(chunk segments), no
/// allocation.
@_cdecl("kvcache_chunks_plan_loads")
public func kvcacheChunksPlanLoadsImpl(_ chunks: OpaquePointer?, _ planID: UInt64, _ loads: UnsafeMutablePointer<kvcache_chunk_load>?,
                                       _ capacity: Int, _ nLoads: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_plan_loads", as: ChunksHandle.self) { h throws(CAPIError) in
        let n = try required(nLoads, "n_loads")
        let buffer = try outputBuffer(loads, capacity: capacity, "loads")
        guard h.tiered != nil else { throw .invalidArgument("a chunk store without tiers (kvcache_chunks_create_tiered)") }
        guard let slot = h.openSlot(planID) else { throw .invalidArgument("a plan that is not open (never made, or committed already)") }
        let list = h.planLoads[slot]
        n.pointee = list.count
        try requireRoom(list.count, capacity: capacity, "loads")
        for (i, l) in list.enumerated() { buffer![i] = cLoad(l) }  // non-nil: capacity >= count
    }
}

/// kvcache_chunks_mark_written: the engine wrote the variant's KV into its device blocks itself:
/// `TieredChunkStore.commit`. O(blocks).
@_cdecl("kvcache_chunks_mark_written")
public func kvcacheChunksMarkWrittenImpl(_ chunks: OpaquePointer?, _ variant: UInt64) -> kvcache_status {
    withHandle(chunks, "kvcache_chunks_mark_written", as: ChunksHandle.self) { h throws(CAPIError) in
        guard let tiered = h.tiered else { throw .invalidArgument("a chunk store without tiers (kvcache_chunks_create_tiered)") }
        do throws(ChunkError) { try tiered.commit(ChunkVariantID(raw: variant)) } catch { throw .chunks(error) }
    }
}

/// kvcache_chunks_copy_done: completes a copy handed to the engine's callback. Any thread. O(1).
@_cdecl("kvcache_chunks_copy_done")
public func kvcacheChunksCopyDoneImpl(_ chunks: OpaquePointer?, _ token: UInt64, _ ok: Bool) -> kvcache_status {
    guard let chunks else { return fail(.nullHandle, "kvcache_chunks_copy_done") }
    guard isHandle(chunks, of: ChunksHandle.self) else { return fail(.wrongHandle, "kvcache_chunks_copy_done") }
    // Only the thread-safe part of the handle is read: the pending copies (immutable after creation).
    let copies = Unmanaged<ChunksHandle>.fromOpaque(UnsafeRawPointer(chunks))._withUnsafeGuaranteedRef { $0.copies }
    guard let copies, copies.complete(token, ok: ok) else {
        return fail(.invalidArgument("the token is not a pending copy"), "kvcache_chunks_copy_done")
    }
    return Status.ok
}
