import KVCache
import KVPlan
import Synchronization

/// The multi-tier KV store below the device pool: L2 host memory (`HostSlabPool`, NUMA placed) and
/// L3 disk (`DiskBlockStore`), with asynchronous transfers on a `TransferWorkers`.
///
/// How an engine drives it (`PrefixPlanner` in KVRuntime is the one place that does it):
/// 1. Set it as the `KVCacheManager`'s `evictionObserver`: an evicted L1 block is copied to host before
///    its id is reused (policy: `TierConfig.writePolicy`). Call `waitForEvictionCopies()` before writing
///    into blocks the last `allocate` returned (or set `synchronousEvictionCopies`).
/// 2. Tell it which device block holds which key (and its parent key) after each commit (`noteStored`).
/// 3. For a new request: the core's `lookup` gives the L1 prefix; `lookup(keys:deviceBlocks:maxBlocks:)`
///    extends it through host and disk (admission permitting). After `allocate`, `load(_:keys:into:)`
///    brings those blocks into the freshly allocated device blocks; wait on the handle (whole or per
///    layer group), then `commit` the loaded tokens as computed.
///
/// Thread-safe: one mutex guards the tier index; byte copies run on the workers outside it. Device copies
/// are never issued while the mutex is held. Lock order: manager, then disk store, then worker queue.
public final class KVTierManager: @unchecked Sendable {
    // Sendable: every mutable field is guarded by `lock`.
    public let config: TierConfig
    public let layout: KVGeometry
    public let device: any DeviceMemory
    public let host: HostSlabPool?
    public let disk: DiskBlockStore?
    let transfers: TransferWorkers
    let groupRanges: [Range<Int>]      // layer ranges
    let byteGroups: [Range<Int>]       // byte ranges of those layer groups within a block

    private let lock = ConditionLock()
    // L1 residency, as told by noteStored/willEvict/load.
    private var l1Key: [BlockKey]
    private var l1Parent: [BlockKey]   // .zero: a first block (or not known)
    private var l1Hits: [UInt32]
    private var l1Index: [BlockKey: BlockID] = [:]
    private var l1CopiesInFlight = 0
    // L2 slots.
    private enum SlotState: UInt8 { case free, filling, ready }
    private var slotKey: [BlockKey]
    private var slotParent: [BlockKey]   // .zero: a first block (or not known)
    private var slotState: [SlotState]
    private var slotPins: [Int32]
    private var slotOnDisk: [Bool]
    private var slotSpilling: [Bool]
    private var lruPrev: [Int32], lruNext: [Int32]
    private var lruHead: Int32 = -1, lruTail: Int32 = -1   // head: most recently used
    private var l2Index: [BlockKey: Int32] = [:]
    private var spillsInFlight = 0
    // Bookkeeping.
    private var admission: TierAdmission
    private var counters = TierStatistics()
    private var events: [KVEvent] = []
    private var diskChanges: [DiskChange] = []

    /// - Parameters:
    ///   - device: the L1 pool's bytes (a `HostDeviceMemory` stand-in or the engine's `ServerCopyBackend`).
    /// - Throws: `.invalidArgument` when the device's layout differs from `config.layout` or sizes are bad;
    ///   errors of the host pool, disk store or worker threads.
    public init(config: TierConfig, device: any DeviceMemory) throws(TierError) {
        guard device.layout == config.layout else { throw .invalidArgument("device layout differs from the tier layout") }
        guard config.hostBlocks >= 0, config.layerGroups >= 1, config.spillWatermark > 0 else {
            throw .invalidArgument("bad tier configuration")
        }
        if case .writeAfterHits(let n) = config.writePolicy, n < 1 { throw .invalidArgument("writeAfterHits needs n >= 1") }
        if let d = config.disk, d.maxBlockBytes < config.layout.bytesPerBlock {
            throw .invalidArgument("disk store blocks are smaller than the layout's")
        }
        self.config = config
        layout = config.layout
        self.device = device
        host = config.hostBlocks > 0
            ? try HostSlabPool(blockBytes: layout.bytesPerBlock, capacity: config.hostBlocks, placement: config.hostPlacement,
                               lockMemory: config.lockHostMemory, sysfsRoot: config.sysfsRoot)
            : nil
        disk = try config.disk.map { c throws(TierError) in try DiskBlockStore(c) }
        transfers = try TransferWorkers(workers: config.workers)
        let layout = config.layout
        let ranges = layout.layerGroups(config.layerGroups)
        groupRanges = ranges
        byteGroups = ranges.map { layout.byteRange(layers: $0) }
        let n = device.capacityBlocks, h = config.hostBlocks
        l1Key = Array(repeating: .zero, count: n)
        l1Parent = Array(repeating: .zero, count: n)
        l1Hits = Array(repeating: 0, count: n)
        slotKey = Array(repeating: .zero, count: h)
        slotParent = Array(repeating: .zero, count: h)
        slotState = Array(repeating: .free, count: h)
        slotPins = Array(repeating: 0, count: h)
        slotOnDisk = Array(repeating: false, count: h)
        slotSpilling = Array(repeating: false, count: h)
        lruPrev = Array(repeating: -1, count: h)
        lruNext = Array(repeating: -1, count: h)
        admission = config.admission
        counters.host.capacity = h
        counters.device.capacity = n
        counters.hostPlacement = host?.placement
        if let disk { counters.disk.capacity = disk.config.capacityBlocks ?? 0; counters.disk.occupancy = disk.count }
        if config.calibrateAtStart { calibrate() }
        if config.recordEvents, let disk { announceRecovered(disk) }
    }

