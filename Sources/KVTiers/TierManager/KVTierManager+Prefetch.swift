import KVCache

extension KVTierManager {
    /// Brings store blocks among `keys` up to host ahead of need (store -> L2), never evicting the ones of
    /// `keys` already on host to make room. A block whose read has not started by `deadlineNanos`
    /// (`KVClock.monotonicNanos()`) is skipped. The handle has one entry per
    /// block actually scheduled, one layer group.
    public func prefetch(keys: [BlockKey], deadlineNanos: UInt64) -> TransferHandle {
        var outbox: Outbox = []
        var scheduled: [(BlockKey, Int32, HostAddress)] = []
        lock.withLock {
            guard let host, let store else { return }
            // The keys on host now stay there: taking slots for the others must not evict them (and then
            // read them back).
            var held: [Int32] = []
            for k in keys {
                if let s = index.readyHostSlot(of: k) {
                    index.pin(s)
                    held.append(s)
                }
            }
            for k in keys where index.hostSlot(of: k) == nil && store.contains(k) {
                guard let s = takeSlot(outbox: &outbox) else { break }
                index.claim(s, key: k, parent: store.parent(of: k) ?? .zero, onDisk: true)
                scheduled.append((k, s, HostAddress(host.address(of: s))))
            }
            for s in held { _ = index.unpin(s) }
        }
        send(outbox)
        let handle = TransferHandle(blocks: scheduled.count, layerGroups: [0 ..< layout.layers])
        for (i, (k, s, a)) in scheduled.enumerated() {
            transfers.submit(.low, deadlineNanos: deadlineNanos) { [self] expired in
                var ok = false
                if expired {
                    self.lock.withLock { self.unpinOrRelease(s) }
                } else {
                    ok = self.readFromStore(key: k, slot: s, address: a)
                    if ok { self.lock.withLock { _ = self.index.unpin(s) } }
                }
                handle.complete(block: i, group: 0, success: ok)
            }
        }
        return handle
    }

    /// Starts bringing the store blocks among `keys` up to host in the background (no deadline) and
    /// returns how many of `keys` are on their way up now: read by this call or by an earlier one and
    /// not ready yet. Keys already on host or found nowhere count nothing; a store block that finds no
    /// host slot free or evictable is left where it is (a load reads it from the store itself).
    /// O(keys) probes plus one job per block scheduled.
    @discardableResult
    public func promote(keys: [BlockKey]) -> Int {
        _ = prefetch(keys: keys, deadlineNanos: .max)
        return lock.withLock { keys.count { index.hostSlot(of: $0) != nil && index.readyHostSlot(of: $0) == nil } }
    }
}
