import KVCache

/// Lookup and load: the longest prefix across tiers, and its blocks brought into device blocks.
extension KVTierManager {
    /// Handles kept for reuse (loads in flight at once beyond it get fresh ones).
    static let handlePoolSize = 8

    /// The longest prefix of `keys` cached across tiers. The first `deviceBlocks` blocks are in L1 (the
    /// core's `lookup` said so); from there, each block is looked up in host, then the store, until one
    /// is missing or `LoadOrRecompute` says loading it (at its depth in the prefix) would be slower than
    /// recomputing it (`limitedByAdmission`). Counts per-tier hits. O(blocks) hash probes.
    /// - Parameter maxBlocks: at most this many blocks in all (e.g. excluding the last prompt token's block).
    public func lookup(keys: [BlockKey], deviceBlocks: Int, maxBlocks: Int = .max) -> TierLookup {
        defer { flushPending() }
        return lock.withLock {
            syncStoreChanges()
            let start = max(0, min(deviceBlocks, keys.count))
            for i in 0 ..< start {
                if let b = index.deviceBlock(of: keys[i]) { noteDeviceHit(b, key: keys[i]) }
            }
            var result = TierLookup(deviceBlocks: start, locations: [], limitedByAdmission: false)
            let end = min(keys.count, maxBlocks)
            var i = start
            while i < end {
                let k = keys[i]
                let tier: Tier
                if index.readyHostSlot(of: k) != nil {
                    tier = .host
                } else if let store, store.contains(k) {
                    tier = store.tier
                } else {
                    break
                }
                guard admission.worthLoading(tier: tier, layout: layout, depth: i) else {
                    result.limitedByAdmission = true
                    break
                }
                result.locations.append(tier)
                i += 1
            }
            counters.device.hits += start
            counters.host.hits += result.hostBlocks
            counters.disk.hits += result.diskBlocks
            return result
        }
    }

    /// Loads the blocks of `plan.locations` into device blocks `into` (same order), bringing store blocks
    /// up through a host slot (store -> L2 -> L1). Returns at once; the handle completes per layer group.
    /// Blocks that vanished since `lookup` or fail their checks complete as failed; `loadedPrefixBlocks`
    /// says how many leading blocks the engine may treat as computed.
    /// - Throws: `.invalidArgument` when the counts disagree or a device block is out of range (nothing
    ///   started).
    public func load(_ plan: TierLookup, keys: [BlockKey], into blocks: [BlockID]) throws(TierError) -> TransferHandle {
        guard blocks.count == plan.locations.count, plan.deviceBlocks + blocks.count <= keys.count,
              blocks.allSatisfy({ $0 >= 0 && Int($0) < device.capacityBlocks }) else {
            throw .invalidArgument("load plan, keys and device blocks disagree")
        }
        flushPending()
        let handle = takeHandle(blocks: blocks.count)
        if blocks.isEmpty { return handle }
        var outbox: Outbox = []
        let job = lock.withLock { planLoad(plan, keys: keys, into: blocks, handle: handle, outbox: &outbox) }
        send(outbox)
        for i in job.slots.count ..< blocks.count { handle.fail(block: i, groups: 0 ..< groupRanges.count) }
        if job.slots.isEmpty { return handle }
        let storeReads = job.fromDisk.indices.filter { job.fromDisk[$0] }
        if storeReads.isEmpty {
            submitGroupCopies(job)
        } else {
            let left = Countdown(storeReads.count)
            for i in storeReads {
                transfers.submit(.high) { [self] expired in
                    let ok = !expired && self.readFromStore(key: job.keys[i], slot: job.slots[i],
                                                            address: job.addresses[i])
                    if !ok { self.lock.withLock { job.failed[i] = true } }
                    if left.arrive(ok) != nil { self.submitGroupCopies(job) }
                }
            }
        }
        return handle
    }

    /// Pins and places the blocks of a load; the lock is held. The job covers the plan up to the first
    /// block found nowhere.
    private func planLoad(_ plan: TierLookup, keys: [BlockKey], into blocks: [BlockID], handle: TransferHandle,
                          outbox: inout Outbox) -> LoadJob {
        // Pass 1: pin every planned block that is on host now, so that taking slots for the store
        // blocks below cannot evict them.
        var prePinned = [Int32](repeating: -1, count: blocks.count)
        for i in 0 ..< blocks.count {
            if let s = index.readyHostSlot(of: keys[plan.deviceBlocks + i]) {
                index.pin(s)
                prePinned[i] = s
            }
        }
        // Pass 2: in order; store blocks get a host slot (promotion) or, when every slot is pinned, a
        // staging buffer of the load's own. The plan ends at the first block found nowhere.
        var slots: [Int32] = []
        var fromDisk: [Bool] = []
        var staged = 0
        for i in 0 ..< blocks.count {
            let key = keys[plan.deviceBlocks + i]
            if prePinned[i] >= 0 {
                index.touch(prePinned[i])
                slots.append(prePinned[i])
                fromDisk.append(false)
            } else if index.hostSlot(of: key) == nil, let store, store.contains(key) {
                if host != nil, let s = takeSlot(outbox: &outbox) {
                    index.claim(s, key: key, parent: Self.parent(in: keys, at: plan.deviceBlocks + i), onDisk: true)
                    slots.append(s)
                } else {
                    slots.append(-1 - Int32(staged))
                    staged += 1
                }
                fromDisk.append(true)
            } else {
                break
            }
        }
        // Unpin the pass-1 blocks the plan no longer reaches.
        for i in slots.count ..< blocks.count where prePinned[i] >= 0 { _ = index.unpin(prePinned[i]) }
        let bytes = layout.bytesPerBlock
        let staging = staged > 0
            ? UnsafeMutableRawBufferPointer.allocate(byteCount: staged * bytes, alignment: 64) : nil
        let addresses = slots.map { s in
            // A non-negative slot exists only with a host tier.
            HostAddress(s >= 0 ? host!.address(of: s) : staging!.baseAddress! + Int(-1 - s) * bytes)
        }
        handle.loadedFromDisk = fromDisk
        let first = plan.deviceBlocks
        return LoadJob(keys: Array(keys[first ..< first + slots.count]),
                       parents: (first ..< first + slots.count).map { Self.parent(in: keys, at: $0) },
                       blocks: Array(blocks[0 ..< slots.count]),
                       slots: slots, fromDisk: fromDisk, addresses: addresses, groups: byteGroups.count,
                       handle: handle, staging: staging)
    }

