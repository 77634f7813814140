/// The radix prefix cache: a tree of cached full blocks, page-granular (one node per block, as
/// SGLang's RadixAttention with page size = block size), keyed by chained block keys.
///
/// Because a block key already covers its whole prefix, a child is found by one probe of a global
/// key index instead of a per-node child map: matching a prompt of n blocks is n O(1) probes. Nodes
/// are the cached blocks themselves, stored as dense arrays indexed by `BlockID` (one record of
/// parent, child count, depth, continuation, priority and held flag; the key beside the key index),
/// so the tree adds no object per node and one block's updates touch one record.
///
/// Path compression over blocks: a block published as the first child of a childless parent, from
/// a chain of keys the cache hashed itself (`chained`), is its parent's *continuation* and gets no
/// key-table entry; its key is stored at the block and matched by comparing it when the walk comes
/// from the parent. So a run of blocks of one unshared suffix costs one key-table entry (its first
/// block's), publishing its later blocks or evicting them (always from the leaf end) touches no key
/// table, and a divergence simply indexes the other child. `match` walks from the root (keys are
/// chained: a key determines its whole prefix) and is exact; `block(for:)` of a continuation block's key
/// alone, with no path, scans (O(capacity)); `child(of:key:)` finds it from its parent in O(1).
///
/// Eviction removes only unheld leaves, so every cached block's ancestors stay matchable. The
/// unheld leaves sit in an `EvictionHeap` ordered by the `EvictionPolicy`'s priorities: each
/// eviction costs O(log n), never a scan. A policy that `ordersByRelease` (LRU) needs no heap: every
/// unheld block sits in an intrusive list in release order, whose cold end is always the policy's
/// victim and always a leaf (a child is released no later than its parent, and deeper first within
/// one release), so release, pin and eviction are O(1) and the order is exactly the heap's. Holders (reference counts) live in `BlockPool`; the owner
/// tells the index when a cached block gains its first or loses its last holder (`setHeld`).
public struct PrefixIndex {
    public let capacity: Int
    /// A cached block's place in the tree and its eviction rank, one record per block so that a
    /// block's updates touch one cache line (24 bytes).
    private struct Node {
        var parent: BlockID = PrefixIndex.noParent
        var childCount: Int32 = 0
        /// Blocks from the root: 1 for a first block, 0 for a block that is not cached (so the
        /// record alone says whether its block is cached).
        var depth: Int32 = 0
        /// The child that continues this block's run (no key-table entry), or `noParent`.
        var continuation: BlockID = PrefixIndex.noParent
        var held = false
        /// The policy's priority (kept when the block is held, so the next access can build on it).
        var priority: Double = 0
    }
    private var nodes: [Node]
    private var index: KeyIndex
    private var heap: EvictionHeap
    /// Every unheld block, most recently released at the front; used instead of the heap when
    /// `byRelease`.
    private var released: IntrusiveList
    private let byRelease: Bool
    /// The policy's `observesEvictions`, read once.
    private let observesEvictions: Bool
    /// Where the prepare calls put what they load, so that the loads are not optimized away.
    private var prefetchSink: UInt64 = 0
    public let policy: any EvictionPolicy
    /// Cached blocks that nobody holds: evictable now (leaves) or once their children go.
    public private(set) var unheldCount = 0

    /// The parent of a first block (and the parent slot of a block that is not cached).
    public static let noParent: BlockID = -1

    public init(capacity: Int, policy: any EvictionPolicy) {
        self.capacity = capacity
        self.policy = policy
        nodes = Array(repeating: Node(), count: capacity)
        index = KeyIndex(maxEntries: capacity)
        heap = EvictionHeap(capacity: capacity)
        byRelease = policy.ordersByRelease
        observesEvictions = policy.observesEvictions
        released = IntrusiveList(capacity: byRelease ? capacity : 0)
    }

    /// Number of cached blocks.
    public var count: Int { index.count }
    /// Unheld leaves, evictable right now. O(1), or O(unheld) for a policy that orders by release.
    public var evictableLeafCount: Int {
        guard byRelease else { return heap.count }
        var leaves = 0
        var b = released.head
        while b != IntrusiveList.end {
            if nodes[Int(b)].childCount == 0 { leaves += 1 }
            b = released.next(b)
        }
        return leaves
    }

    /// The cached block with this key: O(1) expected for a block with a key-table entry, a scan of
    /// every block (O(capacity)) for a run's continuation block. Callers that know the parent use
    /// `child(of:key:)`, prompts `match`.
    public func block(for key: BlockKey) -> BlockID? { index.find(key) ?? index.scan(for: key) }

