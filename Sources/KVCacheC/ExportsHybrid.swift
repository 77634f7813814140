import CKVCache
import KVCache
import KVHybrid

// The hybrid attention + SSM prefix cache (kvcache_hybrid_*): one `HybridCache` under the adaptive
// policy behind an opaque handle, through the same `withHandle` boundary as the cache's calls (NULL
// handle, NULL pointers and every refusal become a status and the thread's last error; nothing is
// changed by a refused call; no input traps).

/// What a `kvcache_hybrid_t *` points to. Single-threaded, like the cache it wraps.
final class HybridHandle {
    var cache: HybridCache
    /// Events taken from the cache but not yet handed to the caller.
    var staged: [HybridCheckpointEvent] = []
    var stagedStart = 0

    init(_ cache: HybridCache) { self.cache = cache }
}

extension CAPIError {
    /// A refusal of the hybrid cache, as static text (the facade's error changed nothing).
    static func hybrid(_ e: HybridCacheError) -> CAPIError {
        switch e {
        case .tooLarge: .invalidArgument("the sequence cannot fit even in an empty cache")
        case .stalePlan: .invalidArgument("the plan was made for an earlier state of the cache")
        case .invalidArgument: .invalidArgument("a sequence longer than KVCACHE_HYBRID_MAX_SEQUENCE_TOKENS")
        }
    }
}

/// A caller's token array for the hybrid cache: NULL only when empty, at most the maximum length.
private func hybridTokens(_ pointer: UnsafePointer<Int32>?, _ count: Int, _ name: StaticString) throws(CAPIError) -> UnsafeBufferPointer<Int32> {
    guard count >= 0, count <= HybridCache.maxSequenceTokens else {
        throw .invalidArgument("a sequence longer than KVCACHE_HYBRID_MAX_SEQUENCE_TOKENS")
    }
    return try inputBuffer(pointer, count, name)
}

/// kvcache_hybrid_create: a model preset by name, a byte budget, events and online tuning on or off. O(1).
@_cdecl("kvcache_hybrid_create")
public func kvcacheHybridCreateImpl(_ model: UnsafePointer<CChar>?, _ capacityBytes: Int64, _ recordEvents: Bool,
                                    _ onlineTuning: Bool, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    do throws(CAPIError) {
        let out = try required(out, "out")
        let name = try utf8String(model, "model")
        guard let preset = HybridModel.preset(named: name) else { throw .invalidArgument("unknown hybrid model preset") }
        guard capacityBytes >= 1 else { throw .invalidArgument("capacity_bytes must be at least 1") }
        var cache = HybridCache(model: preset, policy: .adaptive, capacityBytes: capacityBytes)
        cache.setRecordsEvents(recordEvents)
        if onlineTuning { cache.enableOnlineTuning() }
        out.pointee = OpaquePointer(Unmanaged.passRetained(HybridHandle(cache)).toOpaque())
        return Status.ok
    } catch {
        return fail(error, "kvcache_hybrid_create")
    }
}

/// kvcache_hybrid_destroy: releases the handle's reference. O(nodes).
@_cdecl("kvcache_hybrid_destroy")
public func kvcacheHybridDestroyImpl(_ cache: OpaquePointer?) -> kvcache_status {
    guard let cache else { return fail(.nullHandle, "kvcache_hybrid_destroy") }
    guard isHandle(cache, of: HybridHandle.self) else { return fail(.wrongHandle, "kvcache_hybrid_destroy") }
    Unmanaged<HybridHandle>.fromOpaque(UnsafeRawPointer(cache)).release()
    return Status.ok
}

/// kvcache_hybrid_plan_prefill: `HybridCache.plan`. O(n_tokens); allocates nothing.
@_cdecl("kvcache_hybrid_plan_prefill")
public func kvcacheHybridPlanImpl(_ cache: OpaquePointer?, _ prompt: UnsafePointer<Int32>?, _ count: Int,
                                  _ out: UnsafeMutablePointer<kvcache_hybrid_plan>?) -> kvcache_status {
    withHandle(cache, "kvcache_hybrid_plan_prefill", as: HybridHandle.self) { h throws(CAPIError) in
        let out = try required(out, "out")
        let tokens = try hybridTokens(prompt, count, "prompt")
        let plan: HybridPlan
        do throws(HybridCacheError) { plan = try h.cache.plan(tokens) } catch { throw .hybrid(error) }
        out.pointee = kvcache_hybrid_plan(hit_tokens: Int64(plan.hitTokens), restore_slot: plan.restoreSlot,
                                          raw_tokens: Int64(plan.rawTokens), save_branch_at: Int64(plan.saveBranchAt ?? -1),
                                          generation: plan.generation)
    }
}

