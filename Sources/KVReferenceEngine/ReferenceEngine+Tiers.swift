import KVCache
import KVTiers

/// Prompt blocks a `start` loaded from the tiers instead of computing them.
public struct TierLoad: Sendable, Equatable {
    public var hostBlocks = 0
    public var diskBlocks = 0
    /// Planned blocks that failed to load (vanished or corrupt) and were computed instead.
    public var failedBlocks = 0
    /// Tokens loaded (whole blocks).
    public var tokens = 0
    public init() {}
}

/// A prompt's block keys and where the tiers hold the blocks after the pool's prefix.
struct TierPlan {
    var keys: [BlockKey]
    var lookup: TierLookup
}

extension ReferenceEngine {
    /// Puts `tiers` below the pool: blocks the cache manager evicts are copied down (the tiers become its
    /// `evictionObserver`), and `start` loads prompt blocks found there. Pass nil to detach.
    /// - Throws: `.cache` when `tiers` was not built over this engine's pool (a `PagedKVPoolMemory` of
    ///   `pool`); nothing changes then.
    public func attachTiers(_ tiers: KVTierManager?) throws(EngineError) {
        if let tiers {
            guard let memory = tiers.device as? PagedKVPoolMemory, memory.pool === pool else {
                throw .cache("the tiers' device memory is not this engine's pool")
            }
        }
        self.tiers = tiers
        cache.evictionObserver = tiers
        cache.lowerTierEvents = tiers.map { [$0] } ?? []
        lastTierLoad = TierLoad()
    }

    /// The prompt's full-block keys (the cache manager's own) and the tiers' lookup after the
    /// `deviceTokens` the pool already holds. O(prompt blocks).
    func lookupTiers(_ tiers: KVTierManager, _ id: SequenceID, prompt: [UInt32], deviceTokens: Int) throws(EngineError) -> TierPlan {
        let B = pool.blockTokens
        let keys: [BlockKey]
        do { keys = try cache.promptKeys(id) } catch { throw .cache("\(error)") }
        // The last prompt token is always computed (its logits are needed), as in the manager's lookup.
        let lookup = tiers.lookup(keys: keys, deviceBlocks: deviceTokens / B, maxBlocks: (prompt.count - 1) / B)
        return TierPlan(keys: keys, lookup: lookup)
    }

    /// Loads the planned blocks into the sequence's blocks after its pool prefix (allocated already),
    /// waits for them and commits the leading ones that arrived as computed. Returns the tokens loaded.
    func loadFromTiers(_ id: SequenceID, plan: TierPlan) throws(EngineError) -> Int {
        guard let tiers, plan.lookup.loadBlocks > 0 else { return 0 }
        let B = pool.blockTokens
        let table: [BlockID]
        do { table = try cache.blockTable(id) } catch { throw .cache("\(error)") }
        let first = plan.lookup.deviceBlocks
        guard first + plan.lookup.loadBlocks <= table.count else {
            throw .badBlockTable("\(table.count) blocks cannot take \(plan.lookup.loadBlocks) loads after \(first)")
        }
        let handle: TransferHandle
        do {
            handle = try tiers.load(plan.lookup, keys: plan.keys, into: Array(table[first ..< first + plan.lookup.loadBlocks]))
        } catch {
            throw .cache("tier load: \(error)")
        }
        handle.wait()
        let loaded = handle.loadedPrefixBlocks
        let fromDisk = handle.loadedFromDisk
        var load = TierLoad()
        for i in 0 ..< loaded { if i < fromDisk.count && fromDisk[i] { load.diskBlocks += 1 } else { load.hostBlocks += 1 } }
        load.failedBlocks = plan.lookup.loadBlocks - loaded
        load.tokens = loaded * B
        lastTierLoad = load
        if loaded > 0 {
            do { try cache.commit(id, computedTokens: loaded * B) } catch { throw .cache("\(error)") }
        }
        return loaded * B
    }

    /// Tells the tiers which pool block holds each computed full prompt block (after the commits, which
    /// may have swapped in deduplicated blocks). O(prompt blocks).
    func noteStoredInTiers(_ id: SequenceID, keys: [BlockKey]) throws(EngineError) {
        guard let tiers else { return }
        let table: [BlockID]
        let done: Int
        do { table = try cache.blockTable(id); done = try cache.computedTokens(id) } catch { throw .cache("\(error)") }
        for i in 0 ..< min(keys.count, done / pool.blockTokens, table.count) {
            tiers.noteStored(block: table[i], key: keys[i], parent: i == 0 ? nil : keys[i - 1])
        }
    }
}
