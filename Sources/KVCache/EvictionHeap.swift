/// The evictable leaves of a prefix index in eviction order: an `IndexedHeap` of block ids keyed by
/// (priority, deeper first, lower id). The key is total (the block id last), so the order in which
/// blocks leave is fixed by the keys alone, whatever the heap's sift loops. The owner keeps each
/// block's priority and depth (members or not) and hands them in on insert and update. `insert`,
/// `update`, `remove` and `popMin` are O(log n); no allocation after init.
struct EvictionHeap: Sendable {
    /// A member's sort key: the lowest priority first, then the deeper block, then the lower id.
    struct Key: Comparable, Sendable {
        var priority: Double
        var depth: Int32
        var block: BlockID

        @inline(__always)
        static func < (a: Key, b: Key) -> Bool {
            if a.priority != b.priority { return a.priority < b.priority }
            if a.depth != b.depth { return a.depth > b.depth }
            return a.block < b.block
        }
    }

    private var heap: IndexedHeap<Key>

    init(capacity: Int) { heap = IndexedHeap(capacity: capacity) }

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    func contains(_ b: BlockID) -> Bool { heap.contains(b) }

    /// The sort key a member was given (validation), nil for a block that is not a member.
    func sortKey(of b: BlockID) -> (priority: Double, depth: Int32)? {
        heap.key(of: b).map { ($0.priority, $0.depth) }
    }

    /// Gives a member `b` the priority `p`, restoring heap order; nothing for a block that is not a
    /// member. O(log n).
    @inline(__always)
    mutating func update(_ b: BlockID, priority p: Double) {
        guard let k = heap.key(of: b), k.priority != p else { return }
        heap.update(b, key: Key(priority: p, depth: k.depth, block: b))
    }

    /// Adds `b` (not a member) with its sort key. O(log n).
    @inline(__always)
    mutating func insert(_ b: BlockID, priority: Double, depth: Int32) {
        heap.insert(b, key: Key(priority: priority, depth: depth, block: b))
    }

    /// Removes `b` if present. O(log n).
    @inline(__always)
    mutating func remove(_ b: BlockID) { heap.remove(b) }

    /// Removes and returns the minimum. O(log n).
    @inline(__always)
    mutating func popMin() -> BlockID? { heap.popMin() }

    mutating func removeAll() { heap.removeAll() }

    /// Checks positions and the heap order, and that each entry's key names its block. O(n).
    func validate() throws(InvariantViolation) {
        try heap.validate()
    }
}