    /// The cached child of `parent` (`noParent`: a first block) with this key, or the cached block
    /// the key table holds for it. O(1) expected.
    @inline(__always) public func child(of parent: BlockID, key: BlockKey) -> BlockID? {
        if parent != Self.noParent {
            let c = nodes[Int(parent)].continuation
            if c != Self.noParent && index.key(of: c) == key { return c }
        }
        return index.find(key)
    }

    /// Whether `block` (cached) has a key-table entry: every cached block but a run's continuations.
    @inline(__always) func isIndexed(_ block: BlockID) -> Bool {
        let p = nodes[Int(block)].parent
        return p == Self.noParent || nodes[Int(p)].continuation != block
    }

    /// Whether `block` is in the cache.
    @inline(__always) public func isCached(_ block: BlockID) -> Bool { nodes[Int(block)].depth != 0 }
    /// The key of a cached block (`.zero` if not cached).
    @inline(__always) public func key(of block: BlockID) -> BlockKey { index.key(of: block) }
    /// The parent of a cached block, or `PrefixIndex.noParent` for a first block.
    @inline(__always) public func parent(of block: BlockID) -> BlockID { nodes[Int(block)].parent }
    /// Cached children of a block.
    @inline(__always) public func childCount(of block: BlockID) -> Int { Int(nodes[Int(block)].childCount) }
    /// Blocks from the root (1 for a first block).
    @inline(__always) public func depth(of block: BlockID) -> Int { Int(nodes[Int(block)].depth) }
    /// The policy's current priority of a cached block.
    @inline(__always) public func priority(of block: BlockID) -> Double { nodes[Int(block)].priority }

    /// Loads the key-table lines that probes for `keys` will read, one independent load each, so
    /// their cache misses overlap instead of coming one probe at a time. O(keys); changes nothing.
    public mutating func prepareProbes<Keys: Collection<BlockKey>>(_ keys: Keys) {
        var sink: UInt64 = 0
        for k in keys { sink ^= index.homeSlot(of: k) }
        prefetchSink ^= sink
    }

    /// Loads the key-table lines of the next `count` victims (LRU's cold end), as `prepareProbes`
    /// does for keys; nothing for a heap-ordered policy. O(count); changes nothing.
    public mutating func prepareEvictions(_ count: Int) {
        guard byRelease else { return }
        var sink: UInt64 = 0
        var b = released.tail
        for _ in 0 ..< count where b != IntrusiveList.end {
            if isIndexed(b) { sink ^= index.homeSlot(of: index.key(of: b)) }
            b = released.previous(b)
        }
        prefetchSink ^= sink
    }

    /// Number of leading `keys` that are cached, stopping at the first miss. O(matched): a key that
    /// continues the previous block's run is one key comparison, any other one key-table probe.
    public mutating func matchLength(_ keys: UnsafeBufferPointer<BlockKey>) -> Int {
        match(keys) { _ in }
    }

    /// `matchLength(_:)` that also appends each matched block to `blocks`, so that a caller pinning
    /// them later need not probe again (allocates nothing when `blocks` has the capacity).
    public mutating func match(_ keys: UnsafeBufferPointer<BlockKey>, into blocks: inout [BlockID]) -> Int {
        match(keys) { blocks.append($0) }
    }

    @inline(__always)
    private mutating func match(_ keys: UnsafeBufferPointer<BlockKey>, _ found: (BlockID) -> Void) -> Int {
        var previous = Self.noParent
        for (n, k) in keys.enumerated() {
            guard let b = child(of: previous, key: k) else { return n }
            found(b)
            previous = b
        }
        return keys.count
    }

    private func node(_ b: BlockID, clock: UInt64, tokens: Int) -> PolicyNode {
        PolicyNode(block: b, depth: Int(nodes[Int(b)].depth), key: index.key(of: b), tokens: tokens, clock: clock)
    }

    /// Publishes `block` under `key` as a child of `parent` (`noParent` for a first block). The block is
    /// held by its writer. O(log n) (the parent may leave the heap).
    /// - Precondition: `key` is not cached, `block` is not cached, `parent` is cached or `noParent`.
    public mutating func insert(_ key: BlockKey, block: BlockID, parent: BlockID, tokens: Int, clock: UInt64) {
        let cached = publish(key, block: block, parent: parent, tokens: tokens, clock: clock)
        precondition(cached == nil, "duplicate key in the prefix index")
    }

