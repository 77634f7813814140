import KVCache

/// What a tier of the knowledge tree (or the chunk-prefix cache) evicts next: its evictable node ids in
/// the library's `IndexedHeap`, smallest (priority, tie) first. Both owners make `tie` unique among the
/// members (a use counter, with the node id beside it in the knowledge tree), so the order is total and
/// does not depend on the heap's sift loops. O(log n) per update, remove and pop; see `IndexedHeap`.
typealias NodeHeap = IndexedHeap<NodeEvictionKey>

/// A node's eviction key: the policy's priority (LRU: last use; PGDSF: clock + frequency x cost), then
/// the tie-break.
struct NodeEvictionKey: Comparable, Sendable {
    var priority: Double
    var tie: UInt64

    init(priority: Double, tie: UInt64) {
        self.priority = priority
        self.tie = tie
    }

    @inline(__always)
    static func < (a: Self, b: Self) -> Bool { a.priority != b.priority ? a.priority < b.priority : a.tie < b.tie }
}