/// kvcache_hybrid_commit: `HybridCache.commit`. O(n_tokens + eviction).
@_cdecl("kvcache_hybrid_commit")
public func kvcacheHybridCommitImpl(_ cache: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ count: Int,
                                    _ plan: UnsafePointer<kvcache_hybrid_plan>?, _ savedBranch: Bool,
                                    _ savedEnd: Bool) -> kvcache_status {
    withHandle(cache, "kvcache_hybrid_commit", as: HybridHandle.self) { h throws(CAPIError) in
        let p = try required(plan, "plan").pointee
        let seq = try hybridTokens(tokens, count, "tokens")
        guard p.save_branch_at == -1 || (p.save_branch_at >= 1 && p.save_branch_at <= Int64(count)) else {
            throw .invalidArgument("save_branch_at outside [1, n_tokens] and not -1")
        }
        guard p.hit_tokens >= 0, p.raw_tokens >= 0 else { throw .invalidArgument("a negative token count in the plan") }
        let swiftPlan = HybridPlan(hitTokens: Int(p.hit_tokens), restoreSlot: p.restore_slot, rawTokens: Int(p.raw_tokens),
                                   saveBranchAt: p.save_branch_at < 0 ? nil : Int(p.save_branch_at), generation: p.generation)
        do throws(HybridCacheError) { try h.cache.commit(sequence: seq, plan: swiftPlan, savedBranch: savedBranch, savedEnd: savedEnd) } catch {
            throw .hybrid(error)
        }
    }
}

/// kvcache_hybrid_drain_events: up to `capacity` events, oldest first. O(events moved).
@_cdecl("kvcache_hybrid_drain_events")
public func kvcacheHybridDrainEventsImpl(_ cache: OpaquePointer?, _ events: UnsafeMutablePointer<kvcache_hybrid_event>?,
                                         _ capacity: Int, _ count: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(cache, "kvcache_hybrid_drain_events", as: HybridHandle.self) { h throws(CAPIError) in
        let count = try required(count, "count")
        let buffer = try outputBuffer(events, capacity: capacity, "events")
        if h.stagedStart == h.staged.count {
            h.staged = h.cache.takeEvents()
            h.stagedStart = 0
        }
        let n = min(capacity, h.staged.count - h.stagedStart)
        for i in 0 ..< n {
            let e: kvcache_hybrid_event
            switch h.staged[h.stagedStart + i] {
            case .stored(let slot, let tokens):
                e = kvcache_hybrid_event(kind: Int32(KVCACHE_HYBRID_CHECKPOINT_STORED.rawValue), slot: slot, tokens: Int64(tokens))
            case .removed(let slot, let tokens):
                e = kvcache_hybrid_event(kind: Int32(KVCACHE_HYBRID_CHECKPOINT_REMOVED.rawValue), slot: slot, tokens: Int64(tokens))
            }
            buffer![i] = e
        }
        h.stagedStart += n
        count.pointee = n
    }
}

/// kvcache_hybrid_get_stats: sizes and counters. O(1).
@_cdecl("kvcache_hybrid_get_stats")
public func kvcacheHybridGetStatsImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<kvcache_hybrid_stats>?) -> kvcache_status {
    withHandle(cache, "kvcache_hybrid_get_stats", as: HybridHandle.self) { h throws(CAPIError) in
        let out = try required(out, "out")
        let c = h.cache, model = c.tree.model
        out.pointee = kvcache_hybrid_stats(
            capacity_bytes: c.capacityBytes, bytes: c.tree.bytes, checkpoints: Int64(c.tree.checkpoints),
            cached_tokens: Int64(c.tree.cachedTokens), nodes: Int64(c.tree.nodeCount), evicted_nodes: Int64(c.evictedNodes),
            checkpoint_bytes: model.checkpointBytes, kv_bytes_per_token: model.kvBytesPerToken,
            setting_switches: Int64(c.tuner?.switches ?? 0))
    }
}

/// kvcache_hybrid_validate: the tree's and the policy's invariants. O(nodes + tokens).
@_cdecl("kvcache_hybrid_validate")
public func kvcacheHybridValidateImpl(_ cache: OpaquePointer?) -> kvcache_status {
    withHandle(cache, "kvcache_hybrid_validate", as: HybridHandle.self) { h throws(CAPIError) in
        if let problem = h.cache.validate() { throw .invariantViolation(problem) }
    }
}
