/// An indexed binary min-heap of block ids keyed by (priority, deeper first, lower id), with each
/// block's heap position stored in a dense array so that update and remove are O(log n) without a
/// search. It also stores every cached block's priority and depth (members or not), so the prefix
/// index keeps them in one place. Holds the evictable leaves; no allocation after init.
struct EvictionHeap: Sendable {
    private var heap: [BlockID] = []
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
    /// The block that would be evicted next. O(1).
    var min: BlockID? { heap.first }

    @inline(__always)
    private func less(_ a: BlockID, _ b: BlockID) -> Bool {
        let pa = priority[Int(a)], pb = priority[Int(b)]
        if pa != pb { return pa < pb }
        let da = depth[Int(a)], db = depth[Int(b)]
        if da != db { return da > db }
        return a < b
    }

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
        if p < old { siftUp(i) } else if p > old { siftDown(i) }
    }

    /// Adds `b` with its stored priority and depth. O(log n).
    mutating func insert(_ b: BlockID) {
        precondition(!contains(b))
        position[Int(b)] = Int32(heap.count)
        heap.append(b)
        siftUp(heap.count - 1)
    }

    /// Removes `b` if present. O(log n).
    mutating func remove(_ b: BlockID) {
        let i = Int(position[Int(b)])
        guard i >= 0 else { return }
        let last = heap.removeLast()
        position[Int(b)] = -1
        if i < heap.count {
            heap[i] = last
            position[Int(last)] = Int32(i)
            siftDown(i)
            siftUp(Int(position[Int(last)]))
        }
    }

    /// Removes and returns the minimum. O(log n).
    mutating func popMin() -> BlockID? {
        guard let b = heap.first else { return nil }
        remove(b)
        return b
    }

    mutating func removeAll() {
        for b in heap { position[Int(b)] = -1 }
        heap.removeAll(keepingCapacity: true)
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        let b = heap[i]
        while i > 0 {
            let parent = (i - 1) / 2
            let p = heap[parent]
            guard less(b, p) else { break }
            heap[i] = p
            position[Int(p)] = Int32(i)
            i = parent
        }
        heap[i] = b
        position[Int(b)] = Int32(i)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        let b = heap[i]
        let n = heap.count
        while true {
            var c = 2 * i + 1
            guard c < n else { break }
            if c + 1 < n && less(heap[c + 1], heap[c]) { c += 1 }
            guard less(heap[c], b) else { break }
            heap[i] = heap[c]
            position[Int(heap[i])] = Int32(i)
            i = c
        }
        heap[i] = b
        position[Int(b)] = Int32(i)
    }

    /// Checks positions and the heap order. O(n).
    func validate() throws(ValidationError) {
        for (i, b) in heap.enumerated() {
            guard position[Int(b)] == Int32(i) else { throw ValidationError("heap position of \(b) is stale") }
            if i > 0 && less(b, heap[(i - 1) / 2]) { throw ValidationError("heap order broken at \(i)") }
        }
    }
}
