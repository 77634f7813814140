import KVCache

/// Device residency notifications and the write policies: what is copied out of the device, and when.
extension KVTierManager {
    /// Records that device block `block` now holds the committed block `key`, whose parent in the prefix
    /// tree is `parent` (nil for a first block; the previous key of the prompt's chain otherwise). Call
    /// after `commit` for the newly published blocks. With write-through, starts its copy to host; the
    /// tier's events name `parent`. O(1).
    public func noteStored(block: BlockID, key: BlockKey, parent: BlockKey? = nil) {
        var outbox: Outbox = []
        lock.withLock {
            guard block >= 0, Int(block) < index.deviceBlocks, key != .zero else { return }
            setResident(block: block, key: key, parent: parent ?? .zero)
            if config.writePolicy == .writeThrough {
                startCopyToHost(block: block, key: key, parent: parent ?? .zero, outbox: &outbox)
            }
        }
        send(outbox)
    }

    /// The lock is held. `parent` is `.zero` for a first block.
    func setResident(block: BlockID, key: BlockKey, parent: BlockKey) {
        index.setDevice(block: block, key: key, parent: parent)
        counters.device.occupancy = index.deviceCount
    }

    /// `BlockEvictionObserver`: the device pool is about to reuse `block`. Copies it to host when the
    /// write policy and `LoadOrRecompute` say so and host does not hold it yet; the tier's events name
    /// `parent` (nil for a first block). O(1) plus an asynchronous copy.
    public func willEvict(block: BlockID, key: BlockKey, parent: BlockKey?) {
        evict(block: block, key: key, parent: parent ?? .zero, parentKnown: true)
    }

    /// `willEvict(block:key:parent:)` without the parent: the one `noteStored` gave for this block, if any.
    public func willEvict(block: BlockID, key: BlockKey) {
        evict(block: block, key: key, parent: .zero, parentKnown: false)
    }

    private func evict(block: BlockID, key: BlockKey, parent given: BlockKey, parentKnown: Bool) {
        var outbox: Outbox = []
        let copying: Bool = lock.withLock {
            guard block >= 0, Int(block) < index.deviceBlocks else { return false }
            let (hits, recorded) = index.clearDevice(block: block, key: key)
            let parent = parentKnown ? given : recorded ?? given
            counters.device.removedBlocks += 1
            counters.device.occupancy = index.deviceCount
            guard key != .zero, index.hostSlot(of: key) == nil else { return false }
            if case .writeAfterHits(let n) = config.writePolicy, hits < n {
                counters.device.droppedBlocks += 1
                return false
            }
            if host == nil {
                // No host tier: the block goes straight to the store, through a staging buffer.
                guard let store, !store.contains(key), admission.worthLoading(tier: store.tier, layout: layout) else {
                    if let store, !store.contains(key) { Self.warnAdmissionOff(store.tier) }
                    counters.device.droppedBlocks += 1
                    return false
                }
                return startCopyToStore(block: block, key: key, parent: parent, store: store, outbox: &outbox)
            }
            guard admission.worthLoading(tier: .host, layout: layout) else {
                Self.warnAdmissionOff(.host)
                counters.device.droppedBlocks += 1
                return false
            }
            return startCopyToHost(block: block, key: key, parent: parent, outbox: &outbox)
        }
        send(outbox)
        if copying && config.synchronousEvictionCopies { waitForEvictionCopies() }
    }

    /// Blocks until every copy that reads device blocks (eviction copies, write-through) has finished,
    /// so the engine may overwrite them.
    public func waitForEvictionCopies() {
        lock.withLock { while deviceCopiesInFlight > 0 { lock.wait() } }
    }

    /// Counts an L1 hit; with write-after-N-hits, starts the copy to host at the N-th. The lock is held.
    func noteDeviceHit(_ block: BlockID, key: BlockKey) {
        let hits = index.noteHit(block: block)
        if case .writeAfterHits(let n) = config.writePolicy, hits == UInt32(clamping: n) {
            var outbox: Outbox = []
            startCopyToHost(block: block, key: key, parent: index.deviceParent(of: block), outbox: &outbox)
            pendingOutbox.append(contentsOf: outbox)
        }
    }

    /// Starts the copy of device `block` into a new host slot: an eviction or write-through copy, with a
    /// store job of its own. The lock is held. Returns false when no slot is free or evictable.
    @discardableResult
    func startCopyToHost(block: BlockID, key: BlockKey, parent: BlockKey, outbox: inout Outbox) -> Bool {
        let job = takeStoreJob(blocks: 1)
        if startCopyToHost(block: block, key: key, parent: parent, job: job, at: 0, outbox: &outbox) {
            enqueue(.high, job, step: 0)
            return true
        }
        job.handle.complete(block: 0, group: 0, success: false)
        return settle(job, false)
    }

