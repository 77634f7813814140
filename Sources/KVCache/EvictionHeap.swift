/// An indexed binary min-heap of block ids keyed by (priority, deeper first, lower id). Entries
/// carry their sort key inline, so sifting reads one contiguous array; each block's heap position
/// sits in a dense array, so update and remove are O(log n) without a search. The owner keeps each
/// block's priority and depth (members or not) and hands them in on insert and update. Holds the
/// evictable leaves; no allocation after init.
struct EvictionHeap: Sendable {
    private struct Entry {
        var priority: Double
        var depth: Int32
        var block: BlockID

        @inline(__always)
        func precedes(_ o: Entry) -> Bool {
            if priority != o.priority { return priority < o.priority }
            if depth != o.depth { return depth > o.depth }
            return block < o.block
        }
    }

    private var heap: [Entry] = []
    private var position: [Int32]

    init(capacity: Int) {
        heap.reserveCapacity(capacity)
        position = Array(repeating: -1, count: capacity)
    }

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    func contains(_ b: BlockID) -> Bool { position[Int(b)] >= 0 }

    /// The sort key a member was given (validation), nil for a block that is not a member.
    func sortKey(of b: BlockID) -> (priority: Double, depth: Int32)? {
        let i = Int(position[Int(b)])
        return i < 0 ? nil : (heap[i].priority, heap[i].depth)
    }

    /// Gives a member `b` the priority `p`, restoring heap order; nothing for a block that is not a
    /// member. O(log n).
    mutating func update(_ b: BlockID, priority p: Double) {
        let i = Int(position[Int(b)])
        guard i >= 0 else { return }
        let old = heap[i].priority
        heap[i].priority = p
        if p < old { siftUp(i) } else if p > old { siftDown(i) }
    }

    /// Adds `b` (not a member) with its sort key. O(log n).
    mutating func insert(_ b: BlockID, priority: Double, depth: Int32) {
        precondition(!contains(b))
        heap.append(Entry(priority: priority, depth: depth, block: b))
        siftUp(heap.count - 1)
    }

    /// Removes `b` if present. O(log n).
    mutating func remove(_ b: BlockID) {
        let i = Int(position[Int(b)])
        guard i >= 0 else { return }
        position[Int(b)] = -1
        let last = heap.removeLast()
        if i < heap.count {
            heap[i] = last
            siftDown(i)
            siftUp(Int(position[Int(last.block)]))
        }
    }

    /// Removes and returns the minimum. O(log n).
    mutating func popMin() -> BlockID? {
        guard let b = heap.first?.block else { return nil }
        remove(b)
        return b
    }

    mutating func removeAll() {
        for e in heap { position[Int(e.block)] = -1 }
        heap.removeAll(keepingCapacity: true)
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        let e = heap[i]
        while i > 0 {
            let parent = (i - 1) / 2
            guard e.precedes(heap[parent]) else { break }
            heap[i] = heap[parent]
            position[Int(heap[i].block)] = Int32(i)
            i = parent
        }
        heap[i] = e
        position[Int(e.block)] = Int32(i)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let e = heap[i]
        let n = heap.count
        while true {
            var c = 2 * i + 1
            guard c < n else { break }
            if c + 1 < n && heap[c + 1].precedes(heap[c]) { c += 1 }
            guard heap[c].precedes(e) else { break }
            heap[i] = heap[c]
            position[Int(heap[i].block)] = Int32(i)
            i = c
        }
        heap[i] = e
        position[Int(e.block)] = Int32(i)
    }

    /// Checks positions and the heap order. O(n).
    func validate() throws(InvariantViolation) {
        for (i, e) in heap.enumerated() {
            guard position[Int(e.block)] == Int32(i) else { throw InvariantViolation("heap position of \(e.block) is stale") }
            if i > 0 && e.precedes(heap[(i - 1) / 2]) { throw InvariantViolation("heap order broken at \(i)") }
        }
    }
}
