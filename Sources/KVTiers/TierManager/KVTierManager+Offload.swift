import KVCache

/// The verbs of an offloading manager keyed by block key, for engines that keep their own block pool
/// (vLLM's `OffloadingManager`, SGLang's HiCache storage, the C ABI): where a key can be loaded from,
/// touching host copies, storing device blocks with a completion per block, and the store's bytes
/// directly. Loads are `load(_:keys:into:)` (+Load).
///
/// Every call takes the manager's lock once; device copies are issued after it is released (the
/// outbox), as everywhere in the manager. A throwing call has started nothing.
extension KVTierManager {
    /// Where `key` can be loaded from now: `.host` for a ready host slot, the store's tier when the store
    /// holds it, nil otherwise. Device residency is not consulted and nothing is counted. O(1) probes.
    public func loadableTier(of key: BlockKey) -> Tier? {
        lock.withLock {
            if index.readyHostSlot(of: key) != nil { return .host }
            if let store, store.contains(key) { return store.tier }
            return nil
        }
    }

    /// Marks the host copies of `keys` as the most recently used, so they are evicted last; returns how
    /// many of them are on host (ready). O(keys), no allocation.
    @discardableResult
    public func touch(keys: some Sequence<BlockKey>) -> Int {
        lock.withLock { keys.count { touchHostCopy($0) } }
    }

    /// `touch(keys:)` over an array, not specialized per caller: the C ABI's path. O(keys), no allocation.
    @discardableResult
    public func touch(keys: [BlockKey]) -> Int {
        lock.withLock {
            var found = 0
            for k in keys where touchHostCopy(k) { found += 1 }
            return found
        }
    }

    /// Moves `key`'s ready host copy to the front of the LRU order; false when there is none. The lock is
    /// held. O(1).
    private func touchHostCopy(_ key: BlockKey) -> Bool {
        guard let s = index.readyHostSlot(of: key) else { return false }
        index.touch(s)
        return true
    }

    /// Loads `keys[first ..< first + blocks.count]` into device blocks `blocks` without a plan from
    /// `lookup`: the load finds each block on host or in the store itself (`keys[0 ..< first]` are the
    /// blocks before them, for the parents). Same handle and failure rules as `load(_:keys:into:)`.
    /// - Throws: `.invalidArgument` when `first + blocks.count` passes the keys or a block is out of range.
    public func load(keys: [BlockKey], first: Int, into blocks: [BlockID]) throws(TierError) -> TransferHandle {
        guard first >= 0 else { throw .invalidArgument("load: first is negative") }
        return try startLoad(keys: keys, first: first, into: blocks)
    }

    /// Offloads device blocks: `blocks[i]` holds `keys[i]`, a chain whose first key's parent is
    /// `firstParent` (nil for a first block). Each block becomes device-resident for the tiers (as
    /// `noteStored` says) and each key not on host yet is copied into a host slot, evicting the coldest
    /// unpinned host block (written to the store first when it is not there). The handle has one entry
    /// per block and one layer group: it completes as succeeded once the key is on host (copied now, or
    /// there already), as failed when no slot was free or the copy failed. Without a host tier a block
    /// succeeds only when the store already holds its key. O(blocks).
    /// - Throws: `.invalidArgument` when the counts differ, a block is out of range or a key is zero;
    ///   nothing started.
    public func store(blocks: [BlockID], keys: [BlockKey], firstParent: BlockKey?) throws(TierError) -> TransferHandle {
        guard blocks.count == keys.count, blocks.allSatisfy({ $0 >= 0 && Int($0) < device.capacityBlocks }),
              !keys.contains(.zero) else {
            throw .invalidArgument("store: blocks and keys disagree, a block is out of range or a key is zero")
        }
        flushPending()
        var outbox: Outbox = []
        let handle: TransferHandle = lock.withLock {
            let job = takeStoreJob(blocks: blocks.count)
            for i in blocks.indices {
                let key = keys[i]
                let parent = i == 0 ? firstParent ?? .zero : keys[i - 1]
                setResident(block: blocks[i], key: key, parent: parent)
                if index.hostSlot(of: key) != nil {
                    job.handle.complete(block: i, group: 0, success: true)
                } else if host == nil {
                    job.handle.complete(block: i, group: 0, success: store?.contains(key) ?? false)
                } else if !startCopyToHost(block: blocks[i], key: key, parent: parent, job: job, at: i, outbox: &outbox) {
                    job.handle.complete(block: i, group: 0, success: false)
                }
            }
            for i in blocks.indices where job.slots[i] >= 0 { enqueue(.high, job, step: i) }
            // The caller holds the manager: a store with no copy in flight drops its reference here.
            return job.copiesLeft == 0 ? settle(job, job.handle) : job.handle
        }
        send(outbox)
        flushPending()
        return handle
    }

    /// Writes `bytes` (exactly one block) under `key` straight to the store, naming `parent`; counted and
    /// journalled like the manager's own writes. Returns true when written now, false when the store held
    /// the key already. O(bytes).
    /// - Throws: `.invalidArgument` without a store, for a zero key or another size; the store's error when
    ///   it refused the block (full, I/O). Nothing written in either case.
    @discardableResult
    public func putToStore(_ key: BlockKey, parent: BlockKey?, bytes: UnsafeRawBufferPointer) throws(TierError) -> Bool {
        guard let store, key != .zero, bytes.count == layout.bytesPerBlock else {
            throw .invalidArgument("store put: no store, a zero key, or not one block of bytes")
        }
        let r = store.put(key, parent: parent, bytes: bytes)
        lock.withLock { noteStorePut(r) }
        switch r {
        case .stored: return true
        case .alreadyStored: return false
        case .notStored(let e): throw e
        }
    }

    /// Reads the store's block `key` into `dst` (exactly one block) after its checks; false (nothing
    /// written that the caller may use) when it is missing or failed a check. Counted as a store load.
    /// O(bytes).
    /// - Throws: `.invalidArgument` without a store or for another size.
    public func readFromStore(_ key: BlockKey, into dst: UnsafeMutableRawBufferPointer) throws(TierError) -> Bool {
        guard let store, dst.count == layout.bytesPerBlock, let base = dst.baseAddress else {
            throw .invalidArgument("store read: no store, or not one block of room")
        }
        guard store.contains(key) else { return false }
        return readFromStore(key: key, slot: -1, address: HostAddress(base))
    }
}
