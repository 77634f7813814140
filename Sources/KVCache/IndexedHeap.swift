/// An indexed binary min-heap of dense ids (`Int32`, 0 and up) keyed by any `Comparable` key, the one heap
/// of the library: what a cache evicts next, which released request arrives next.
///
/// Order: the smallest key first, compared with `<` only. Its sift loops are those of CPython's `heapq`
/// (`heappush`, `heappop`, `heapify`: the bottom-up `_siftup` and `_siftdown`), so members whose keys
/// compare equal leave in exactly the order Python's heapq gives them: the hybrid cache's parity with
/// the Marconi simulator rests on that. A caller that wants an order independent of the algorithm makes
/// its key total (its id as the last field). `update` and `remove` of an inner member (heapq has
/// neither) keep the heap order; among equal keys their effect is deterministic but not heapq's.
///
/// Entries carry their key inline (one contiguous array to sift through); each id's position sits in a
/// dense array indexed by id, so `contains` and `key(of:)` are O(1) and `update` and `remove` are
/// O(log n) without a search. `insert`, `update` (of a member or not), `remove` and `popMin` are
/// O(log n); `min` is O(1); `heapify` after `appendUnordered` is O(n); `removeAll` is O(count). No call
/// allocates once the arrays have grown: the entries keep their capacity, and the position array grows
/// only when an id beyond it first arrives (amortised O(1), or never with `init(capacity:)`). Misuse (a
/// negative id, inserting a member, an ordered operation while `appendUnordered` left the heap unordered)
/// is a precondition failure: ids come from their owner's dense arrays, never from input.
/// `validate()` checks the order and the position index. Not thread-safe; a value type.
public struct IndexedHeap<Key: Comparable & Sendable>: Sendable {
    @usableFromInline
    struct Entry: Sendable {
        @usableFromInline var key: Key
        @usableFromInline var id: Int32
        @inlinable init(key: Key, id: Int32) {
            self.key = key
            self.id = id
        }
    }

    @usableFromInline var entries: [Entry] = []
    /// Index of each id in `entries`, or -1 when it is not a member.
    @usableFromInline var position: [Int32] = []
    /// `appendUnordered` ran since the last `heapify` (or `removeAll`).
    @usableFromInline var unordered = false

    /// An empty heap with room for ids `0..<capacity` and as many entries, allocated now.
    @inlinable
    public init(capacity: Int = 0) {
        entries.reserveCapacity(capacity)
        position = Array(repeating: -1, count: max(0, capacity))
    }

    @inlinable public var count: Int { entries.count }
    @inlinable public var isEmpty: Bool { entries.isEmpty }

    /// The id with the smallest key, if any. O(1).
    @inlinable public var min: Int32? {
        precondition(!unordered, "heapify after appendUnordered")
        return entries.first?.id
    }

    /// The smallest key, if any. O(1).
    @inlinable public var minKey: Key? {
        precondition(!unordered, "heapify after appendUnordered")
        return entries.first?.key
    }

    /// Whether `id` is a member. O(1).
    @inlinable
    public func contains(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < position.count && position[Int(id)] >= 0
    }

    /// The key of member `id`, nil for an id that is not a member. O(1).
    @inlinable
    public func key(of id: Int32) -> Key? {
        contains(id) ? entries[Int(position[Int(id)])].key : nil
    }

    /// Adds `id` (not a member) with `key`: heapq's `heappush`. O(log n).
    @inlinable
    public mutating func insert(_ id: Int32, key: Key) {
        precondition(!unordered, "heapify after appendUnordered")
        makeRoom(for: id)
        precondition(position[Int(id)] < 0, "id is a member already")
        entries.append(Entry(key: key, id: id))
        siftUp(from: entries.count - 1, floor: 0)
    }

    /// Gives `id` the key `key`: inserts it when it is not a member, else moves it to its new place.
    /// O(log n).
    @inlinable
    public mutating func update(_ id: Int32, key: Key) {
        guard contains(id) else { return insert(id, key: key) }
        precondition(!unordered, "heapify after appendUnordered")
        let i = Int(position[Int(id)])
        entries[i].key = key
        restore(at: i)
    }

    /// Takes `id` out when it is a member. O(log n).
    @inlinable
    public mutating func remove(_ id: Int32) {
        guard contains(id) else { return }
        precondition(!unordered, "heapify after appendUnordered")
        let i = Int(position[Int(id)])
        position[Int(id)] = -1
        let last = entries.removeLast()
        guard i < entries.count else { return }
        entries[i] = last
        position[Int(last.id)] = Int32(i)
        restore(at: i)
    }

