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
        var result = TierLookup()
        lookup(keys: keys, deviceBlocks: deviceBlocks, maxBlocks: maxBlocks, into: &result)
        return result
    }

    /// `lookup(keys:deviceBlocks:maxBlocks:)` into `result`, whose `locations` storage is reused: no
    /// allocation once it has held as many blocks. O(blocks) hash probes.
    public func lookup(keys: [BlockKey], deviceBlocks: Int, maxBlocks: Int = .max, into result: inout TierLookup) {
        defer { flushPending() }
        result.locations.removeAll(keepingCapacity: true)
        result.limitedByAdmission = false
        lock.withLock {
            syncStoreChanges()
            let start = max(0, min(deviceBlocks, keys.count))
            for i in 0 ..< start {
                if let b = index.deviceBlock(of: keys[i]) { noteDeviceHit(b, key: keys[i]) }
            }
            result.deviceBlocks = start
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
        }
    }

    /// Loads the blocks of `plan.locations` into device blocks `into` (same order), bringing store blocks
    /// up through a host slot (store -> L2 -> L1). Returns at once; the handle completes per layer group.
    /// Blocks that vanished since `lookup` or fail their checks complete as failed; `loadedPrefixBlocks`
    /// says how many leading blocks the engine may treat as computed. No allocation in steady state (the
    /// job and its handle come from a pool). O(blocks).
    /// - Throws: `.invalidArgument` when the counts disagree or a device block is out of range (nothing
    ///   started).
    public func load(_ plan: TierLookup, keys: [BlockKey], into blocks: [BlockID]) throws(TierError) -> TransferHandle {
        guard blocks.count == plan.locations.count else {
            throw .invalidArgument("load plan, keys and device blocks disagree")
        }
        return try startLoad(keys: keys, first: plan.deviceBlocks, into: blocks)
    }

    /// Loads `keys[first ..< first + blocks.count]` into `blocks`, each found on host or in the store.
    func startLoad(keys: [BlockKey], first: Int, into blocks: [BlockID]) throws(TierError) -> TransferHandle {
        guard first >= 0, first + blocks.count <= keys.count,
              blocks.allSatisfy({ $0 >= 0 && Int($0) < device.capacityBlocks }) else {
            throw .invalidArgument("load plan, keys and device blocks disagree")
        }
        flushPending()
        var outbox: Outbox = []
        let handle: TransferHandle = lock.withLock {
            let job = takeLoadJob(blocks: blocks.count)
            // The caller holds the manager: a job finished here can drop its reference under the lock.
            if blocks.isEmpty { return settle(job, job.handle) }
            planLoad(keys: keys, first: first, into: blocks, job: job, outbox: &outbox)
            for i in job.slots.count ..< blocks.count { job.handle.fail(block: i, groups: 0 ..< job.groups) }
            if job.slots.isEmpty { return settle(job, job.handle) }
            job.readsLeft = job.fromDisk.count { $0 }
            if job.readsLeft == 0 {
                if queueGroupCopies(job) { _ = settle(job, ()) }
            } else {
                for i in job.fromDisk.indices where job.fromDisk[i] { enqueue(.high, job, step: -1 - i) }
            }
            return job.handle
        }
        send(outbox)
        flushPending()
        return handle
    }

    /// Pins and places the blocks of a load into `job`; the lock is held. The job covers the blocks up to
    /// the first one found nowhere.
    private func planLoad(keys: [BlockKey], first: Int, into blocks: [BlockID], job: LoadJob, outbox: inout Outbox) {
        // Pass 1: pin every block that is on host now, so that taking slots for the store blocks below
        // cannot evict them.
        for i in 0 ..< blocks.count {
            if let s = index.readyHostSlot(of: keys[first + i]) {
                index.pin(s)
                job.prePinned.append(s)
            } else {
                job.prePinned.append(-1)
            }
        }
        // Pass 2: in order; store blocks get a host slot (promotion) or, when every slot is pinned, a
        // staging buffer of the load's own. The plan ends at the first block found nowhere.
        var staged = 0
        for i in 0 ..< blocks.count {
            let key = keys[first + i]
            if job.prePinned[i] >= 0 {
                index.touch(job.prePinned[i])
                job.slots.append(job.prePinned[i])
                job.fromDisk.append(false)
            } else if index.hostSlot(of: key) == nil, let store, store.contains(key) {
                if host != nil, let s = takeSlot(outbox: &outbox) {
                    index.claim(s, key: key, parent: Self.parent(in: keys, at: first + i), onDisk: true)
                    job.slots.append(s)
                } else {
                    job.slots.append(-1 - Int32(staged))
                    staged += 1
                }
                job.fromDisk.append(true)
            } else {
                break
            }
        }
        let n = job.slots.count
        // Unpin the pass-1 blocks the plan no longer reaches.
        for i in n ..< blocks.count where job.prePinned[i] >= 0 { _ = index.unpin(job.prePinned[i]) }
        let bytes = layout.bytesPerBlock
        if staged > 0 { job.staging = UnsafeMutableRawBufferPointer.allocate(byteCount: staged * bytes, alignment: 64) }
        for i in 0 ..< n {
            let s = job.slots[i]
            // A non-negative slot exists only with a host tier.
            job.addresses.append(HostAddress(s >= 0 ? host!.address(of: s) : job.staging!.baseAddress! + Int(-1 - s) * bytes))
            job.keys.append(keys[first + i])
            job.parents.append(Self.parent(in: keys, at: first + i))
            job.blocks.append(blocks[i])
            job.failed.append(false)
            job.groupsLeft.append(job.groups)
        }
        job.blocksLeft = n
        job.handle.setLoadedFromDisk(job.fromDisk)
    }

    /// A pooled load job that nobody else references any more (its steps and copies have all run) and
    /// whose handle the caller has dropped, reset for `blocks` blocks; or a new one. The lock is held.
    /// O(pool + blocks).
    private func takeLoadJob(blocks: Int) -> LoadJob {
        for i in loadJobs.indices where isReusable(loadJobs[i], handle: &loadJobs[i].handle) {
            loadJobs[i].reset(blocks: blocks)
            loadJobs[i].keepAlive = self
            return loadJobs[i]
        }
        let job = LoadJob(manager: self, blocks: blocks)
        if loadJobs.count < Self.handlePoolSize { loadJobs.append(job) }
        job.keepAlive = self
        return job
    }

    /// Finishes `job`, which has nothing in flight, dropping its hold on the manager, and returns
    /// `value`. The lock is held, by a caller that holds the manager itself.
    func settle<T>(_ job: TransferJob, _ value: T) -> T {
        withExtendedLifetime(finish(job)) {}
        return value
    }

    /// A step of a load: reads block `i` from the store into its host place, then, after the last read,
    /// queues the group copies.
    func readStep(_ job: LoadJob, block i: Int, expired: Bool) {
        let ok = !expired && readFromStore(key: job.keys[i], slot: job.slots[i], address: job.addresses[i])
        let finished: AnyObject? = lock.withLock {
            if !ok { job.failed[i] = true }
            job.readsLeft -= 1
            guard job.readsLeft == 0, queueGroupCopies(job) else { return nil }
            return finish(job)
        }
        withExtendedLifetime(finished) {}   // the manager may go now, outside its lock
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

    /// Phase 2 of a load: fails the blocks that failed so far, then queues one step per layer group, each
    /// copying that group of every other block. The lock is held. Returns true when every block had
    /// failed: nothing queued, the load is over.
    private func queueGroupCopies(_ job: LoadJob) -> Bool {
        job.blocksLeft -= job.failed.count { $0 }
        job.skip.append(contentsOf: job.failed)
        job.started = KVClock.monotonicNanos()
        for i in job.skip.indices where job.skip[i] { job.handle.fail(block: i, groups: 0 ..< job.groups) }
        if job.blocksLeft == 0 { return true }
        for g in 0 ..< job.groups { enqueue(.high, job, step: g) }
        return false
    }

    /// A step of a load: hands the device the copy of layer group `g` of every block not skipped.
    func copyGroup(_ job: LoadJob, group g: Int, expired: Bool) {
        let r = byteGroups[g]
        for i in job.skip.indices where !job.skip[i] {
            if expired {
                finishGroup(job, block: i, group: g, ok: false)
            } else {
                device.copyFromHost(block: job.blocks[i], range: r, host: HostAddress(job.addresses[i].pointer + r.lowerBound),
                                    notify: job, tag: i * job.groups + g)
            }
        }
    }

    /// Layer group `g` of block `i` of a load has arrived (or failed).
    func finishGroup(_ job: LoadJob, block i: Int, group g: Int, ok: Bool) {
        let (handle, finished): (TransferHandle, AnyObject?) = lock.withLock {
            if !ok { job.failed[i] = true }
            job.groupsLeft[i] -= 1
            guard job.groupsLeft[i] == 0 else { return (job.handle, nil) }
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
                let dt = KVClock.monotonicNanos() - job.started
                counters.host.loadCalls += 1
                counters.host.loadNanosTotal += dt
                counters.host.loadNanosMax = max(counters.host.loadNanosMax, dt)
                admission.observe(tier: .host, bytes: job.blocks.count * layout.bytesPerBlock, nanos: dt)
                config.loadObserver?(.host, dt)
                return (job.handle, finish(job))
            }
            return (job.handle, nil)
        }
        handle.complete(block: i, group: g, success: ok)
        withExtendedLifetime(finished) {}   // the manager may go now, outside its lock
    }

    /// The parent of `keys[i]` in a prompt's chain: the previous key, `.zero` for the first.
    static func parent(in keys: [BlockKey], at i: Int) -> BlockKey { i == 0 ? .zero : keys[i - 1] }
}
