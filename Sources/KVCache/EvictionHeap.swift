/// An indexed binary min-heap of block ids keyed by (priority, deeper first, lower id). Entries
/// carry their sort key inline, so sifting reads one contiguous array; each block's heap position
/// sits in a dense array, so update and remove are O(log n) without a search. It also stores every
/// cached block's priority and depth (members or not), keeping them in one place for the prefix
/// index. Holds the evictable leaves; no allocation after init.
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
    private var priority: [Double]
    private var depth: [Int32]

    init(capacity: Int) {
        heap.reserveCapacity(capacity)
        position = Array(repeating: -1, count: capacity)
        priority = Array(repeating: 0, count: capacity)
        depth = Array(repeating: 0, count: capacity)
    }

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    func contains(_ b: BlockID) -> Bool { position[Int(b)] >= 0 }

    func priorityOf(_ b: BlockID) -> Double { priority[Int(b)] }
    func depthOf(_ b: BlockID) -> Int { Int(depth[Int(b)]) }

    /// Sets the depth of a block that is not in the heap. O(1).
    mutating func setDepth(_ b: BlockID, _ d: Int) {
        precondition(!contains(b))
        depth[Int(b)] = Int32(truncatingIfNeeded: d)
    }

    /// Sets `b`'s priority, restoring heap order if it is a member. O(log n).
    mutating func setPriority(_ b: BlockID, _ p: Double) {
        let old = priority[Int(b)]
        priority[Int(b)] = p
        let i = Int(position[Int(b)])
        guard i >= 0 else { return }
        heap[i].priority = p
        if p < old { siftUp(i) } else if p > old { siftDown(i) }
    }

    /// Adds `b` with its stored priority and depth. O(log n).
    mutating func insert(_ b: BlockID) {
        precondition(!contains(b))
        heap.append(Entry(priority: priority[Int(b)], depth: depth[Int(b)], block: b))
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

    /// Checks positions, inline keys and the heap order. O(n).
    func validate() throws(InvariantViolation) {
        for (i, e) in heap.enumerated() {
            guard position[Int(e.block)] == Int32(i) else { throw InvariantViolation("heap position of \(e.block) is stale") }
            guard e.priority == priority[Int(e.block)], e.depth == depth[Int(e.block)] else {
                throw InvariantViolation("heap entry of \(e.block) is stale")
            }
            if i > 0 && e.precedes(heap[(i - 1) / 2]) { throw InvariantViolation("heap order broken at \(i)") }
        }
    }
}