    /// After a restart: one `blockStored` event (tier `.disk`) per block the disk tier recovered, with the
    /// parent its record names, so a router learns what survived; from then on the disk's own journal
    /// gives its events in order. O(blocks on disk).
    private func announceRecovered(_ disk: DiskBlockStore) {
        disk.journalsStores = true
        disk.drainChanges(into: &diskChanges)   // removals while opening: of blocks never announced
        diskChanges.removeAll(keepingCapacity: true)
        for (key, parent) in disk.blocksWithParents() {
            events.append(.blockStored(keys: [key], parent: parent, blockTokens: layout.blockTokens, tier: .disk))
        }
    }

    /// Seeds the admission model: times a host-to-host copy of one synthetic block (when the device is
    /// the host stand-in: an engine's own copies are measured online instead) and one codec round trip.
    /// Costs a few milliseconds for a 2 MiB block.
    private func calibrate() {
        let n = layout.bytesPerBlock
        let a = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 64)
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n, KVByteCodec.maxEncodedSize(rawBytes: n)), alignment: 64)
        defer { a.deallocate(); b.deallocate() }
        SyntheticKV.fill(a, layout: layout, seed: 1)
        var hostBW: Double? = nil, decodeBW: Double? = nil
        if device is HostDeviceMemory {
            b.baseAddress!.copyMemory(from: a.baseAddress!, byteCount: n)   // fault the pages in first
            let t0 = KVClock.monotonicNanos()
            b.baseAddress!.copyMemory(from: a.baseAddress!, byteCount: n)
            hostBW = Double(n) / (Double(max(1, KVClock.monotonicNanos() - t0)) * 1e-9)
        }
        if disk != nil, let codec = try? KVByteCodec(layout: layout),
           let (mode, count) = try? codec.encode(UnsafeRawBufferPointer(a), into: b), mode != .raw {
            let t0 = KVClock.monotonicNanos()
            if (try? codec.decode(UnsafeRawBufferPointer(rebasing: b[0 ..< count]), mode: mode, into: a)) != nil {
                decodeBW = Double(n) / (Double(max(1, KVClock.monotonicNanos() - t0)) * 1e-9)
            }
        }
        admission.seed(hostBytesPerSecond: hostBW, decodeBytesPerSecond: decodeBW)
    }

    deinit { transfers.shutdown() }

    private typealias Outbox = [(TransferPriority, UInt64, TransferWorkers.Job)]

    private func send(_ outbox: Outbox) {
        for (p, d, job) in outbox { transfers.submit(p, deadlineNanos: d, job) }
    }

    // MARK: L1 notifications

    /// Records that device block `block` now holds the committed block `key`, whose parent in the prefix
    /// tree is `parent` (nil for a first block; the previous key of the prompt's chain otherwise). Call
    /// after `commit` for the newly published blocks. With write-through, starts its copy to host; the
    /// tier's events name `parent`. O(1).
    public func noteStored(block: BlockID, key: BlockKey, parent: BlockKey? = nil) {
        var outbox: Outbox = []
        lock.withLock {
            guard block >= 0, Int(block) < l1Key.count, key != .zero else { return }
            setResident(block: block, key: key, parent: parent ?? .zero)
            if config.writePolicy == .writeThrough { startCopyToHost(block: block, key: key, parent: parent ?? .zero, outbox: &outbox) }
        }
        send(outbox)
    }

    /// The lock is held. `parent` is `.zero` for a first block.
    private func setResident(block: BlockID, key: BlockKey, parent: BlockKey) {
        let old = l1Key[Int(block)]
        if old != .zero, old != key, l1Index[old] == block { l1Index[old] = nil }
        if old != key { l1Hits[Int(block)] = 0 }
        l1Key[Int(block)] = key
        l1Parent[Int(block)] = parent
        l1Index[key] = block
        counters.device.occupancy = l1Index.count
    }

    /// `BlockEvictionObserver`: the device pool is about to reuse `block`. Copies it to host when the
    /// write policy and admission say so and host does not hold it yet; the tier's events name `parent`
    /// (nil for a first block). O(1) plus an asynchronous copy.
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
            guard block >= 0, Int(block) < l1Key.count else { return false }
            let hits = l1Hits[Int(block)]
            let parent = parentKnown || l1Key[Int(block)] != key ? given : l1Parent[Int(block)]
            if l1Key[Int(block)] == key {
                l1Key[Int(block)] = .zero; l1Hits[Int(block)] = 0
                if l1Index[key] == block { l1Index[key] = nil }
            }
            counters.device.removedBlocks += 1
            counters.device.occupancy = l1Index.count
            guard key != .zero, l2Index[key] == nil else { return false }
            if case .writeAfterHits(let n) = config.writePolicy, hits < n { counters.device.droppedBlocks += 1; return false }
            if host == nil {
                // No host tier: the block goes straight to disk, through a staging buffer.
                guard let disk, !disk.contains(key), admission.worthLoading(tier: .disk, layout: layout) else {
                    counters.device.droppedBlocks += 1; return false
                }
                return startCopyToDisk(block: block, key: key, parent: parent, disk: disk, outbox: &outbox)
            }
            guard admission.worthLoading(tier: .host, layout: layout) else { counters.device.droppedBlocks += 1; return false }
            return startCopyToHost(block: block, key: key, parent: parent, outbox: &outbox)
        }
        send(outbox)
        if copying && config.synchronousEvictionCopies { waitForEvictionCopies() }
    }

    /// Blocks until every copy that reads device blocks (eviction copies, write-through) has finished,
    /// so the engine may overwrite them.
    public func waitForEvictionCopies() {
        lock.withLock { while l1CopiesInFlight > 0 { lock.wait() } }
    }

    /// Starts the copy of device `block` into a new host slot. The lock is held. Returns false when no
    /// slot is free or evictable.
    @discardableResult
    private func startCopyToHost(block: BlockID, key: BlockKey, parent: BlockKey, outbox: inout Outbox) -> Bool {
        guard let host, l2Index[key] == nil else { return false }
        guard let slot = takeSlot(outbox: &outbox) else { counters.host.notStored += 1; return false }
        claim(slot, key: key, parent: parent, onDisk: false)
        l1CopiesInFlight += 1
        let address = HostAddress(host.address(of: slot))
        let groups = byteGroups
        let device = self.device
        let bytes = layout.bytesPerBlock
        outbox.append((.high, .max, { [self] expired in
            if expired { return self.finishFill(slot: slot, key: key, ok: false, fromDevice: true, bytes: bytes) }
            let left = Countdown(groups.count)
            for r in groups {
                device.copyToHost(block: block, range: r, host: HostAddress(address.pointer + r.lowerBound)) { ok in
                    if let allOK = left.arrive(ok) {
                        self.finishFill(slot: slot, key: key, ok: allOK, fromDevice: true, bytes: bytes)
                    }
                }
            }
        }))
        return true
    }

    /// Without a host tier: copies device `block` into a staging buffer, then writes it to disk. The
    /// lock is held.
    private func startCopyToDisk(block: BlockID, key: BlockKey, parent: BlockKey, disk: DiskBlockStore, outbox: inout Outbox) -> Bool {
        l1CopiesInFlight += 1
        let groups = byteGroups
        let device = self.device
        let bytes = layout.bytesPerBlock
        outbox.append((.high, .max, { [self] expired in
            let staging = StagingBuffer(bytes: bytes)
            let done: @Sendable (Bool) -> Void = { ok in
                // The device block may be reused from here on; the disk write works on the copy.
                self.lock.withLock { self.l1CopiesInFlight -= 1; self.lock.broadcast() }
                guard ok else { self.lock.withLock { self.counters.disk.notStored += 1 }; return }
                let r = disk.put(key, parent: parent.nonZero, bytes: UnsafeRawBufferPointer(staging.buffer))
                self.lock.withLock { self.noteDiskPut(r) }
            }
            if expired { return done(false) }
            let left = Countdown(groups.count)
            for r in groups {
                device.copyToHost(block: block, range: r, host: HostAddress(staging.buffer.baseAddress! + r.lowerBound)) { ok in
                    if let allOK = left.arrive(ok) { done(allOK) }
                }
            }
        }))
        return true
    }

    // MARK: Host slots (the lock is held in all of these)

    private func claim(_ slot: Int32, key: BlockKey, parent: BlockKey, onDisk: Bool) {
        let s = Int(slot)
        slotKey[s] = key; slotParent[s] = parent; slotState[s] = .filling; slotPins[s] = 1; slotOnDisk[s] = onDisk; slotSpilling[s] = false
        l2Index[key] = slot
    }

    private func lruRemove(_ slot: Int32) {
        let s = Int(slot), p = lruPrev[s], n = lruNext[s]
        if p >= 0 { lruNext[Int(p)] = n } else if lruHead == slot { lruHead = n }
        if n >= 0 { lruPrev[Int(n)] = p } else if lruTail == slot { lruTail = p }
        lruPrev[s] = -1; lruNext[s] = -1
    }

    private func lruPushFront(_ slot: Int32) {
        let s = Int(slot)
        lruPrev[s] = -1; lruNext[s] = lruHead
        if lruHead >= 0 { lruPrev[Int(lruHead)] = slot }
        lruHead = slot
        if lruTail < 0 { lruTail = slot }
    }

    /// A free slot, evicting an unpinned ready slot if none is free: among the `evictionWindow` least
    /// recently used, one already on disk (free to drop) is preferred; otherwise the least recently used,
    /// which is first written to disk inline. O(1) unless many slots are pinned.
    private func takeSlot(outbox: inout Outbox) -> Int32? {
        guard let host else { return nil }
        if let s = host.allocate() { return s }
        var v = lruTail, victim: Int32 = -1, seen = 0
        while v >= 0 && seen < Self.evictionWindow {
            if slotPins[Int(v)] == 0 {
                if victim < 0 { victim = v }
                if disk == nil || slotOnDisk[Int(v)] { victim = v; break }
                seen += 1
            }
            v = lruPrev[Int(v)]
        }
        if victim < 0 {   // the window was all pinned: keep looking for any unpinned slot
            while v >= 0 && slotPins[Int(v)] > 0 { v = lruPrev[Int(v)] }
            victim = v
        }
        guard victim >= 0 else { return nil }
        evictSlot(victim)
        return host.allocate()
    }

    /// How many cold host slots `takeSlot` considers when looking for one that is already on disk.
    static let evictionWindow = 8

    /// Drops a ready, unpinned slot from the host tier; first writes it to disk (inline) when it is not
    /// there yet and the disk tier pays.
    private func evictSlot(_ slot: Int32) {
        let s = Int(slot), key = slotKey[s]
        if !slotOnDisk[s], let disk, let host, admission.worthLoading(tier: .disk, layout: layout) {
            let r = disk.put(key, parent: slotParent[s].nonZero,
                             bytes: UnsafeRawBufferPointer(start: host.address(of: slot), count: layout.bytesPerBlock))
            noteDiskPut(r)
            slotOnDisk[s] = r != .stored && r != .alreadyStored ? false : true
        }
        if !slotOnDisk[s] { counters.host.droppedBlocks += 1 }
        releaseSlot(slot)
    }

    private func releaseSlot(_ slot: Int32) {
        let s = Int(slot), key = slotKey[s]
        if slotState[s] == .ready {
            lruRemove(slot)
            counters.host.removedBlocks += 1
            if config.recordEvents { events.append(.blockRemoved(keys: [key], tier: .host)) }
        }
        if l2Index[key] == slot { l2Index[key] = nil }
        slotKey[s] = .zero; slotParent[s] = .zero; slotState[s] = .free; slotPins[s] = 0; slotSpilling[s] = false; slotOnDisk[s] = false
        try? host?.release(slot)   // the slot is allocated here by construction
        counters.host.occupancy = l2Index.count
    }

    /// Counts a disk write; its event (and those of the blocks it evicted) come from the disk's journal,
    /// taken in now so the stream stays in order. The lock is held.
    private func noteDiskPut(_ r: DiskPutOutcome) {
        switch r {
        case .stored:
            counters.disk.storedBlocks += 1
            counters.disk.bytesIn += layout.bytesPerBlock
            syncDiskChanges()
        case .alreadyStored: break
        case .notStored: counters.disk.notStored += 1
        }
    }

    /// A copy into `slot` finished (from the device or from disk).
    private func finishFill(slot: Int32, key: BlockKey, ok: Bool, fromDevice: Bool, bytes: Int) {
        var outbox: Outbox = []
        lock.withLock {
            if fromDevice { l1CopiesInFlight -= 1 }
            let s = Int(slot)
            slotPins[s] -= 1
            if ok {
                slotState[s] = .ready
                lruPushFront(slot)
                counters.host.storedBlocks += 1
                counters.host.bytesIn += bytes
                counters.host.occupancy = l2Index.count
                if config.recordEvents {
                    events.append(.blockStored(keys: [key], parent: slotParent[s].nonZero, blockTokens: layout.blockTokens, tier: .host))
                }
                maybeSpill(outbox: &outbox)
            } else {
                counters.host.notStored += 1
                if slotPins[s] == 0 { releaseSlot(slot) }
            }
            lock.broadcast()
        }
        send(outbox)
    }

    /// Background L2 -> L3: above the watermark, writes the coldest host blocks that are not on disk yet.
    private func maybeSpill(outbox: inout Outbox) {
        guard let disk, let host, config.spillWatermark < 1, admission.worthLoading(tier: .disk, layout: layout) else { return }
        let limit = Int(config.spillWatermark * Double(host.capacity))
        var v = lruTail
        while l2Index.count - spillsInFlight > limit && spillsInFlight < 2 * transfers.workerCount && v >= 0 {
            let s = Int(v)
            if slotState[s] == .ready && slotPins[s] == 0 && !slotOnDisk[s] && !slotSpilling[s] {
                slotSpilling[s] = true; slotPins[s] += 1; spillsInFlight += 1
                let slot = v, key = slotKey[s], parent = slotParent[s]
                let src = HostAddress(host.address(of: slot))
                let bytes = layout.bytesPerBlock
                outbox.append((.low, .max, { [self] _ in
                    let r = disk.put(key, parent: parent.nonZero, bytes: UnsafeRawBufferPointer(start: src.pointer, count: bytes))
                    self.lock.withLock {
                        self.spillsInFlight -= 1
                        self.slotPins[s] -= 1; self.slotSpilling[s] = false
                        self.noteDiskPut(r)
                        if self.slotKey[s] == key, r == .stored || r == .alreadyStored { self.slotOnDisk[s] = true }
                    }
                }))
            }
            v = lruPrev[s]
        }
    }

    // MARK: Lookup and load

    /// The longest prefix of `keys` cached across tiers. The first `deviceBlocks` blocks are in L1 (the
    /// core's `lookup` said so); from there, each block is looked up in host, then disk, until one is
    /// missing or admission says loading it would be slower than recomputing (`limitedByAdmission`).
    /// Counts per-tier hits. O(blocks) hash probes.
    /// - Parameter maxBlocks: at most this many blocks in all (e.g. excluding the last prompt token's block).
    public func lookup(keys: [BlockKey], deviceBlocks: Int, maxBlocks: Int = .max) -> TierLookup {
        defer { flushPending() }
        return lock.withLock {
            syncDiskChanges()
            let start = max(0, min(deviceBlocks, keys.count))
            for i in 0 ..< start {
                if let b = l1Index[keys[i]] { noteL1Hit(b, key: keys[i]) }
            }
            var result = TierLookup(deviceBlocks: start, locations: [], limitedByAdmission: false)
            let end = min(keys.count, maxBlocks)
            var i = start
            while i < end {
                let k = keys[i]
                let tier: Tier
                if let s = l2Index[k], slotState[Int(s)] == .ready { tier = .host }
                else if let disk, disk.contains(k) { tier = .disk }
                else { break }
                guard admission.worthLoading(tier: tier, layout: layout) else { result.limitedByAdmission = true; break }
                result.locations.append(tier)
                i += 1
            }
            counters.device.hits += start
            counters.host.hits += result.hostBlocks
            counters.disk.hits += result.diskBlocks
            return result
        }
    }

    /// Counts an L1 hit; with write-after-N-hits, starts the copy to host at the N-th. The lock is held.
    private func noteL1Hit(_ block: BlockID, key: BlockKey) {
        l1Hits[Int(block)] &+= 1
        if case .writeAfterHits(let n) = config.writePolicy, l1Hits[Int(block)] == UInt32(clamping: n) {
            var outbox: Outbox = []
            startCopyToHost(block: block, key: key, parent: l1Parent[Int(block)], outbox: &outbox)
            pendingOutbox.append(contentsOf: outbox)
        }
    }

    /// Jobs queued while the lock was held by a path that cannot return an outbox.
    private var pendingOutbox: Outbox = []

    private func flushPending() {
        let jobs: Outbox = lock.withLock { let j = pendingOutbox; pendingOutbox = []; return j }
        send(jobs)
    }

    /// Takes in the disk's journal: removals clear host slots' on-disk marks; with `recordEvents`, every
    /// store and removal becomes an event, in the order the disk made them (a put racing a segment
    /// eviction on another worker cannot reorder them). The lock is held. O(changes).
    private func syncDiskChanges() {
        guard let disk else { return }
        diskChanges.removeAll(keepingCapacity: true)
        disk.drainChanges(into: &diskChanges)
        for c in diskChanges {
            switch c {
            case .stored(let k, let parent):
                events.append(.blockStored(keys: [k], parent: parent, blockTokens: layout.blockTokens, tier: .disk))
            case .removed(let k):
                counters.disk.removedBlocks += 1
                if config.recordEvents { events.append(.blockRemoved(keys: [k], tier: .disk)) }
                if let s = l2Index[k] { slotOnDisk[Int(s)] = false }
            }
        }
    }

    /// Loads the blocks of `plan.locations` into device blocks `into` (same order), bringing disk blocks
    /// up through a host slot (L3 -> L2 -> L1). Returns at once; the handle completes per layer group.
    /// Blocks that vanished since `lookup` or fail their checks complete as failed; `loadedPrefixBlocks`
    /// says how many leading blocks the engine may treat as computed.
    /// - Throws: `.invalidArgument` when the counts disagree or a device block is out of range (nothing started).
    public func load(_ plan: TierLookup, keys: [BlockKey], into blocks: [BlockID]) throws(TierError) -> TransferHandle {
        guard blocks.count == plan.locations.count, plan.deviceBlocks + blocks.count <= keys.count,
              blocks.allSatisfy({ $0 >= 0 && Int($0) < device.capacityBlocks }) else {
            throw .invalidArgument("load plan, keys and device blocks disagree")
        }
        flushPending()
        let handle = takeHandle(blocks: blocks.count)
        if blocks.isEmpty { return handle }
        var outbox: Outbox = []
        let job: LoadJob? = lock.withLock {
            // Pass 1: pin every planned block that is on host now, so that taking slots for the disk
            // blocks below cannot evict them.
            var prePinned = [Int32](repeating: -1, count: blocks.count)
            for i in 0 ..< blocks.count {
                if let s = l2Index[keys[plan.deviceBlocks + i]], slotState[Int(s)] == .ready {
                    slotPins[Int(s)] += 1; prePinned[i] = s
                }
            }
            // Pass 2: in order; disk blocks get a host slot (promotion) or, when every slot is pinned, a
            // staging buffer of the load's own. The plan ends at the first block found nowhere.
            var slots: [Int32] = [], fromDisk: [Bool] = []
            var staged = 0
            for i in 0 ..< blocks.count {
                let key = keys[plan.deviceBlocks + i]
                if prePinned[i] >= 0 {
                    let s = prePinned[i]
                    lruRemove(s); lruPushFront(s)
                    slots.append(s); fromDisk.append(false)
                } else if l2Index[key] == nil, let disk, disk.contains(key) {
                    if host != nil, let s = takeSlot(outbox: &outbox) {
                        claim(s, key: key, parent: Self.parent(in: keys, at: plan.deviceBlocks + i), onDisk: true)
                        slots.append(s)
                    } else {
                        slots.append(-1 - Int32(staged)); staged += 1
                    }
                    fromDisk.append(true)
                } else { break }
            }
            // Unpin the pass-1 blocks the plan no longer reaches.
            for i in slots.count ..< blocks.count where prePinned[i] >= 0 { slotPins[Int(prePinned[i])] -= 1 }
            let staging = staged > 0 ? UnsafeMutableRawBufferPointer.allocate(byteCount: staged * layout.bytesPerBlock, alignment: 64) : nil
            let addresses = slots.map { s in
                // A non-negative slot exists only with a host tier.
                HostAddress(s >= 0 ? host!.address(of: s) : staging!.baseAddress! + Int(-1 - s) * layout.bytesPerBlock)
            }
            handle.loadedFromDisk = fromDisk
            let first = plan.deviceBlocks
            return LoadJob(keys: Array(keys[first ..< first + slots.count]),
                           parents: (first ..< first + slots.count).map { Self.parent(in: keys, at: $0) },
                           blocks: Array(blocks[0 ..< slots.count]),
                           slots: slots, fromDisk: fromDisk, addresses: addresses, groups: byteGroups.count, handle: handle,
                           staging: staging)
        }
        send(outbox)
        guard let job else {
            for i in 0 ..< blocks.count { handle.fail(block: i, groups: 0 ..< groupRanges.count) }
            return handle
        }
        for i in job.slots.count ..< blocks.count { handle.fail(block: i, groups: 0 ..< groupRanges.count) }
        if job.slots.isEmpty { return handle }
        let diskReads = job.fromDisk.indices.filter { job.fromDisk[$0] }
        if diskReads.isEmpty {
            submitGroupCopies(job)
        } else {
            let left = Countdown(diskReads.count)
            for i in diskReads {
                transfers.submit(.high) { [self] expired in
                    let ok = !expired && self.readFromDisk(key: job.keys[i], slot: job.slots[i], address: job.addresses[i])
                    if !ok { self.lock.withLock { job.failed[i] = true } }
                    if left.arrive(ok) != nil { self.submitGroupCopies(job) }
                }
            }
        }
        return handle
    }

    /// Finished load handles the manager hands out again, so a steady stream of loads allocates none.
    /// Guarded by `lock`.
    private var handlePool: [TransferHandle] = []
    /// Handles kept for reuse (loads in flight at once beyond it get fresh ones).
    static let handlePoolSize = 8

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

    /// Reads `key` from disk into `slot` and marks the slot ready (or releases it). Returns success.
    private func readFromDisk(key: BlockKey, slot: Int32, address: HostAddress) -> Bool {
        guard let disk else { return false }
        let t0 = KVClock.monotonicNanos()
        let r = disk.read(key, into: UnsafeMutableRawBufferPointer(start: address.pointer, count: layout.bytesPerBlock))
        let dt = KVClock.monotonicNanos() - t0
        lock.withLock {
            let s = Int(slot)
            if slot < 0 {   // a load's staging buffer, not a host slot
                if r == .hit {
                    counters.disk.loadedBlocks += 1; counters.disk.bytesOut += layout.bytesPerBlock
                    counters.disk.loadCalls += 1; counters.disk.loadNanosTotal += dt
                    counters.disk.loadNanosMax = max(counters.disk.loadNanosMax, dt)
                    admission.observe(tier: .disk, bytes: layout.bytesPerBlock, nanos: dt)
                } else { counters.disk.failedLoads += 1 }
                return
            }
            if r == .hit {
                slotState[s] = .ready
                lruPushFront(slot)
                counters.disk.loadedBlocks += 1
                counters.disk.bytesOut += layout.bytesPerBlock
                counters.disk.loadCalls += 1
                counters.disk.loadNanosTotal += dt
                counters.disk.loadNanosMax = max(counters.disk.loadNanosMax, dt)
                counters.host.storedBlocks += 1
                counters.host.bytesIn += layout.bytesPerBlock
                counters.host.occupancy = l2Index.count
                admission.observe(tier: .disk, bytes: layout.bytesPerBlock, nanos: dt)
                if config.recordEvents {
                    events.append(.blockStored(keys: [key], parent: slotParent[s].nonZero, blockTokens: layout.blockTokens, tier: .host))
                }
            } else {
                counters.disk.failedLoads += 1
                slotPins[s] -= 1
                if slotPins[s] == 0 { releaseSlot(slot) }
            }
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
                    if expired { self.finishGroup(job, block: i, group: g, ok: false, started: started); continue }
                    device.copyFromHost(block: job.blocks[i], range: r, host: HostAddress(job.addresses[i].pointer + r.lowerBound)) { ok in
                        self.finishGroup(job, block: i, group: g, ok: ok, started: started)
                    }
                }
            }
        }
    }

    private func finishGroup(_ job: LoadJob, block i: Int, group g: Int, ok: Bool, started: UInt64) {
        let blockDone: Bool = lock.withLock {
            if !ok { job.failed[i] = true }
            job.groupsLeft[i] -= 1
            guard job.groupsLeft[i] == 0 else { return false }
            if job.slots[i] >= 0 { slotPins[Int(job.slots[i])] -= 1 }
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
                let moved = job.blocks.count * layout.bytesPerBlock
                admission.observe(tier: .host, bytes: moved, nanos: dt)
            }
            return true
        }
        _ = blockDone
        job.handle.complete(block: i, group: g, success: ok)
    }

    /// The parent of `keys[i]` in a prompt's chain: the previous key, `.zero` for the first.
    private static func parent(in keys: [BlockKey], at i: Int) -> BlockKey { i == 0 ? .zero : keys[i - 1] }

    // MARK: Prefetch

    /// Brings disk blocks among `keys` up to host ahead of need (L3 -> L2). A block whose read has not
    /// started by `deadlineNanos` (monotonic clock, see `TierClock.now`) is skipped. The handle has one
    /// entry per block actually scheduled, one layer group.
    public func prefetch(keys: [BlockKey], deadlineNanos: UInt64) -> TransferHandle {
        var outbox: Outbox = []
        var scheduled: [(BlockKey, Int32, HostAddress)] = []
        lock.withLock {
            guard let host, let disk else { return }
            for k in keys where l2Index[k] == nil && disk.contains(k) {
                guard let s = takeSlot(outbox: &outbox) else { break }
                claim(s, key: k, parent: disk.parent(of: k) ?? .zero, onDisk: true)
                scheduled.append((k, s, HostAddress(host.address(of: s))))
            }
        }
        send(outbox)
        let handle = TransferHandle(blocks: scheduled.count, layerGroups: [0 ..< layout.layers])
        for (i, (k, s, a)) in scheduled.enumerated() {
            transfers.submit(.low, deadlineNanos: deadlineNanos) { [self] expired in
                var ok = false
                if expired {
                    self.lock.withLock {
                        self.slotPins[Int(s)] -= 1
                        if self.slotPins[Int(s)] == 0 { self.releaseSlot(s) }
                    }
                } else {
                    ok = self.readFromDisk(key: k, slot: s, address: a)
                    if ok { self.lock.withLock { self.slotPins[Int(s)] -= 1 } }
                }
                handle.complete(block: i, group: 0, success: ok)
            }
        }
        return handle
    }

    // MARK: Introspection

    /// The fastest tier holding `key` now, or nil.
    public func location(of key: BlockKey) -> Tier? {
        lock.withLock {
            if l1Index[key] != nil { return .device }
            if let s = l2Index[key], slotState[Int(s)] == .ready { return .host }
            if let disk, disk.contains(key) { return .disk }
            return nil
        }
    }

    /// Copies host block `key`'s bytes into `out` (tests, tools). Returns false when host does not hold it.
    public func copyHostBlock(_ key: BlockKey, into out: UnsafeMutableRawBufferPointer) -> Bool {
        lock.withLock {
            guard let host, let s = l2Index[key], slotState[Int(s)] == .ready, out.count >= layout.bytesPerBlock else { return false }
            out.baseAddress!.copyMemory(from: host.address(of: s), byteCount: layout.bytesPerBlock)
            return true
        }
    }

    /// A snapshot of the per-tier counters.
    public var statistics: TierStatistics {
        lock.withLock {
            syncDiskChanges()
            var s = counters
            s.host.occupancy = l2Index.count
            s.device.occupancy = l1Index.count
            if let disk { let d = disk.statistics; s.diskStore = d; s.disk.occupancy = d.blocks }
            s.hostAdmitted = admission.worthLoading(tier: .host, layout: layout)
            s.diskAdmitted = disk != nil && admission.worthLoading(tier: .disk, layout: layout)
            s.hostBytesPerSecond = admission.hostBytesPerSecond
            s.diskBytesPerSecond = admission.diskBytesPerSecond
            return s
        }
    }

    /// The admission model now (bandwidth estimates move as transfers are measured).
    public var currentAdmission: TierAdmission { lock.withLock { admission } }

    /// Moves the recorded tier events into `out` (only with `recordEvents`). Attach the manager to
    /// `KVCacheManager.lowerTierEvents` to get them in the device pool's stream.
    public func drainEvents(into out: inout [KVEvent]) {
        lock.withLock { syncDiskChanges(); out.append(contentsOf: events); events.removeAll(keepingCapacity: true) }
    }

    /// Waits until every queued transfer has finished (tests, shutdown).
    public func waitForTransfers() {
        flushPending()
        transfers.waitForTransfers()
    }

    /// Finishes every queued transfer, stops the workers and releases the disk directory, now rather
    /// than whenever the last reference goes (a job may hold one), so the same directory can be opened
    /// again at once. The manager then only answers lookups. Idempotent.
    public func close() {
        waitForTransfers()
        transfers.shutdown()
        disk?.close()
    }

    /// Checks the tier index's invariants; throws `.corrupt` describing the first one broken.
    public func validate() throws(TierError) {
        try lock.withLock { () throws(TierError) in
            for (k, b) in l1Index where l1Key[Int(b)] != k { throw .corrupt("l1 index disagrees for \(k)") }
            for (k, s) in l2Index where slotKey[Int(s)] != k || slotState[Int(s)] == .free {
                throw .corrupt("host index disagrees for \(k)")
            }
            var n = 0, v = lruHead, prev: Int32 = -1
            while v >= 0 {
                guard slotState[Int(v)] == .ready, lruPrev[Int(v)] == prev else { throw .corrupt("host LRU list broken at \(v)") }
                prev = v; v = lruNext[Int(v)]; n += 1
                if n > slotKey.count { throw .corrupt("host LRU list has a cycle") }
            }
            guard lruTail == prev else { throw .corrupt("host LRU tail") }
            let ready = slotState.count { $0 == .ready }
            guard n == ready else { throw .corrupt("host LRU holds \(n) of \(ready) ready slots") }
            if let host, host.freeCount + l2Index.count != host.capacity { throw .corrupt("host slots leaked") }
        }
    }
}

