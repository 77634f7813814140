import KVCache

/// Host slots: taking one (evicting the coldest), filling, releasing, the background spill to the store,
/// and the store's journal. The lock is held in all of these.
extension KVTierManager {
    /// How many cold host slots `takeSlot` considers when looking for one that is already in the store.
    static let evictionWindow = 8

    /// A free slot, evicting an unpinned ready slot if none is free: among the `evictionWindow` least
    /// recently used, one already in the store (free to drop) is preferred; otherwise the least recently
    /// used, which is first written to the store inline. O(1) unless many slots are pinned.
    func takeSlot(outbox: inout Outbox) -> Int32? {
        guard let host else { return nil }
        if let s = host.allocate() { return s }
        var v = index.lru.tail
        var victim: Int32 = -1
        var seen = 0
        while v >= 0 && seen < Self.evictionWindow {
            if index.pins(ofSlot: v) == 0 {
                if victim < 0 { victim = v }
                if store == nil || index.isOnDisk(slot: v) {
                    victim = v
                    break
                }
                seen += 1
            }
            v = index.lru.previous(v)
        }
        if victim < 0 {   // the window was all pinned: keep looking for any unpinned slot
            while v >= 0 && index.pins(ofSlot: v) > 0 { v = index.lru.previous(v) }
            victim = v
        }
        guard victim >= 0 else { return nil }
        evictSlot(victim)
        return host.allocate()
    }

    /// Drops a ready, unpinned slot from the host tier; first writes it to the store (inline) when it is
    /// not there yet and the store pays.
    private func evictSlot(_ slot: Int32) {
        if !index.isOnDisk(slot: slot), let store, let host,
           admission.worthLoading(tier: store.tier, layout: layout) {
            let bytes = UnsafeRawBufferPointer(start: host.address(of: slot), count: layout.bytesPerBlock)
            let r = store.put(index.key(ofSlot: slot), parent: index.parent(ofSlot: slot).nonZero, bytes: bytes)
            noteStorePut(r)
            index.setOnDisk(slot: slot, r == .stored || r == .alreadyStored)
        }
        if !index.isOnDisk(slot: slot) { counters.host.droppedBlocks += 1 }
        releaseSlot(slot)
    }

    func releaseSlot(_ slot: Int32) {
        let key = index.key(ofSlot: slot)
        if index.release(slot) {
            counters.host.removedBlocks += 1
            if config.recordEvents { events.append(.removed(key, tier: .host)) }
        }
        try? host?.release(slot)   // the slot is allocated here by construction
        counters.host.occupancy = index.hostCount
    }

    /// Drops one pin of `slot` and releases it when none is left.
    func unpinOrRelease(_ slot: Int32) {
        if index.unpin(slot) == 0 { releaseSlot(slot) }
    }

    /// Counts a store write; its event (and those of the blocks it evicted) come from the store's
    /// journal, taken in now so the stream stays in order.
    func noteStorePut(_ r: DiskPutOutcome) {
        switch r {
        case .stored:
            counters.disk.storedBlocks += 1
            counters.disk.bytesIn += layout.bytesPerBlock
            syncStoreChanges()
        case .alreadyStored: break
        case .notStored: counters.disk.notStored += 1
        }
    }

    /// Counts a slot that became ready (filled from the device or the store), with its event.
    private func noteHostStored(slot: Int32, key: BlockKey, bytes: Int) {
        counters.host.storedBlocks += 1
        counters.host.bytesIn += bytes
        counters.host.occupancy = index.hostCount
        if config.recordEvents {
            let parent = index.parent(ofSlot: slot).nonZero
            events.append(.stored(key, parent: parent, tier: .host))
        }
    }

    /// A copy into `slot` from the store finished; the lock is held.
    func finishStoreFill(slot: Int32, key: BlockKey) {
        index.markReady(slot)
        noteHostStored(slot: slot, key: key, bytes: layout.bytesPerBlock)
    }

    /// A copy into `slot` finished (from the device or from the store). Takes the lock.
    func finishFill(slot: Int32, key: BlockKey, ok: Bool, fromDevice: Bool, bytes: Int) {
        var outbox: Outbox = []
        lock.withLock {
            if fromDevice { deviceCopiesInFlight -= 1 }
            let pins = index.unpin(slot)
            if ok {
                index.markReady(slot)
                noteHostStored(slot: slot, key: key, bytes: bytes)
                maybeSpill(outbox: &outbox)
            } else {
                counters.host.notStored += 1
                if pins == 0 { releaseSlot(slot) }
            }
            lock.broadcast()
        }
        send(outbox)
    }

    /// Background L2 -> store: above the watermark, writes the coldest host blocks not stored yet.
    private func maybeSpill(outbox: inout Outbox) {
        guard let store, let host, config.spillWatermark < 1,
              admission.worthLoading(tier: store.tier, layout: layout) else { return }
        let limit = Int(config.spillWatermark * Double(host.capacity))
        var v = index.lru.tail
        while index.hostCount - spillsInFlight > limit && spillsInFlight < 2 * transfers.workerCount && v >= 0 {
            if index.state(ofSlot: v) == .ready && index.pins(ofSlot: v) == 0 && !index.isOnDisk(slot: v)
                && !index.isSpilling(slot: v) {
                index.setSpilling(slot: v, true)
                index.pin(v)
                spillsInFlight += 1
                let slot = v
                let key = index.key(ofSlot: v)
                let parent = index.parent(ofSlot: v)
                let src = HostAddress(host.address(of: slot))
                let bytes = layout.bytesPerBlock
                outbox.append((.low, .max, { [self] _ in
                    let data = UnsafeRawBufferPointer(start: src.pointer, count: bytes)
                    let r = store.put(key, parent: parent.nonZero, bytes: data)
                    self.lock.withLock {
                        self.spillsInFlight -= 1
                        _ = self.index.unpin(slot)
                        self.index.setSpilling(slot: slot, false)
                        self.noteStorePut(r)
                        if self.index.key(ofSlot: slot) == key, r == .stored || r == .alreadyStored {
                            self.index.setOnDisk(slot: slot, true)
                        }
                    }
                }))
            }
            v = index.lru.previous(v)
        }
    }

    /// Takes in the store's journal: removals clear host slots' in-store marks; with `recordEvents`,
    /// every store and removal becomes an event, in the order the store made them (a put racing a segment
    /// eviction on another worker cannot reorder them). O(changes).
    func syncStoreChanges() {
        guard let store else { return }
        storeChanges.removeAll(keepingCapacity: true)
        store.drainChanges(into: &storeChanges)
        for c in storeChanges {
            switch c {
            case .stored(let k, let parent):
                events.append(.stored(k, parent: parent, tier: store.tier))
            case .removed(let k):
                counters.disk.removedBlocks += 1
                if config.recordEvents { events.append(.removed(k, tier: store.tier)) }
                index.diskRemoved(k)
            }
        }
    }
}
