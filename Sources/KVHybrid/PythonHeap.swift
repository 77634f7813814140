/// A binary min-heap of `(key, id)` that pops in exactly the order Python's `heapq` does for items
/// compared by `key` alone (`heapify`, `heappop`, `heappush`, the same sift loops): equal keys leave in
/// the order CPython's algorithm gives them, which the reference simulator's SGLang+ and vLLM+ leaf LRU
/// depend on.
///
/// Storage is one array kept across uses (`removeAll(keepingCapacity:)`): no allocation per operation
/// once warm. push and pop are O(log n), heapify O(n). Popping an empty heap is a programming error.
struct PythonHeap {
    private(set) var items: [(key: Int64, id: Int32)] = []

    var isEmpty: Bool { items.isEmpty }

    mutating func reset() { items.removeAll(keepingCapacity: true) }

    /// Appends without ordering; call `heapify` after a batch of these.
    mutating func appendUnordered(key: Int64, id: Int32) { items.append((key, id)) }

    mutating func heapify() {
        var i = items.count / 2 - 1
        while i >= 0 {
            siftUp(i)
            i -= 1
        }
    }

    mutating func push(key: Int64, id: Int32) {
        items.append((key, id))
        siftDown(start: 0, items.count - 1)
    }

    mutating func pop() -> Int32 {
        let last = items.removeLast()
        guard !items.isEmpty else { return last.id }
        let top = items[0]
        items[0] = last
        siftUp(0)
        return top.id
    }

    // CPython's _siftdown: moves the item at `pos` up towards `start` while it is smaller than its parent.
    private mutating func siftDown(start: Int, _ position: Int) {
        var pos = position
        let item = items[pos]
        while pos > start {
            let parentPos = (pos - 1) >> 1
            let parent = items[parentPos]
            if item.key < parent.key {
                items[pos] = parent
                pos = parentPos
                continue
            }
            break
        }
        items[pos] = item
    }

    // CPython's _siftup: moves the smaller child up until a leaf, puts the item there, then sifts it down.
    private mutating func siftUp(_ position: Int) {
        var pos = position
        let end = items.count, start = pos
        let item = items[pos]
        var child = 2 * pos + 1
        while child < end {
            let right = child + 1
            if right < end && !(items[child].key < items[right].key) { child = right }
            items[pos] = items[child]
            pos = child
            child = 2 * pos + 1
        }
        items[pos] = item
        siftDown(start: start, pos)
    }
}