    /// `insert(_:block:parent:tokens:clock:)` unless `key` is already cached: then returns the block
    /// that holds it and changes nothing. One key-table probe decides and inserts; none when `chained`
    /// and the parent is a cached leaf with no continuation: then `key` (which covers the parent's
    /// prefix, so it can only be cached as the parent's child) is absent and `block` continues the
    /// parent's run. O(log n).
    /// - Parameter chained: `key` is the parent's key chained with the block's tokens, as
    ///   `BlockHasher` makes it (never for keys a caller supplies).
    /// - Precondition: `block` is not cached (unless under `key`), `parent` is cached or `noParent`.
    public mutating func publish(_ key: BlockKey, block: BlockID, parent: BlockID, tokens: Int, clock: UInt64,
                                 chained: Bool = false) -> BlockID? {
        if index.key(of: block) == key { return block }
        precondition(key != .zero && !isCached(block))
        precondition(parent == Self.noParent || isCached(parent))
        if parent != Self.noParent {
            let c = nodes[Int(parent)].continuation
            if c != Self.noParent && index.key(of: c) == key { return c }
        }
        let continues = chained && parent != Self.noParent && nodes[Int(parent)].childCount == 0
        if continues {
            index.storeKey(key, block)
        } else if let cached = index.findOrInsert(key, block) {
            return cached
        }
        let depth = parent == Self.noParent ? 1 : nodes[Int(parent)].depth + 1
        let priority = byRelease ? Double(clock)
            : policy.priorityOnInsert(PolicyNode(block: block, depth: Int(depth), key: key, tokens: tokens, clock: clock))
        // Unchecked: `block` and `parent` passed the isCached preconditions, so both are in range.
        nodes.withUnsafeMutableBufferPointer { n in
            n[Int(block)] = Node(parent: parent, childCount: 0, depth: depth, continuation: Self.noParent, held: true,
                                 priority: priority)
            if parent != Self.noParent {
                n[Int(parent)].childCount += 1
                if continues { n[Int(parent)].continuation = block }
            }
        }
        // By release the writer holds the parent, so it is not listed; else it is no longer a leaf.
        if parent != Self.noParent && !byRelease { heap.remove(parent) }
        return nil
    }

    /// Lets the policy re-rank a cached block after a hit or a release. O(log n); by release O(1),
    /// the priority being the clock.
    public mutating func touch(_ block: BlockID, kind: AccessKind, clock: UInt64, tokens: Int) {
        if byRelease {
            nodes[Int(block)].priority = Double(clock)
            return
        }
        let p = policy.priorityOnAccess(node(block, clock: clock, tokens: tokens),
                                        previous: nodes[Int(block)].priority, kind: kind)
        nodes[Int(block)].priority = p
        heap.update(block, priority: p)
    }

    /// Records that a cached block gained its first holder (`true`) or lost its last (`false`).
    /// Unheld leaves become evictable. O(log n), O(1) by release.
    public mutating func setHeld(_ block: BlockID, _ isHeld: Bool) {
        precondition(isCached(block) && nodes[Int(block)].held != isHeld)
        nodes[Int(block)].held = isHeld
        if isHeld {
            unheldCount -= 1
            if byRelease { released.remove(block) } else { heap.remove(block) }
        } else {
            unheldCount += 1
            if byRelease {
                released.pushFront(block)
            } else if nodes[Int(block)].childCount == 0 {
                heap.insert(block, priority: nodes[Int(block)].priority, depth: nodes[Int(block)].depth)
            }
        }
    }

    /// A cached block gained a holder (`first`: its first, so it leaves the evictable set): `setHeld(true)`
    /// when `first`, then `touch(kind: .hit)`, by release in one step on the block's record. O(log n),
    /// O(1) by release.
    public mutating func hit(_ block: BlockID, first: Bool, clock: UInt64, tokens: Int) {
        guard byRelease else {
            if first { setHeld(block, true) }
            touch(block, kind: .hit, clock: clock, tokens: tokens)
            return
        }
        nodes.withUnsafeMutableBufferPointer { n in
            precondition(block >= 0 && Int(block) < n.count && n[Int(block)].depth != 0 && n[Int(block)].held != first)
            n[Int(block)].priority = Double(clock)
            n[Int(block)].held = true
        }
        guard first else { return }
        unheldCount -= 1
        released.remove(block)
    }