    /// Removes and returns the id with the smallest key: heapq's `heappop`. O(log n).
    @inlinable
    public mutating func popMin() -> Int32? {
        precondition(!unordered, "heapify after appendUnordered")
        guard !entries.isEmpty else { return nil }
        let last = entries.removeLast()
        position[Int(last.id)] = -1
        guard !entries.isEmpty else { return last.id }
        let top = entries[0].id
        position[Int(top)] = -1
        entries[0] = last
        siftDown(from: 0)
        return top
    }

    /// Appends `id` (not a member) without ordering; `heapify` must follow before any ordered call.
    /// O(1) amortised.
    @inlinable
    public mutating func appendUnordered(_ id: Int32, key: Key) {
        makeRoom(for: id)
        precondition(position[Int(id)] < 0, "id is a member already")
        position[Int(id)] = Int32(entries.count)
        entries.append(Entry(key: key, id: id))
        unordered = true
    }

    /// Restores the heap order after `appendUnordered`: heapq's `heapify`. O(n).
    @inlinable
    public mutating func heapify() {
        var i = entries.count / 2 - 1
        while i >= 0 {
            siftDown(from: i)
            i -= 1
        }
        unordered = false
    }

    /// Empties the heap, keeping its storage. O(count).
    @inlinable
    public mutating func removeAll() {
        for e in entries { position[Int(e.id)] = -1 }
        entries.removeAll(keepingCapacity: true)
        unordered = false
    }

    /// Checks that every member's position points back at it, that no other id has one, and the heap
    /// order. O(n + ids).
    public func validate() throws(InvariantViolation) {
        if unordered { throw InvariantViolation("heap left unordered (appendUnordered without heapify)") }
        for (i, e) in entries.enumerated() {
            guard e.id >= 0, Int(e.id) < position.count, position[Int(e.id)] == Int32(i) else {
                throw InvariantViolation("heap position of \(e.id) is stale")
            }
            if i > 0 && e.key < entries[(i - 1) / 2].key { throw InvariantViolation("heap order broken at \(i)") }
        }
        var members = 0
        for p in position where p >= 0 { members += 1 }
        if members != entries.count { throw InvariantViolation("\(members) positions set for \(entries.count) heap entries") }
    }

    // MARK: Sift loops

    @inlinable
    mutating func makeRoom(for id: Int32) {
        precondition(id >= 0, "heap ids are >= 0")
        if Int(id) >= position.count {
            position.append(contentsOf: repeatElement(-1, count: Swift.max(Int(id) + 1, 2 * position.count) - position.count))
        }
    }

    /// After the key at `i` changed (or a new entry landed there): up when it precedes its parent, else down.
    @inlinable
    mutating func restore(at i: Int) {
        if i > 0 && entries[i].key < entries[(i - 1) / 2].key {
            siftUp(from: i, floor: 0)
        } else {
            siftDown(from: i)
        }
    }

    /// CPython's `_siftdown(heap, floor, i)`: moves the entry at `i` up while it is smaller than its parent,
    /// no higher than `floor`.
    @inlinable
    mutating func siftUp(from start: Int, floor: Int) {
        var i = start
        let e = entries[i]
        while i > floor {
            let parent = (i - 1) >> 1
            guard e.key < entries[parent].key else { break }
            entries[i] = entries[parent]
            position[Int(entries[i].id)] = Int32(i)
            i = parent
        }
        entries[i] = e
        position[Int(e.id)] = Int32(i)
    }

    /// CPython's `_siftup(heap, start)`: moves the smaller child up until a leaf (the right one unless the
    /// left is strictly smaller), puts the entry there, then moves it back up no higher than `start`.
    @inlinable
    mutating func siftDown(from start: Int) {
        let n = entries.count
        var i = start
        let e = entries[i]
        var child = 2 * i + 1
        while child < n {
            let right = child + 1
            if right < n && !(entries[child].key < entries[right].key) { child = right }
            entries[i] = entries[child]
            position[Int(entries[i].id)] = Int32(i)
            i = child
            child = 2 * i + 1
        }
        entries[i] = e
        position[Int(e.id)] = Int32(i)
        siftUp(from: i, floor: start)
    }
}