extension KVTierManager: BlockEvictionObserver {}

/// One in-flight load: immutable plan plus progress, the progress guarded by the manager's lock.
final class LoadJob: @unchecked Sendable {
    let keys: [BlockKey]
    /// Parent key of each block (`.zero` for a first block).
    let parents: [BlockKey]
    let blocks: [BlockID]
    let slots: [Int32]
    let fromDisk: [Bool]
    let addresses: [HostAddress]
    let groups: Int
    let handle: TransferHandle
    var failed: [Bool]
    var groupsLeft: [Int]
    var blocksLeft: Int
    /// Bounce buffers for disk blocks that found no free host slot; freed with the job.
    let staging: UnsafeMutableRawBufferPointer?

    deinit { staging?.deallocate() }

    init(keys: [BlockKey], parents: [BlockKey], blocks: [BlockID], slots: [Int32], fromDisk: [Bool], addresses: [HostAddress], groups: Int,
         handle: TransferHandle, staging: UnsafeMutableRawBufferPointer?) {
        self.staging = staging
        self.keys = keys; self.parents = parents; self.blocks = blocks; self.slots = slots; self.fromDisk = fromDisk
        self.addresses = addresses; self.groups = groups; self.handle = handle
        failed = Array(repeating: false, count: slots.count)
        groupsLeft = Array(repeating: groups, count: slots.count)
        blocksLeft = slots.count
    }
}