    /// Plans the copy of device `block` into a new host slot as block `i` of `job`, whose handle
    /// completes that block once the slot is filled or failed; the caller queues step `i` once it has
    /// written every block of the job (a worker reads the job's arrays while they are not written). The
    /// lock is held. Returns false (nothing planned) when no slot is free or evictable. No allocation.
    func startCopyToHost(block: BlockID, key: BlockKey, parent: BlockKey, job: StoreJob, at i: Int,
                         outbox: inout Outbox) -> Bool {
        guard let host, index.hostSlot(of: key) == nil else { return false }
        guard let slot = takeSlot(outbox: &outbox) else {
            counters.host.notStored += 1
            return false
        }
        index.claim(slot, key: key, parent: parent, onDisk: false)
        deviceCopiesInFlight += 1
        job.blocks[i] = block
        job.keys[i] = key
        job.slots[i] = slot
        job.addresses[i] = HostAddress(host.address(of: slot))
        job.groupsLeft[i] = job.groups
        job.copiesLeft += 1
        return true
    }

    /// A pooled store job that nobody else references and whose handle the caller has dropped, reset
    /// for `blocks` blocks; or a new one. The lock is held. O(pool + blocks).
    func takeStoreJob(blocks: Int) -> StoreJob {
        for i in storeJobs.indices where isReusable(storeJobs[i], handle: &storeJobs[i].handle) {
            storeJobs[i].reset(blocks: blocks)
            storeJobs[i].keepAlive = self
            return storeJobs[i]
        }
        let job = StoreJob(manager: self, blocks: blocks)
        job.reset(blocks: blocks)
        if storeJobs.count < Self.handlePoolSize { storeJobs.append(job) }
        job.keepAlive = self
        return job
    }

    /// A step of a store: hands the device the copies of block `i`, one per layer group.
    func copyBlockToHost(_ job: StoreJob, block i: Int, expired: Bool) {
        guard let address = job.addresses[i] else { return }
        for (g, r) in byteGroups.enumerated() {
            if expired {
                finishStoreCopy(job, block: i, ok: false)
            } else {
                device.copyToHost(block: job.blocks[i], range: r, host: HostAddress(address.pointer + r.lowerBound),
                                  notify: job, tag: i * job.groups + g)
            }
        }
    }

    /// One layer-group copy of block `i` of a store has finished; after the last, the slot is filled (or
    /// released) and the block completes.
    func finishStoreCopy(_ job: StoreJob, block i: Int, ok: Bool) {
        // What the rest needs is read under the lock: the job may be reused once it has let go.
        typealias Done = (ok: Bool, slot: Int32, key: BlockKey, handle: TransferHandle)
        let (done, released): (Done?, AnyObject?) = lock.withLock {
            if !ok { job.failed[i] = true }
            job.groupsLeft[i] -= 1
            guard job.groupsLeft[i] == 0 else { return (nil, nil) }
            job.copiesLeft -= 1
            let done: Done = (!job.failed[i], job.slots[i], job.keys[i], job.handle)
            return (done, job.copiesLeft == 0 ? finish(job) : nil)
        }
        guard let done else { return }
        finishFill(slot: done.slot, key: done.key, ok: done.ok, fromDevice: true, bytes: layout.bytesPerBlock)
        done.handle.complete(block: i, group: 0, success: done.ok)
        withExtendedLifetime(released) {}   // the manager may go now
    }

    /// Without a host tier: copies device `block` into a staging buffer, then writes it to the store. The
    /// lock is held.
    private func startCopyToStore(block: BlockID, key: BlockKey, parent: BlockKey, store: any KVBlockStore,
                                  outbox: inout Outbox) -> Bool {
        deviceCopiesInFlight += 1
        let groups = byteGroups
        let device = self.device
        let bytes = layout.bytesPerBlock
        outbox.append((.high, .max, { [self] expired in
            let staging = StagingBuffer(bytes: bytes)
            let done: @Sendable (Bool) -> Void = { ok in
                // The device block may be reused from here on; the store write works on the copy.
                self.lock.withLock {
                    self.deviceCopiesInFlight -= 1
                    self.lock.broadcast()
                }
                guard ok else {
                    self.lock.withLock { self.counters.disk.notStored += 1 }
                    return
                }
                let r = store.put(key, parent: parent.nonZero, bytes: UnsafeRawBufferPointer(staging.buffer))
                self.lock.withLock { self.noteStorePut(r) }
            }
            if expired { return done(false) }
            let left = Countdown(groups.count)
            for r in groups {
                let to = HostAddress(staging.buffer.baseAddress! + r.lowerBound)
                device.copyToHost(block: block, range: r, host: to) { ok in
                    if let allOK = left.arrive(ok) { done(allOK) }
                }
            }
        }))
        return true
    }
}

extension KVTierManager {
    /// Logs once per tier that admission keeps evicted blocks out of it (loading from it would cost
    /// more than recomputing at the measured bandwidth).
    static func warnAdmissionOff(_ tier: Tier) {
        TierWarnings.once(key: "admission off: \(tier)",
                          "\(tier) tier: admission is off (a load would cost more than recomputing at the measured "
                          + "bandwidth); evicted device blocks are dropped instead of copied there")
    }
}
