import KVCache
import KVPlan

/// The multi-tier KV store below the device pool: L2 host memory (`HostSlabPool`, NUMA placed) and a
/// block store below it (`any KVBlockStore`: the local disk today), with asynchronous transfers on a
/// `TransferWorkers`.
///
/// How an engine drives it (`PrefixPlanner` in KVRuntime is the one place that does it):
/// 1. Set it as the `KVCacheManager`'s `evictionObserver`: an evicted L1 block is copied to host before
///    its id is reused (policy: `TierConfig.writePolicy`). Call `waitForEvictionCopies()` before writing
///    into blocks the last `allocate` returned (or set `synchronousEvictionCopies`).
/// 2. Tell it which device block holds which key (and its parent key) after each commit (`noteStored`).
/// 3. For a new request: the core's `lookup` gives the L1 prefix; `lookup(keys:deviceBlocks:maxBlocks:)`
///    extends it through host and the store (where `LoadOrRecompute` says loading pays). After
///    `allocate`, `load(_:keys:into:)` brings those blocks into the freshly allocated device blocks; wait
///    on the handle (whole or per layer group), then `commit` the loaded tokens as computed.
///
/// The verbs live in facet files: `+Eviction` (write policies, copies out of the device), `+HostSlots`
/// (host slots, their eviction and the background spill to the store), `+Load`, `+Prefetch`,
/// `+Statistics`, `+Validate`. Residency is one `TierIndex`.
///
/// Thread-safe: one mutex guards the tier index; byte copies run on the workers outside it. Device copies
/// are never issued while the mutex is held. Lock order: manager, then store, then worker queue.
public final class KVTierManager: @unchecked Sendable {
    // Sendable: every mutable field is guarded by `lock`.
    public let config: TierConfig
    public let layout: KVGeometry
    public let device: any DeviceMemory
    public let host: HostSlabPool?
    /// The tier below host (the disk store when `config.disk` is set).
    public let store: (any KVBlockStore)?
    let transfers: TransferWorkers
    let groupRanges: [Range<Int>]      // layer ranges
    let byteGroups: [Range<Int>]       // byte ranges of those layer groups within a block
    /// The one layer group of a store's handle: every layer.
    let storeGroups: [Range<Int>]

    let lock = ConditionLock()
    // Everything below is guarded by `lock`.
    /// Device residency (as told by noteStored/willEvict/loads) and host slots.
    var index: TierIndex
    /// Copies that read device blocks and have not finished.
    var deviceCopiesInFlight = 0
    /// Background host -> store writes in flight.
    var spillsInFlight = 0
    var admission: LoadOrRecompute
    var counters = TierStatistics()
    var events: [TierEvent] = []
    /// The store's journal, taken in under the lock (storage reused).
    var storeChanges: [DiskChange] = []
    /// Jobs queued while the lock was held by a path that cannot return an outbox.
    var pendingOutbox: Outbox = []
    /// Finished loads and stores handed out again, so a steady stream of them allocates nothing.
    var loadJobs: [LoadJob] = []
    var storeJobs: [StoreJob] = []

