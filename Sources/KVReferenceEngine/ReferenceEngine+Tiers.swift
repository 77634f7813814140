import KVCache
import KVRuntime
import KVTiers

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
        cache.placeTiers(tiers)
        lastTierLoad = TierLoad()
    }

    /// The tier leg of `start` (`PrefixPlanner`), when tiers are attached.
    var planner: PrefixPlanner? { tiers.map { PrefixPlanner(cache: cache, tiers: $0) } }

    /// The prompt's full-block keys (the cache manager's own) and the tiers' lookup after the
    /// `deviceTokens` the pool already holds. O(prompt blocks).
    func lookupTiers(_ planner: PrefixPlanner, _ id: SequenceID, prompt: [UInt32],
                     deviceTokens: Int) throws(EngineError) -> (keys: [BlockKey], lookup: TierLookup) {
        let keys: [BlockKey]
        do { keys = try cache.promptKeys(id) } catch { throw .cache("\(error)") }
        return (keys, planner.lookup(keys: keys, deviceTokens: deviceTokens, promptTokens: prompt.count))
    }

    /// Loads the planned blocks into the sequence's blocks after its pool prefix (allocated already),
    /// waits for them and commits the leading ones that arrived as computed. Returns the tokens loaded.
    func loadFromTiers(_ planner: PrefixPlanner, _ id: SequenceID,
                       plan: (keys: [BlockKey], lookup: TierLookup)) throws(EngineError) -> Int {
        do {
            lastTierLoad = try planner.load(id, plan.lookup, keys: plan.keys)
        } catch .invalidArgument(let why) {
            throw .badBlockTable(why)
        } catch {
            throw .cache("tier load: \(error)")
        }
        return lastTierLoad.tokens
    }

    /// Tells the tiers which pool block holds each computed full prompt block (after the commits, which
    /// may have swapped in deduplicated blocks). O(prompt blocks).
    func noteStoredInTiers(_ planner: PrefixPlanner, _ id: SequenceID, keys: [BlockKey]) throws(EngineError) {
        do { try planner.recordStored(id, keys: keys) } catch { throw .cache("\(error)") }
    }
}