    /// A handle for a load of `blocks` blocks: a pooled one that nobody else references any more (the
    /// caller dropped it and every job that completed it is gone), reset, or a new one. O(pool + blocks).
    private func takeHandle(blocks: Int) -> TransferHandle {
        lock.withLock {
            for i in handlePool.indices where isKnownUniquelyReferenced(&handlePool[i]) && handlePool[i].isComplete {
                handlePool[i].reset(blocks: blocks)
                return handlePool[i]
            }
            let h = TransferHandle(blocks: blocks, layerGroups: groupRanges)
            if handlePool.count < Self.handlePoolSize { handlePool.append(h) }
            return h
        }
    }

    /// Reads `key` from the store into `slot` and marks the slot ready (or releases it); a negative
    /// `slot` is a load's staging buffer. Returns success.
    func readFromStore(key: BlockKey, slot: Int32, address: HostAddress) -> Bool {
        guard let store else { return false }
        let bytes = layout.bytesPerBlock
        let t0 = KVClock.monotonicNanos()
        let r = store.read(key, into: UnsafeMutableRawBufferPointer(start: address.pointer, count: bytes))
        let dt = KVClock.monotonicNanos() - t0
        lock.withLock {
            guard r == .hit else {
                counters.disk.failedLoads += 1
                if slot >= 0 { unpinOrRelease(slot) }
                return
            }
            counters.disk.loadedBlocks += 1
            counters.disk.bytesOut += bytes
            counters.disk.loadCalls += 1
            counters.disk.loadNanosTotal += dt
            counters.disk.loadNanosMax = max(counters.disk.loadNanosMax, dt)
            if slot >= 0 { finishStoreFill(slot: slot, key: key) }
            admission.observe(tier: store.tier, bytes: bytes, nanos: dt)
            config.loadObserver?(store.tier, dt)
        }
        return r == .hit
    }

    /// Phase 2 of a load: one job per layer group, in group order, each copying that group of every block.
    private func submitGroupCopies(_ job: LoadJob) {
        let failed: [Bool] = lock.withLock {
            job.blocksLeft -= job.failed.count { $0 }
            return job.failed
        }
        let started = KVClock.monotonicNanos()
        for i in failed.indices where failed[i] {
            job.handle.fail(block: i, groups: 0 ..< job.groups)
        }
        let live = failed.indices.filter { !failed[$0] }
        if live.isEmpty { return }
        let device = self.device
        for (g, r) in byteGroups.enumerated() {
            transfers.submit(.high) { [self] expired in
                for i in live {
                    if expired {
                        self.finishGroup(job, block: i, group: g, ok: false, started: started)
                        continue
                    }
                    let from = HostAddress(job.addresses[i].pointer + r.lowerBound)
                    device.copyFromHost(block: job.blocks[i], range: r, host: from) { ok in
                        self.finishGroup(job, block: i, group: g, ok: ok, started: started)
                    }
                }
            }
        }
    }

    private func finishGroup(_ job: LoadJob, block i: Int, group g: Int, ok: Bool, started: UInt64) {
        lock.withLock {
            if !ok { job.failed[i] = true }
            job.groupsLeft[i] -= 1
            guard job.groupsLeft[i] == 0 else { return }
            if job.slots[i] >= 0 { _ = index.unpin(job.slots[i]) }
            if job.failed[i] {
                counters.host.failedLoads += 1
            } else {
                counters.host.loadedBlocks += 1
                counters.host.bytesOut += layout.bytesPerBlock
                setResident(block: job.blocks[i], key: job.keys[i], parent: job.parents[i])
            }
            job.blocksLeft -= 1
            if job.blocksLeft == 0 {
                let dt = KVClock.monotonicNanos() - started
                counters.host.loadCalls += 1
                counters.host.loadNanosTotal += dt
                counters.host.loadNanosMax = max(counters.host.loadNanosMax, dt)
                admission.observe(tier: .host, bytes: job.blocks.count * layout.bytesPerBlock, nanos: dt)
                config.loadObserver?(.host, dt)
            }
        }
        job.handle.complete(block: i, group: g, success: ok)
    }

    /// The parent of `keys[i]` in a prompt's chain: the previous key, `.zero` for the first.
    static func parent(in keys: [BlockKey], at i: Int) -> BlockKey { i == 0 ? .zero : keys[i - 1] }
}