    /// - Parameters:
    ///   - device: the L1 pool's bytes (a `HostDeviceMemory` stand-in or the engine's `ServerCopyBackend`).
    /// - Throws: `.invalidArgument` when the device's layout differs from `config.layout` or sizes are bad;
    ///   errors of the host pool, disk store or worker threads.
    public init(config: TierConfig, device: any DeviceMemory) throws(TierError) {
        guard device.layout == config.layout else {
            throw .invalidArgument("device layout differs from the tier layout")
        }
        guard config.hostBlocks >= 0, config.layerGroups >= 1, config.spillWatermark > 0 else {
            throw .invalidArgument("bad tier configuration")
        }
        if case .writeAfterHits(let n) = config.writePolicy, n < 1 {
            throw .invalidArgument("writeAfterHits needs n >= 1")
        }
        if let d = config.disk, d.maxBlockBytes < config.layout.bytesPerBlock {
            throw .invalidArgument("disk store blocks are smaller than the layout's")
        }
        self.config = config
        layout = config.layout
        self.device = device
        host = config.hostBlocks > 0
            ? try HostSlabPool(blockBytes: layout.bytesPerBlock, capacity: config.hostBlocks,
                               placement: config.hostPlacement, lockMemory: config.lockHostMemory,
                               sysfsRoot: config.sysfsRoot)
            : nil
        store = try config.disk.map { c throws(TierError) in try DiskBlockStore(c) }
        transfers = try TransferWorkers(workers: config.workers)
        let layout = config.layout
        let ranges = layout.layerGroups(config.layerGroups)
        groupRanges = ranges
        byteGroups = ranges.map { layout.byteRange(layers: $0) }
        storeGroups = [0 ..< layout.layers]
        index = TierIndex(deviceBlocks: device.capacityBlocks, hostSlots: config.hostBlocks)
        admission = config.admission
        counters.host.capacity = config.hostBlocks
        counters.device.capacity = device.capacityBlocks
        counters.hostPlacement = host?.placement
        if let store {
            admission.fill(store.tier, from: store.costHint)
            counters.disk.capacity = store.capacityBlocks ?? 0
            counters.disk.occupancy = store.count
        }
        if config.calibrateAtStart { calibrate() }
        if config.recordEvents, let store { announceRecovered(store) }
    }

    /// After a restart: one `blockStored` event (the store's tier) per block it recovered, with the parent
    /// its record names, so a router learns what survived; from then on the store's own journal gives its
    /// events in order. O(blocks stored).
    private func announceRecovered(_ store: any KVBlockStore) {
        store.journalStores()
        store.drainChanges(into: &storeChanges)   // removals while opening: of blocks never announced
        storeChanges.removeAll(keepingCapacity: true)
        for (key, parent) in store.blocksWithParents() {
            events.append(.stored(key, parent: parent, tier: store.tier))
        }
    }