    /// The last holder of the cached `block` let it go: `touch(kind: .release)` then `setHeld(false)`,
    /// by release in one step on the block's record. O(log n), O(1) by release.
    public mutating func release(_ block: BlockID, clock: UInt64, tokens: Int) {
        guard byRelease else {
            touch(block, kind: .release, clock: clock, tokens: tokens)
            setHeld(block, false)
            return
        }
        nodes.withUnsafeMutableBufferPointer { n in
            precondition(block >= 0 && Int(block) < n.count && n[Int(block)].depth != 0 && n[Int(block)].held)
            n[Int(block)].priority = Double(clock)
            n[Int(block)].held = false
        }
        unheldCount += 1
        released.pushFront(block)
    }

    /// Evicts the lowest-priority unheld leaf and returns it with its key and its parent's key (nil for
    /// a first block), which a lower tier needs to report the block with its place in the tree. The
    /// parent stays cached and may become an evictable leaf; the evicted block is no longer cached and
    /// the caller frees or reuses it. O(log n), O(1) by release.
    public mutating func evictLeaf(clock: UInt64, tokens: Int) -> (block: BlockID, key: BlockKey, parent: BlockKey?)? {
        guard let (b, key, p) = evict(clock: clock, tokens: tokens) else { return nil }
        return (b, key, p == Self.noParent ? nil : index.key(of: p))
    }

    /// `evictLeaf(clock:tokens:)` returning the parent's block (`noParent` for a first block), still
    /// cached, instead of its key: a caller that needs the parent's key reads it with `key(of:)`, and
    /// one that does not saves that load. O(log n), O(1) by release.
    public mutating func evict(clock: UInt64, tokens: Int) -> (block: BlockID, key: BlockKey, parent: BlockID)? {
        let b: BlockID
        if byRelease {
            b = released.popTail()
            guard b != IntrusiveList.end else { return nil }
            assert(nodes[Int(b)].childCount == 0, "the coldest released block must be a leaf")
        } else {
            guard let min = heap.popMin() else { return nil }
            b = min
        }
        let key = index.key(of: b)
        let p = nodes[Int(b)].parent
        if observesEvictions { policy.didEvict(node(b, clock: clock, tokens: tokens), priority: nodes[Int(b)].priority) }
        detach(b)
        unheldCount -= 1
        return (b, key, p)
    }

    /// Uncaches the leaf `b`: its key-table entry goes, unless it continues its parent's run (then
    /// only its key and the parent's continuation link). O(1) expected.
    private mutating func detach(_ b: BlockID) {
        // Unchecked: `b` came off the list or the heap and `p` is its cached parent, both in range.
        let (p, parentIsLeaf, indexed) = nodes.withUnsafeMutableBufferPointer { n in
            let p = n[Int(b)].parent
            n[Int(b)].parent = Self.noParent
            n[Int(b)].held = false
            n[Int(b)].depth = 0
            guard p != Self.noParent else { return (p, false, true) }
            n[Int(p)].childCount -= 1
            let continues = n[Int(p)].continuation == b
            if continues { n[Int(p)].continuation = Self.noParent }
            return (p, n[Int(p)].childCount == 0 && !n[Int(p)].held, !continues)
        }
        if indexed { index.remove(b) } else { index.dropKey(b) }
        if parentIsLeaf && !byRelease { heap.insert(p, priority: nodes[Int(p)].priority, depth: nodes[Int(p)].depth) }
    }

    /// Drops every cached block. Precondition: none is held. Calls `body` with each dropped block.
    /// O(cached).
    public mutating func removeAll(_ body: (BlockID) -> Void) {
        precondition(unheldCount == count, "removeAll with held blocks")
        for b in 0 ..< capacity where isCached(BlockID(b)) {
            nodes[b].parent = Self.noParent
            nodes[b].childCount = 0
            nodes[b].depth = 0
            nodes[b].continuation = Self.noParent
            body(BlockID(b))
        }
        index.removeAll()
        heap.removeAll()
        while released.tail != IntrusiveList.end { released.remove(released.tail) }
        unheldCount = 0
        policy.reset()
    }

