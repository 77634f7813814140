import KVCache

/// Projected admission: the running requests' future KV curve, and whether a new request keeps it
/// within the cache at every step.
extension Scheduler {
    /// Fills `projection` from the running requests: for each, the tokens it will still grow by
    /// (predicted) and the tokens it holds alone (its blocks less its prefix hits), which it frees when it
    /// ends. Sorting (largest remaining first) waits until a check needs it. O(running).
    func buildProjection() {
        projection.removeAll(keepingCapacity: true)
        let bt = cache.blockTokens
        projectionHeld = (cache.capacityBlocks - cache.freeBlockCount) * bt
        projectionOwnSum = 0
        projectionGrowthSum = 0
        for slot in running {
            let e = entries[Int(slot)]
            let remaining = max(e.reserveOutput, e.generated + 1) - e.generated
            let own = max(0, e.slotTokens - e.hitTokens)
            projection.append((remaining, own))
            projectionOwnSum += own
            projectionGrowthSum += remaining + bt
        }
        projectionSorted = false
    }

    /// Whether a request that needs `own` new tokens of blocks now and grows by `remaining` more keeps
    /// the projected KV within the cache at every future step.
    ///
    /// Usage at step t is what is held now, plus one token per step for every request still running,
    /// less what the requests that ended by then held alone; one block of slack per running request
    /// covers partial blocks. Its peaks come just before each predicted end, so the walk visits
    /// the ends from the latest down. O(running), plus a sort the first time in a pass.
    func projectionFits(remaining: Int, own: Int) -> Bool {
        let capacity = cache.capacityBlocks * cache.blockTokens
        let slack = cache.blockTokens
        let held = projectionHeld + own
        // Nothing ending early, everyone growing to the end at once: a bound that often suffices.
        if held + projectionGrowthSum + remaining + slack <= capacity { return true }
        if !projectionSorted {
            projection.sort { $0.remaining > $1.remaining }
            projectionSorted = true
        }
        let ownTotal = projectionOwnSum + own
        var aliveOwn = 0, alive = 0
        var inserted = false
        var i = 0
        while i < projection.count || !inserted {
            let r: Int
            if !inserted && (i == projection.count || remaining >= projection[i].remaining) {
                r = remaining
                aliveOwn += own
                inserted = true
            } else {
                r = projection[i].remaining
                aliveOwn += projection[i].own
                i += 1
            }
            alive += 1
            // Just before this request's end: the ones with smaller remaining have ended.
            if held - (ownTotal - aliveOwn) + alive * (r - 1 + slack) > capacity { return false }
        }
        return true
    }

    func insertProjection(remaining: Int, own: Int) {
        projectionHeld += own
        projectionOwnSum += own
        projectionGrowthSum += remaining + cache.blockTokens
        guard projectionSorted else {
            projection.append((remaining, own))
            return
        }
        var i = projection.count
        while i > 0 && projection[i - 1].remaining < remaining { i -= 1 }
        projection.insert((remaining, own), at: i)
    }
}