    /// Seeds `LoadOrRecompute`: times a host-to-host copy of one synthetic block (when the device is the
    /// host stand-in: an engine's own copies are measured online instead) and one codec round trip.
    /// Costs a few milliseconds for a 2 MiB block.
    private func calibrate() {
        let n = layout.bytesPerBlock
        let a = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 64)
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n, KVByteCodec.maxEncodedSize(rawBytes: n)),
                                                       alignment: 64)
        defer {
            a.deallocate()
            b.deallocate()
        }
        SyntheticKV.fill(a, layout: layout, seed: 1)
        var hostBW: Double? = nil
        var decodeBW: Double? = nil
        if device is HostDeviceMemory {
            b.baseAddress!.copyMemory(from: a.baseAddress!, byteCount: n)   // fault the pages in first
            let t0 = KVClock.monotonicNanos()
            b.baseAddress!.copyMemory(from: a.baseAddress!, byteCount: n)
            hostBW = Double(n) / (Double(max(1, KVClock.monotonicNanos() - t0)) * 1e-9)
        }
        if store != nil, let codec = try? KVByteCodec(layout: layout),
           let (mode, count) = try? codec.encode(UnsafeRawBufferPointer(a), into: b), mode != .raw {
            let t0 = KVClock.monotonicNanos()
            if (try? codec.decode(UnsafeRawBufferPointer(rebasing: b[0 ..< count]), mode: mode, into: a)) != nil {
                decodeBW = Double(n) / (Double(max(1, KVClock.monotonicNanos() - t0)) * 1e-9)
            }
        }
        let storeTier = store?.tier ?? .disk
        admission.seed(hostBytesPerSecond: hostBW, store: storeTier,
                       readBytesPerSecond: store?.costHint.bytesPerSecond ?? 1, decodeBytesPerSecond: decodeBW)
    }

    deinit { transfers.shutdown() }

    typealias Outbox = [(TransferPriority, UInt64, TransferWorkers.Job)]

    /// Submits jobs collected under the lock; called with the lock released.
    func send(_ outbox: Outbox) {
        for (p, d, job) in outbox { transfers.submit(p, deadlineNanos: d, job) }
    }

    /// Queues step `step` of `job`; the lock is held. Once the workers have stopped, the step is kept for
    /// `flushPending`, which runs it as expired. No allocation while the workers run.
    func enqueue(_ priority: TransferPriority, _ job: TransferJob, step: Int) {
        job.stepsQueued += 1
        if !transfers.trySubmit(priority, job, step: step) {
            pendingOutbox.append((priority, .max, { expired in job.run(step: step, expired: expired) }))
        }
    }

    /// Marks `job` finished and returns its hold on the manager when no step of it is queued or running
    /// (nil otherwise: the last step lets go). The lock is held; the caller releases the result after
    /// leaving the lock (`withExtendedLifetime`), since it may be the manager's last reference.
    func finish(_ job: TransferJob) -> AnyObject? {
        job.finished = true
        return letGo(job)
    }

    /// `job`'s hold on the manager, taken from it when the job has finished and no step is queued or
    /// running; nil otherwise. The lock is held.
    func letGo(_ job: TransferJob) -> AnyObject? {
        guard job.finished, job.stepsQueued == 0 else { return nil }
        defer { job.keepAlive = nil }
        return job.keepAlive
    }

    /// A step of `job` has ended: counted out under the lock; the job lets the manager go if it was the
    /// last thing it waited for.
    func stepEnded(_ job: TransferJob) {
        let released: AnyObject? = lock.withLock {
            job.stepsQueued -= 1
            return letGo(job)
        }
        withExtendedLifetime(released) {}   // the manager may go now, outside its lock
    }

    /// Whether a pooled job can be handed out again: idle (finished, no step left, no hold on the
    /// manager), its handle complete and no longer the caller's. The lock is held.
    func isReusable(_ job: TransferJob, handle: inout TransferHandle) -> Bool {
        job.keepAlive == nil && job.stepsQueued == 0 && handle.isComplete && isKnownUniquelyReferenced(&handle)
    }

    /// Submits the jobs that paths without an outbox queued.
    func flushPending() {
        let jobs: Outbox = lock.withLock {
            if pendingOutbox.isEmpty { return [] }
            let j = pendingOutbox
            pendingOutbox = []
            return j
        }
        send(jobs)
    }

    /// Moves the recorded tier events into `out` (only with `recordEvents`). Attach the manager to
    /// `KVCacheManager.lowerTierEvents` to get them in the device pool's stream.
    public func drainEvents(into out: inout [KVEvent]) {
        lock.withLock {
            syncStoreChanges()
            for e in events { out.append(e.event(blockTokens: layout.blockTokens)) }
            events.removeAll(keepingCapacity: true)
        }
    }

    /// `drainEvents(into:)` in the recorded form: no allocation once `out` has grown. O(events).
    public func drainEvents(into out: inout [TierEvent]) {
        lock.withLock {
            syncStoreChanges()
            out.append(contentsOf: events)
            events.removeAll(keepingCapacity: true)
        }
    }

    /// Waits until every queued transfer has finished (tests, shutdown).
    public func waitForTransfers() {
        flushPending()
        transfers.waitForTransfers()
    }

    /// Finishes every queued transfer, stops the workers and releases the store (the disk directory), now
    /// rather than whenever the last reference goes (a job may hold one), so the same directory can be
    /// opened again at once. The manager then only answers lookups. Idempotent.
    public func close() {
        waitForTransfers()
        transfers.shutdown()
        store?.close()
    }
}

extension KVTierManager: BlockEvictionObserver {}
extension KVTierManager: KVEventSource {}

extension BlockKey {
    /// nil for `.zero` (the tiers' "no parent"), the key otherwise.
    var nonZero: BlockKey? { self == .zero ? nil : self }
}
