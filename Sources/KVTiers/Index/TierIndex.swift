import KVCache

/// Where each block the tiers know of lives: one entry per key naming the device block and the host slot
/// that hold it, plus dense per-device-block and per-host-slot columns (key, parent, hits; slot state,
/// pins, on-disk and spilling marks) and the host tier's LRU order. Disk residency is the store's own
/// (`KVBlockStore.contains`), not repeated here.
///
/// The device column is what the engine told the tiers (`noteStored`, `willEvict`, finished loads), not
/// a copy read from the core: `KVTierManager` also serves engines with their own block pool (no
/// `KVCacheManager`), so it must keep the device residency it acts on itself.
///
/// Every operation is O(1) (one hash probe at most) and allocates nothing once the key table has grown;
/// `validate` is O(entries + slots). Not thread-safe: the manager's lock guards it.
///
/// Hybrid models (later): an entry can carry a state-checkpoint flag (the SSM state saved at this
/// block), so that a lookup may stop only at a block whose state exists, as SGLang's trailing-pages rule
/// does; it is one more field of `Entry`.
struct TierIndex {
    /// One key's residency: `none` where a tier does not hold it.
    struct Entry {
        var device: BlockID = TierIndex.none
        var host: Int32 = TierIndex.none
    }

    /// A host slot's life: taken and being filled (by a device copy or a disk read), then ready to load.
    enum SlotState: UInt8 { case free, filling, ready }

    static let none: Int32 = -1

    private var entries: [BlockKey: Entry] = [:]
    // Device blocks.
    private var deviceKey: [BlockKey]
    private var deviceParent: [BlockKey]   // .zero: a first block (or not known)
    private var deviceHits: [UInt32]
    /// Keys with a device block.
    private(set) var deviceCount = 0
    // Host slots.
    private var slotKey: [BlockKey]
    private var slotParent: [BlockKey]     // .zero: a first block (or not known)
    private var slotState: [SlotState]
    private var slotPins: [Int32]
    private var slotOnDisk: [Bool]
    private var slotSpilling: [Bool]
    /// Ready slots, most recently used at the head.
    private(set) var lru: IntrusiveList
    /// Keys with a host slot (filling or ready).
    private(set) var hostCount = 0

    init(deviceBlocks: Int, hostSlots: Int) {
        deviceKey = Array(repeating: .zero, count: deviceBlocks)
        deviceParent = Array(repeating: .zero, count: deviceBlocks)
        deviceHits = Array(repeating: 0, count: deviceBlocks)
        slotKey = Array(repeating: .zero, count: hostSlots)
        slotParent = Array(repeating: .zero, count: hostSlots)
        slotState = Array(repeating: .free, count: hostSlots)
        slotPins = Array(repeating: 0, count: hostSlots)
        slotOnDisk = Array(repeating: false, count: hostSlots)
        slotSpilling = Array(repeating: false, count: hostSlots)
        lru = IntrusiveList(capacity: hostSlots)
    }

    var deviceBlocks: Int { deviceKey.count }

    // MARK: Device

    /// The device block holding `key`, if the engine said one does.
    func deviceBlock(of key: BlockKey) -> BlockID? {
        guard let b = entries[key]?.device, b != Self.none else { return nil }
        return b
    }

    /// Records that `block` now holds `key` (`parent` `.zero` for a first block); a different key it held
    /// before loses it, and the block's hit count restarts.
    mutating func setDevice(block: BlockID, key: BlockKey, parent: BlockKey) {
        let b = Int(block)
        let old = deviceKey[b]
        if old != .zero, old != key, entries[old]?.device == block { clear(old, device: true) }
        if old != key { deviceHits[b] = 0 }
        deviceKey[b] = key
        deviceParent[b] = parent
        if entries[key, default: Entry()].device == Self.none { deviceCount += 1 }
        entries[key, default: Entry()].device = block
    }

    /// The device is about to reuse `block`, which held `key`. Returns the block's hit count and, when it
    /// held `key` as recorded, the parent recorded with it.
    mutating func clearDevice(block: BlockID, key: BlockKey) -> (hits: UInt32, parent: BlockKey?) {
        let b = Int(block)
        let hits = deviceHits[b]
        guard deviceKey[b] == key else { return (hits, nil) }
        let parent = deviceParent[b]
        deviceKey[b] = .zero
        deviceHits[b] = 0
        if entries[key]?.device == block { clear(key, device: true) }
        return (hits, parent)
    }

    /// Counts a hit on `block`; returns the new count.
    mutating func noteHit(block: BlockID) -> UInt32 {
        deviceHits[Int(block)] &+= 1
        return deviceHits[Int(block)]
    }

    func deviceParent(of block: BlockID) -> BlockKey { deviceParent[Int(block)] }

    // MARK: Host

    /// The host slot holding `key` (filling or ready), if any.
    func hostSlot(of key: BlockKey) -> Int32? {
        guard let s = entries[key]?.host, s != Self.none else { return nil }
        return s
    }