/// A heap buffer owned by one transfer, freed when the last closure using it is gone.
final class StagingBuffer: @unchecked Sendable {
    // Sendable: written by one device copy per byte range, then read once; the steps are ordered by
    // the copies' completions.
    let buffer: UnsafeMutableRawBufferPointer
    init(bytes: Int) { buffer = .allocate(byteCount: bytes, alignment: 64) }
    deinit { buffer.deallocate() }
}

/// Counts arrivals of `n` parties; the last one learns whether all succeeded. Thread-safe, lock-free:
/// one allocation (this object).
final class Countdown: Sendable {
    private let left: Atomic<Int>
    private let failed = Atomic<Bool>(false)
    init(_ n: Int) { left = Atomic(n) }

    /// Returns nil for every arrival but the last, which gets whether all arrivals succeeded. O(1).
    func arrive(_ ok: Bool) -> Bool? {
        // Ordering: a failure is published before the count drops (release), and the last arrival's
        // acquire on the count sees every earlier failure.
        if !ok { failed.store(true, ordering: .relaxed) }
        let before = left.subtract(1, ordering: .acquiringAndReleasing).oldValue
        return before == 1 ? !failed.load(ordering: .relaxed) : nil
    }
}

/// The monotonic clock the tiers use for deadlines.
public enum TierClock {
    /// Nanoseconds on CLOCK_MONOTONIC.
    public static var now: UInt64 { KVClock.monotonicNanos() }
}
extension KVTierManager: KVEventSource {}

extension BlockKey {
    /// nil for `.zero` (the tiers' "no parent"), the key otherwise.
    var nonZero: BlockKey? { self == .zero ? nil : self }
}
