/// An indexed binary min-heap over dense node ids `0..<n`, ordered by (priority, tie) with the smallest
/// first: what a tier of the knowledge tree evicts next.
///
/// Each id is in the heap at most once; `update` inserts it or moves it, `remove` takes it out, both
/// O(log n); `min` is O(1). Positions live in a dense array indexed by id, so after the arrays have grown
/// to the largest id no call allocates. Misuse (a negative id) is a precondition failure: ids come from
/// the tree, never from input. `validate()` checks the heap order and the position index.
struct NodeHeap: Sendable {
    private var heap: [Int32] = []
    /// Index of each id in `heap`, or -1 when absent.
    private var position: [Int32] = []
    private var priority: [Double] = []
    private var tie: [UInt64] = []

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    /// The id with the smallest (priority, tie), if any. O(1).
    var min: Int32? { heap.first }

    func contains(_ id: Int32) -> Bool { Int(id) < position.count && position[Int(id)] >= 0 }
    func priority(of id: Int32) -> Double { priority[Int(id)] }

    /// Inserts `id` or changes its keys. O(log n).
    mutating func update(_ id: Int32, priority p: Double, tie t: UInt64) {
        precondition(id >= 0, "node ids are >= 0")
        let i = Int(id)
        if i >= position.count {
            let grow = i + 1 - position.count
            position.append(contentsOf: repeatElement(-1, count: grow))
            priority.append(contentsOf: repeatElement(0, count: grow))
            tie.append(contentsOf: repeatElement(0, count: grow))
        }
        priority[i] = p
        tie[i] = t
        if position[i] < 0 {
            heap.append(id)
            position[i] = Int32(heap.count - 1)
            siftUp(heap.count - 1)
        } else {
            let at = Int(position[i])
            siftUp(at)
            siftDown(Int(position[i]))
        }
    }

    /// Takes `id` out if present. O(log n).
    mutating func remove(_ id: Int32) {
        guard contains(id) else { return }
        let at = Int(position[Int(id)])
        let last = heap.count - 1
        if at != last {
            heap.swapAt(at, last)
            position[Int(heap[at])] = Int32(at)
        }
        heap.removeLast()
        position[Int(id)] = -1
        if at < heap.count {
            siftUp(at)
            siftDown(Int(position[Int(heap[at])]))
        }
    }

    private func less(_ a: Int32, _ b: Int32) -> Bool {
        let pa = priority[Int(a)], pb = priority[Int(b)]
        return pa != pb ? pa < pb : tie[Int(a)] < tie[Int(b)]
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let p = (i - 1) / 2
            guard less(heap[i], heap[p]) else { break }
            heap.swapAt(i, p)
            position[Int(heap[i])] = Int32(i)
            position[Int(heap[p])] = Int32(p)
            i = p
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, less(heap[l], heap[m]) { m = l }
            if r < heap.count, less(heap[r], heap[m]) { m = r }
            guard m != i else { return }
            heap.swapAt(i, m)
            position[Int(heap[i])] = Int32(i)
            position[Int(heap[m])] = Int32(m)
            i = m
        }
    }

    /// The heap order holds and every position points back at its id. O(n).
    func validate() -> String? {
        for (i, id) in heap.enumerated() {
            if position[Int(id)] != Int32(i) { return "heap position of node \(id) is \(position[Int(id)]), not \(i)" }
            if i > 0, less(id, heap[(i - 1) / 2]) { return "heap order broken at \(i)" }
        }
        let present = position.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        return present == heap.count ? nil : "\(present) positions set for \(heap.count) heap entries"
    }
}
