import KVCache

extension KVTierManager {
    /// Checks the tier index's invariants and that every host slot is either free or indexed; throws
    /// the first one broken. O(entries + slots).
    public func validate() throws(InvariantViolation) {
        try lock.withLock { () throws(InvariantViolation) in
            try index.validate()
            if let host, host.freeCount + index.hostCount != host.capacity {
                throw InvariantViolation("host slots leaked: \(host.freeCount) free + \(index.hostCount) indexed "
                                         + "of \(host.capacity)")
            }
        }
    }
}
