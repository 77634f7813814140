/// The radix prefix cache: a tree of cached full blocks, page-granular (one node per block, as
/// SGLang's RadixAttention with page size = block size), keyed by chained block keys.
///
/// Because a block key already covers its whole prefix, a child is found by one probe of a global
/// key index instead of a per-node child map: matching a prompt of n blocks is n O(1) probes. Nodes
/// are the cached blocks themselves, stored as dense arrays indexed by `BlockID` (one 32-byte record
/// of priority, parent, child count, depth and held flag, continuation and release-list links; the
/// key beside the key index), so the tree adds no object per node and one block's updates touch one
/// record. The records and key tables are `OwnedBuffer`s written in place: a mutating call checks once
/// that no copy of the index shares them (`makeUnique()`), not once per array update.
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
/// unheld block sits in a list in release order, threaded through the records, whose cold end is
/// always the policy's victim and always a leaf (a child is released no later than its parent, and
/// deeper first within one release), so release, pin and eviction are O(1) and the order is exactly
/// the heap's; evicting k blocks at once (`evictInPlace`) cuts the run at the cold end off in one
/// step. Holders (reference counts) live in `BlockPool`; the owner tells the index when a cached
/// block gains its first or loses its last holder (`setHeld`).
public struct PrefixIndex {
    public let capacity: Int
    /// A cached block's place in the tree, its eviction rank and its links in the release order, one
    /// record per block so that a block's updates touch one record (32 bytes: two per cache line).
    struct Node {
        /// The policy's priority (kept when the block is held, so the next access can build on it).
        var priority: Double = 0
        var parent: BlockID = PrefixIndex.noParent
        var childCount: Int32 = 0
        /// Blocks from the root, shifted left by one, and the held flag in bit 0. Depth 0 marks a
        /// block that is not cached (so the record alone says whether its block is cached).
        var depthAndHeld: UInt32 = 0
        /// The child that continues this block's run (no key-table entry), or `noParent`.
        var continuation: BlockID = PrefixIndex.noParent
        /// By release: the next block towards the list's hot end (released later), or `end`.
        var newer: BlockID = PrefixIndex.end
        /// By release: the next block towards the list's cold end (released earlier), or `end`.
        var older: BlockID = PrefixIndex.end

        /// Blocks from the root: 1 for a first block, 0 for a block that is not cached.
        @inline(__always) var depth: Int32 { Int32(bitPattern: depthAndHeld >> 1) }
        /// Whether the block has holders.
        @inline(__always) var held: Bool {
            get { depthAndHeld & 1 != 0 }
            set { depthAndHeld = depthAndHeld & ~1 | (newValue ? 1 : 0) }
        }
        @inline(__always) static func depthAndHeld(_ depth: Int32, held: Bool) -> UInt32 {
            UInt32(bitPattern: depth) << 1 | (held ? 1 : 0)
        }
    }
    /// The records, updated in place (`makeUnique()` once per mutating call).
    private var nodes: OwnedBuffer<Node>
    private var index: KeyIndex
    private var heap: EvictionHeap
    /// By release: every unheld block is listed through its record's `newer` and `older` links, the
    /// most recently released at `head`; eviction takes `tail`. Used instead of the heap when
    /// `byRelease`.
    private var head = PrefixIndex.end, tail = PrefixIndex.end
    private let byRelease: Bool
    /// The policy's `observesEvictions`, read once.
    private let observesEvictions: Bool
    public let policy: any EvictionPolicy
    /// Cached blocks that nobody holds: evictable now (leaves) or once their children go.
    public private(set) var unheldCount = 0

    /// The parent of a first block (and the parent slot of a block that is not cached).
    public static let noParent: BlockID = -1
    /// The end of the release list.
    static let end: BlockID = -1

    public init(capacity: Int, policy: any EvictionPolicy) {
        self.capacity = capacity
        self.policy = policy
        nodes = OwnedBuffer(repeating: Node(), count: capacity)
        index = KeyIndex(maxEntries: capacity)
        byRelease = policy.ordersByRelease
        heap = EvictionHeap(capacity: byRelease ? 0 : capacity)
        observesEvictions = policy.observesEvictions
    }