    /// Checks that the key index and the tree agree (every cached block but a run's continuations
    /// has a table entry; a continuation is a cached child of the block that names it and its key
    /// is in no table entry), child counts and depths are right, and the heap holds exactly the
    /// unheld leaves. `isHeld` says which blocks have holders (from the pool).
    /// O(capacity).
    public func validate(isHeld: (BlockID) -> Bool) throws(InvariantViolation) {
        var cached = 0, unheld = 0
        var children = [Int32](repeating: 0, count: capacity)
        for b in 0 ..< capacity where isCached(BlockID(b)) {
            cached += 1
            let id = BlockID(b)
            if isIndexed(id) {
                guard index.find(index.key(of: id)) == id else { throw InvariantViolation("key index misses block \(b)") }
            } else {
                guard index.find(index.key(of: id)) == nil else {
                    throw InvariantViolation("continuation block \(b) has a key-table entry under another block")
                }
            }
            let c = nodes[b].continuation
            if c != Self.noParent {
                guard isCached(c), nodes[Int(c)].parent == id else {
                    throw InvariantViolation("continuation \(c) of block \(b) is not its cached child")
                }
            }
            guard nodes[b].held == isHeld(id) else { throw InvariantViolation("held flag of block \(b) is stale") }
            if !nodes[b].held { unheld += 1 }
            let p = nodes[b].parent
            if p != Self.noParent {
                guard isCached(p) else { throw InvariantViolation("block \(b) has an uncached parent \(p)") }
                guard nodes[b].depth == nodes[Int(p)].depth + 1 else { throw InvariantViolation("depth of \(b) wrong") }
                guard !(nodes[b].held && !nodes[Int(p)].held) else {
                    throw InvariantViolation("held block \(b) has an unheld parent \(p)")
                }
                children[Int(p)] += 1
            } else if nodes[b].depth != 1 {
                throw InvariantViolation("first block \(b) has depth \(nodes[b].depth)")
            }
        }
        guard cached == index.count else { throw InvariantViolation("index has \(index.count) keys, tree \(cached)") }
        for b in 0 ..< capacity where (index.key(of: BlockID(b)) != .zero) != isCached(BlockID(b)) {
            throw InvariantViolation("block \(b): key and tree record disagree on whether it is cached")
        }
        for b in 0 ..< capacity where !isCached(BlockID(b)) && nodes[b].continuation != Self.noParent {
            throw InvariantViolation("uncached block \(b) names a continuation")
        }
        guard unheld == unheldCount else { throw InvariantViolation("unheld count \(unheldCount), found \(unheld)") }
        var leaves = 0
        for b in 0 ..< capacity where isCached(BlockID(b)) {
            guard children[b] == nodes[b].childCount else { throw InvariantViolation("child count of \(b) wrong") }
            let evictable = !nodes[b].held && children[b] == 0
            guard byRelease || heap.contains(BlockID(b)) == evictable else {
                throw InvariantViolation("heap membership of \(b) wrong (evictable: \(evictable))")
            }
            if let (priority, depth) = heap.sortKey(of: BlockID(b)),
               priority != nodes[b].priority || depth != nodes[b].depth {
                throw InvariantViolation("heap entry of \(b) is stale")
            }
            if evictable { leaves += 1 }
        }
        if byRelease {
            try validateReleaseOrder()
        } else {
            guard leaves == heap.count else { throw InvariantViolation("heap holds non-cached blocks") }
        }
        try index.forEach { (k: BlockKey, b: BlockID) throws(InvariantViolation) in
            guard key(of: b) == k else { throw InvariantViolation("key index maps to wrong block \(b)") }
        }
        try heap.validate()
    }

    /// By release: the list holds exactly the unheld cached blocks, in the order the heap would pop
    /// them (priority, then deeper first, then lower id), and the heap is empty. O(unheld).
    private func validateReleaseOrder() throws(InvariantViolation) {
        try released.validate()
        guard released.count == unheldCount else {
            throw InvariantViolation("release list holds \(released.count) blocks, \(unheldCount) are unheld")
        }
        guard heap.count == 0 else { throw InvariantViolation("a release-ordered index has heap entries") }
        var b = released.tail
        var before: BlockID? = nil
        while b != IntrusiveList.end {
            guard isCached(b), !nodes[Int(b)].held else { throw InvariantViolation("release list holds block \(b), held or not cached") }
            if let a = before {
                let (pa, pb) = (nodes[Int(a)].priority, nodes[Int(b)].priority)
                let (da, db) = (nodes[Int(a)].depth, nodes[Int(b)].depth)
                guard pa < pb || (pa == pb && (da > db || (da == db && a < b))) else {
                    throw InvariantViolation("release list out of priority order at blocks \(a), \(b)")
                }
            }
            before = b
            b = released.previous(b)
        }
    }
}