    /// The host slot holding `key`, when its bytes are ready to load.
    func readyHostSlot(of key: BlockKey) -> Int32? {
        guard let s = hostSlot(of: key), slotState[Int(s)] == .ready else { return nil }
        return s
    }

    /// Takes `slot` (just allocated) for `key`, filling, with one pin (the fill's).
    mutating func claim(_ slot: Int32, key: BlockKey, parent: BlockKey, onDisk: Bool) {
        let s = Int(slot)
        slotKey[s] = key
        slotParent[s] = parent
        slotState[s] = .filling
        slotPins[s] = 1
        slotOnDisk[s] = onDisk
        slotSpilling[s] = false
        if entries[key, default: Entry()].host == Self.none { hostCount += 1 }
        entries[key, default: Entry()].host = slot
    }

    /// The fill of `slot` finished: it becomes loadable and the most recently used.
    mutating func markReady(_ slot: Int32) {
        slotState[Int(slot)] = .ready
        lru.pushFront(slot)
    }

    /// A load used `slot`: it becomes the most recently used.
    mutating func touch(_ slot: Int32) { lru.moveToFront(slot) }

    /// Empties `slot`; returns whether it was ready (so its removal is an event).
    mutating func release(_ slot: Int32) -> Bool {
        let s = Int(slot)
        let key = slotKey[s]
        let wasReady = slotState[s] == .ready
        if wasReady { lru.remove(slot) }
        if entries[key]?.host == slot { clear(key, device: false) }
        slotKey[s] = .zero
        slotParent[s] = .zero
        slotState[s] = .free
        slotPins[s] = 0
        slotSpilling[s] = false
        slotOnDisk[s] = false
        return wasReady
    }

    func key(ofSlot slot: Int32) -> BlockKey { slotKey[Int(slot)] }
    func parent(ofSlot slot: Int32) -> BlockKey { slotParent[Int(slot)] }
    func state(ofSlot slot: Int32) -> SlotState { slotState[Int(slot)] }
    func pins(ofSlot slot: Int32) -> Int32 { slotPins[Int(slot)] }
    func isOnDisk(slot: Int32) -> Bool { slotOnDisk[Int(slot)] }
    func isSpilling(slot: Int32) -> Bool { slotSpilling[Int(slot)] }

    mutating func pin(_ slot: Int32) { slotPins[Int(slot)] += 1 }

    /// Drops one pin of `slot`; returns the pins left.
    mutating func unpin(_ slot: Int32) -> Int32 {
        slotPins[Int(slot)] -= 1
        return slotPins[Int(slot)]
    }

    mutating func setOnDisk(slot: Int32, _ onDisk: Bool) { slotOnDisk[Int(slot)] = onDisk }
    mutating func setSpilling(slot: Int32, _ spilling: Bool) { slotSpilling[Int(slot)] = spilling }

    /// The disk dropped `key`: a host copy of it is no longer backed there.
    mutating func diskRemoved(_ key: BlockKey) {
        if let s = hostSlot(of: key) { slotOnDisk[Int(s)] = false }
    }

    // MARK: Validation

    /// Checks that entries and columns agree both ways, the LRU list is sound and holds exactly the
    /// ready slots, and the counts match. O(entries + slots).
    func validate() throws(InvariantViolation) {
        var devices = 0
        var hosts = 0
        for (k, e) in entries {
            guard e.device != Self.none || e.host != Self.none else { throw InvariantViolation("empty entry for \(k)") }
            if e.device != Self.none {
                devices += 1
                guard deviceKey[Int(e.device)] == k else { throw InvariantViolation("device index disagrees for \(k)") }
            }
            if e.host != Self.none {
                hosts += 1
                guard slotKey[Int(e.host)] == k, slotState[Int(e.host)] != .free else {
                    throw InvariantViolation("host index disagrees for \(k)")
                }
            }
        }
        guard devices == deviceCount, hosts == hostCount else {
            throw InvariantViolation("index counts \(deviceCount)/\(hostCount), entries \(devices)/\(hosts)")
        }
        try lru.validate()
        var v = lru.head
        while v != IntrusiveList.end {
            guard slotState[Int(v)] == .ready else { throw InvariantViolation("host LRU holds slot \(v), not ready") }
            v = lru.next(v)
        }
        let ready = slotState.count { $0 == .ready }
        guard lru.count == ready else {
            throw InvariantViolation("host LRU holds \(lru.count) of \(ready) ready slots")
        }
    }

    /// Removes `key`'s device or host part, and the entry when nothing is left.
    private mutating func clear(_ key: BlockKey, device: Bool) {
        guard var e = entries[key] else { return }
        if device {
            e.device = Self.none
            deviceCount -= 1
        } else {
            e.host = Self.none
            hostCount -= 1
        }
        if e.device == Self.none && e.host == Self.none { entries[key] = nil } else { entries[key] = e }
    }
}