    /// Gives this index storage of its own (copies the records and key tables when another value
    /// shares them), so that the in-place calls after it may write. Every public mutating call starts
    /// with it; the manager calls it once per call of its own, then the `InPlace` operations. O(1)
    /// when unshared, O(capacity) after a copy of the index.
    @inline(__always)
    mutating func makeUnique() {
        OwnedBuffer.makeUnique(&nodes)
        index.makeUnique()
    }

    /// Number of cached blocks.
    public var count: Int { index.count }
    /// Unheld leaves, evictable right now. O(1), or O(unheld) for a policy that orders by release.
    public var evictableLeafCount: Int {
        guard byRelease else { return heap.count }
        var leaves = 0
        var b = head
        while b != Self.end {
            if nodes[Int(b)].childCount == 0 { leaves += 1 }
            b = nodes[Int(b)].older
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

    /// `block` as an index into the records, trapping when it is no block of this index (the
    /// public read accessors take ids from anywhere).
    @inline(__always) private func checked(_ block: BlockID) -> Int {
        precondition(UInt(bitPattern: Int(block)) < UInt(capacity), "block \(block) out of range")
        return Int(block)
    }

    /// Whether `block` is in the cache.
    @inline(__always) public func isCached(_ block: BlockID) -> Bool { nodes[checked(block)].depth != 0 }
    /// The key of a cached block (`.zero` if not cached).
    @inline(__always) public func key(of block: BlockID) -> BlockKey { index.key(of: BlockID(checked(block))) }
    /// The parent of a cached block, or `PrefixIndex.noParent` for a first block.
    @inline(__always) public func parent(of block: BlockID) -> BlockID { nodes[checked(block)].parent }
    /// Cached children of a block.
    @inline(__always) public func childCount(of block: BlockID) -> Int { Int(nodes[checked(block)].childCount) }
    /// Blocks from the root (1 for a first block).
    @inline(__always) public func depth(of block: BlockID) -> Int { Int(nodes[checked(block)].depth) }
    /// The policy's current priority of a cached block.
    @inline(__always) public func priority(of block: BlockID) -> Double { nodes[checked(block)].priority }

    /// Number of leading `keys` that are cached, stopping at the first miss. O(matched): a key that
    /// continues the previous block's run is one key comparison, any other one key-table probe.
    public func matchLength(_ keys: UnsafeBufferPointer<BlockKey>) -> Int {
        match(keys) { _ in }
    }

    /// `matchLength(_:)` that also appends each matched block to `blocks`, so that a caller pinning
    /// them later need not probe again (allocates nothing when `blocks` has the capacity).
    public func match(_ keys: UnsafeBufferPointer<BlockKey>, into blocks: inout [BlockID]) -> Int {
        match(keys) { blocks.append($0) }
    }

    @inline(__always)
    private func match(_ keys: UnsafeBufferPointer<BlockKey>, _ found: (BlockID) -> Void) -> Int {
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
        makeUnique()
        return publishInPlace(key, block: block, parent: parent, tokens: tokens, clock: clock, chained: chained)
    }

    /// `publish(_:block:parent:tokens:clock:chained:)` after `makeUnique()`.
    @inline(__always)
    mutating func publishInPlace(_ key: BlockKey, block: BlockID, parent: BlockID, tokens: Int, clock: UInt64,
                                 chained: Bool) -> BlockID? {
        let b = checked(block)
        if index.key(of: block) == key { return block }
        precondition(key != .zero && nodes[b].depth == 0)
        precondition(parent == Self.noParent || isCached(parent))
        var depth: Int32 = 1
        var continues = false
        if parent != Self.noParent {
            let p = nodes[Int(parent)]
            if p.continuation != Self.noParent && index.key(of: p.continuation) == key { return p.continuation }
            continues = chained && p.childCount == 0
            depth = p.depth + 1
        }
        if continues {
            index.storeKey(key, block)
        } else if let cached = index.findOrInsert(key, block) {
            return cached
        }
        let priority = byRelease ? Double(clock)
            : policy.priorityOnInsert(PolicyNode(block: block, depth: Int(depth), key: key, tokens: tokens, clock: clock))
        nodes[b] = Node(priority: priority, parent: parent, childCount: 0, depthAndHeld: Node.depthAndHeld(depth, held: true),
                        continuation: Self.noParent)
        if parent != Self.noParent {
            nodes[Int(parent)].childCount += 1
            if continues { nodes[Int(parent)].continuation = block }
            // By release the writer holds the parent, so it is not listed; else it is no longer a leaf.
            if !byRelease { heap.remove(parent) }
        }
        return nil
    }

    /// Lets the policy re-rank a cached block after a hit or a release. O(log n); by release O(1),
    /// the priority being the clock.
    public mutating func touch(_ block: BlockID, kind: AccessKind, clock: UInt64, tokens: Int) {
        makeUnique()
        let b = checked(block)
        if byRelease {
            nodes[b].priority = Double(clock)
            return
        }
        let p = policy.priorityOnAccess(node(block, clock: clock, tokens: tokens), previous: nodes[b].priority, kind: kind)
        nodes[b].priority = p
        heap.update(block, priority: p)
    }

    /// Records that a cached block gained its first holder (`true`) or lost its last (`false`).
    /// Unheld leaves become evictable. O(log n), O(1) by release.
    public mutating func setHeld(_ block: BlockID, _ isHeld: Bool) {
        makeUnique()
        let b = checked(block)
        precondition(nodes[b].depth != 0 && nodes[b].held != isHeld)
        nodes[b].held = isHeld
        if isHeld {
            unheldCount -= 1
            if byRelease { unlist(block) } else { heap.remove(block) }
        } else {
            unheldCount += 1
            if byRelease {
                pushFront(block)
            } else if nodes[b].childCount == 0 {
                heap.insert(block, priority: nodes[b].priority, depth: nodes[b].depth)
            }
        }
    }

    /// Lists `b` (unlisted) at the release list's hot end. O(1).
    @inline(__always)
    private mutating func pushFront(_ b: BlockID) {
        let h = head
        nodes[Int(b)].newer = Self.end
        nodes[Int(b)].older = h
        if h != Self.end { nodes[Int(h)].newer = b } else { tail = b }
        head = b
    }

    /// Takes the listed `b` out of the release list. O(1).
    @inline(__always)
    private mutating func unlist(_ b: BlockID) {
        let (n, o) = (nodes[Int(b)].newer, nodes[Int(b)].older)
        if n != Self.end { nodes[Int(n)].older = o } else { head = o }
        if o != Self.end { nodes[Int(o)].newer = n } else { tail = n }
        nodes[Int(b)].newer = Self.end
        nodes[Int(b)].older = Self.end
    }

    /// A cached block gained a holder (`first`: its first, so it leaves the evictable set): `setHeld(true)`
    /// when `first`, then `touch(kind: .hit)`, by release in one step on the block's record. O(log n),
    /// O(1) by release.
    public mutating func hit(_ block: BlockID, first: Bool, clock: UInt64, tokens: Int) {
        makeUnique()
        hitInPlace(block, first: first, clock: clock, tokens: tokens)
    }

    /// `hit(_:first:clock:tokens:)` after `makeUnique()`.
    @inline(__always)
    mutating func hitInPlace(_ block: BlockID, first: Bool, clock: UInt64, tokens: Int) {
        guard byRelease else {
            if first { setHeld(block, true) }
            touch(block, kind: .hit, clock: clock, tokens: tokens)
            return
        }
        let b = checked(block)
        precondition(nodes[b].depth != 0 && nodes[b].held != first)
        nodes[b].priority = Double(clock)
        nodes[b].held = true
        guard first else { return }
        unheldCount -= 1
        unlist(block)
    }

    /// The last holder of the cached `block` let it go: `touch(kind: .release)` then `setHeld(false)`,
    /// by release in one step on the block's record. O(log n), O(1) by release.
    public mutating func release(_ block: BlockID, clock: UInt64, tokens: Int) {
        makeUnique()
        releaseInPlace(block, clock: clock, tokens: tokens)
    }

    /// `release(_:clock:tokens:)` after `makeUnique()`.
    @inline(__always)
    mutating func releaseInPlace(_ block: BlockID, clock: UInt64, tokens: Int) {
        guard byRelease else {
            touch(block, kind: .release, clock: clock, tokens: tokens)
            setHeld(block, false)
            return
        }
        let b = checked(block)
        precondition(nodes[b].depth != 0 && nodes[b].held)
        nodes[b].priority = Double(clock)
        nodes[b].held = false
        unheldCount += 1
        pushFront(block)
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
        makeUnique()
        let b: BlockID
        if byRelease {
            b = tail
            guard b != Self.end else { return nil }
            unlist(b)
        } else {
            guard let min = heap.popMin() else { return nil }
            b = min
        }
        let key = index.key(of: b)
        let p = nodes[Int(b)].parent
        evicted(b, clock: clock, tokens: tokens)
        return (b, key, p)
    }

    /// Evicts up to `count` blocks, exactly those `count` calls of `evict(clock:tokens:)` would evict in
    /// the same order, and hands each to `body` with the key it held as it goes (uncached, its parent
    /// still cached); returns how many it evicted. By release the run of blocks at the list's cold end leaves the list in one
    /// step. After `makeUnique()`. O(count log n), O(count) by release.
    @inline(__always)
    mutating func evictInPlace(_ count: Int, clock: UInt64, tokens: Int, _ body: (BlockID, BlockKey) -> Void) -> Int {
        guard byRelease else {
            for n in 0 ..< count {
                guard let b = heap.popMin() else { return n }
                let key = index.key(of: b)
                evicted(b, clock: clock, tokens: tokens)
                body(b, key)
            }
            return count
        }
        var b = tail
        var n = 0
        while n < count && b != Self.end {
            let newer = nodes[Int(b)].newer
            let key = index.key(of: b)
            evicted(b, clock: clock, tokens: tokens)  // clears b's links
            body(b, key)
            b = newer
            n += 1
        }
        tail = b
        if b == Self.end { head = Self.end } else { nodes[Int(b)].older = Self.end }
        return n
    }

    /// Uncaches the unheld leaf `b`, already off the heap or about to leave the release list (its
    /// links are cleared): its key-table entry goes, unless it continues its parent's run (then only
    /// its key and the parent's continuation link). O(1) expected (and the heap insert of a parent
    /// that becomes an unheld leaf, O(log n)).
    @inline(__always)
    private mutating func evicted(_ b: BlockID, clock: UInt64, tokens: Int) {
        assert(nodes[Int(b)].childCount == 0 && !nodes[Int(b)].held, "only unheld leaves are evicted")
        if observesEvictions { policy.didEvict(node(b, clock: clock, tokens: tokens), priority: nodes[Int(b)].priority) }
        let p = nodes[Int(b)].parent
        nodes[Int(b)] = Node()
        unheldCount -= 1
        guard p != Self.noParent else {
            index.remove(b)
            return
        }
        nodes[Int(p)].childCount -= 1
        if nodes[Int(p)].continuation == b {
            nodes[Int(p)].continuation = Self.noParent
            index.dropKey(b)
        } else {
            index.remove(b)
        }
        if !byRelease && nodes[Int(p)].childCount == 0 && !nodes[Int(p)].held {
            heap.insert(p, priority: nodes[Int(p)].priority, depth: nodes[Int(p)].depth)
        }
    }

    /// Drops every cached block. Precondition: none is held. Calls `body` with each dropped block.
    /// O(capacity).
    public mutating func removeAll(_ body: (BlockID) -> Void) {
        precondition(unheldCount == count, "removeAll with held blocks")
        makeUnique()
        for b in 0 ..< capacity where nodes[b].depth != 0 {
            nodes[b] = Node()
            body(BlockID(b))
        }
        index.removeAll()
        heap.removeAll()
        head = Self.end
        tail = Self.end
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
                guard c >= 0, Int(c) < capacity, isCached(c), nodes[Int(c)].parent == id else {
                    throw InvariantViolation("continuation \(c) of block \(b) is not its cached child")
                }
            }
            guard nodes[b].held == isHeld(id) else { throw InvariantViolation("held flag of block \(b) is stale") }
            if !nodes[b].held { unheld += 1 }
            let p = nodes[b].parent
            if p != Self.noParent {
                guard p >= 0, Int(p) < capacity, isCached(p) else {
                    throw InvariantViolation("block \(b) has an uncached parent \(p)")
                }
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
        for b in 0 ..< capacity where !isCached(BlockID(b)) {
            let n = nodes[b]
            guard n.continuation == Self.noParent, n.parent == Self.noParent, !n.held, n.childCount == 0,
                  n.newer == Self.end, n.older == Self.end else {
                throw InvariantViolation("the record of uncached block \(b) is not cleared")
            }
        }
        guard unheld == unheldCount else { throw InvariantViolation("unheld count \(unheldCount), found \(unheld)") }
        var leaves = 0
        for b in 0 ..< capacity where isCached(BlockID(b)) {
            guard children[b] == nodes[b].childCount else { throw InvariantViolation("child count of \(b) wrong") }
            let evictable = !nodes[b].held && children[b] == 0
            guard byRelease || heap.contains(BlockID(b)) == evictable else {
                throw InvariantViolation("heap membership of \(b) wrong (evictable: \(evictable))")
            }
            if !byRelease, let (priority, depth) = heap.sortKey(of: BlockID(b)),
               priority != nodes[b].priority || depth != nodes[b].depth {
                throw InvariantViolation("heap entry of \(b) is stale")
            }
            if evictable { leaves += 1 }
        }
        if byRelease {
            try validateReleaseOrder()
        } else {
            guard leaves == heap.count else { throw InvariantViolation("heap holds non-cached blocks") }
            guard head == Self.end, tail == Self.end else { throw InvariantViolation("a heap-ordered index lists blocks") }
        }
        try index.forEach { (k: BlockKey, b: BlockID) throws(InvariantViolation) in
            guard key(of: b) == k else { throw InvariantViolation("key index maps to wrong block \(b)") }
        }
        try heap.validate()
    }

    /// By release: the list's links agree both ways, it holds exactly the unheld cached blocks, in the
    /// order the heap would pop them (priority, then deeper first, then lower id), each one listed
    /// after its children, and the heap is empty. O(capacity).
    private func validateReleaseOrder() throws(InvariantViolation) {
        var listed = 0
        var b = tail
        var before = Self.end
        while b != Self.end {
            guard b >= 0, Int(b) < capacity else { throw InvariantViolation("release list holds invalid block \(b)") }
            guard nodes[Int(b)].older == before else { throw InvariantViolation("release list links disagree at block \(b)") }
            listed += 1
            guard listed <= capacity else { throw InvariantViolation("release list has a cycle") }
            guard isCached(b), !nodes[Int(b)].held else { throw InvariantViolation("release list holds block \(b), held or not cached") }
            if before != Self.end {
                let a = before
                let (pa, pb) = (nodes[Int(a)].priority, nodes[Int(b)].priority)
                let (da, db) = (nodes[Int(a)].depth, nodes[Int(b)].depth)
                guard pa < pb || (pa == pb && (da > db || (da == db && a < b))) else {
                    throw InvariantViolation("release list out of priority order at blocks \(a), \(b)")
                }
            }
            before = b
            b = nodes[Int(b)].newer
        }
        guard head == before else { throw InvariantViolation("release list head is \(head), the walk ends at \(before)") }
        guard listed == unheldCount else {
            throw InvariantViolation("release list holds \(listed) blocks, \(unheldCount) are unheld")
        }
        for b in 0 ..< capacity where isCached(BlockID(b)) && nodes[b].held {
            guard nodes[b].newer == Self.end, nodes[b].older == Self.end, head != BlockID(b) else {
                throw InvariantViolation("held block \(b) is linked into the release list")
            }
        }
        guard heap.count == 0 else { throw InvariantViolation("a release-ordered index has heap entries") }
    }
}
