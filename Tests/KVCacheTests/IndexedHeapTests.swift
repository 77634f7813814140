import KVCache
import Testing

/// `IndexedHeap` against a model (a dictionary of members and their keys, the minimum found by a scan)
/// under seeded random operations, and against CPython's heapq on keys with many ties.
struct IndexedHeapTests {
    /// A total key: a small priority (so ties of priority are common), then the id.
    struct Total: Comparable, Sendable {
        var priority: Int
        var id: Int32
        static func < (a: Self, b: Self) -> Bool { a.priority != b.priority ? a.priority < b.priority : a.id < b.id }
    }

    @Test("random inserts, updates, removes and pops agree with a scanned model", arguments: [1, 2, 3] as [UInt64])
    func agreesWithModel(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var heap = IndexedHeap<Total>(capacity: seed == 1 ? 0 : 16)   // seed 1: positions grow on demand
        var model: [Int32: Total] = [:]
        for step in 0 ..< 4000 {
            let id = Int32(rng.next() % 64)
            let key = Total(priority: Int(rng.next() % 8), id: id)
            switch rng.next() % 6 {
            case 0, 1:
                heap.update(id, key: key)
                model[id] = key
            case 2:
                if model[id] == nil {
                    heap.insert(id, key: key)
                    model[id] = key
                }
            case 3:
                heap.remove(id)
                model[id] = nil
            case 4:
                let expected = model.values.min()
                #expect(heap.minKey == expected, "step \(step)")
                let popped = heap.popMin()
                #expect(popped == expected?.id, "step \(step)")
                if let popped { model[popped] = nil }
            default:
                if rng.next() % 50 == 0 {
                    heap.removeAll()
                    model.removeAll()
                } else {
                    // A batch of new members appended unordered, then heapified.
                    for _ in 0 ..< 5 {
                        let b = Int32(64 + rng.next() % 64)
                        if model[b] == nil {
                            let k = Total(priority: Int(rng.next() % 8), id: b)
                            heap.appendUnordered(b, key: k)
                            model[b] = k
                        }
                    }
                    heap.heapify()
                }
            }
            try heap.validate()
            #expect(heap.count == model.count)
            #expect(heap.contains(id) == (model[id] != nil))
            #expect(heap.key(of: id) == model[id])
        }
        // Draining gives the model's sorted order.
        var drained: [Int32] = []
        while let x = heap.popMin() { drained.append(x) }
        #expect(drained == model.values.sorted().map(\.id))
    }

    /// Vectors from CPython 3's heapq on items compared by key alone: ids 0..<20 with `keys`, heapify,
    /// then two pops and one push (ids 20, 21, ... with `pushes`) repeated ten times, then pops until
    /// empty. Equal keys leave in heapq's order, not by id.
    @Test("equal keys leave in the order CPython's heapq gives them")
    func matchesPythonHeapq() throws {
        let keys: [Int64] = [2, 1, 3, 0, 0, 0, 2, 0, 1, 0, 0, 3, 3, 0, 1, 0, 3, 0, 0, 1]
        let pushes: [Int64] = [1, 0, 2, 0, 3, 1, 0, 2, 1, 0]
        let python: [Int32] = [13, 5, 10, 4, 9, 18, 17, 3, 21, 15, 7, 23, 14, 19, 26, 25, 1, 20, 8, 28, 29, 0, 6,
                               27, 22, 12, 11, 24, 16, 2]
        var heap = IndexedHeap<Int64>()
        for (i, k) in keys.enumerated() { heap.appendUnordered(Int32(i), key: k) }
        heap.heapify()
        var out: [Int32] = [], next: Int32 = 20
        for step in 0 ..< 30 {
            if step % 3 == 2 {
                heap.insert(next, key: pushes[Int(next - 20)])
                next += 1
            } else {
                let popped = heap.popMin()
                out.append(try #require(popped))
            }
            try heap.validate()
        }
        while let x = heap.popMin() { out.append(x) }
        #expect(out == python)
    }

    @Test("validate reports a heap left unordered")
    func unorderedIsReported() {
        var heap = IndexedHeap<Int64>(capacity: 4)
        heap.appendUnordered(0, key: 5)
        heap.appendUnordered(1, key: 1)
        #expect(throws: InvariantViolation.self) { try heap.validate() }
        heap.heapify()
        #expect(heap.min == 1)
    }
}
