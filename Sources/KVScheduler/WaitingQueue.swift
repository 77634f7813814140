/// The queue of waiting and preempted requests, ordered by a key (smaller first), with lazy removal.
///
/// Items are `(key, slot, generation)`; an item is live while its slot's generation matches, so a
/// request taken out of the middle (first-fit packing, aging) costs O(1) and the dead item is skipped
/// later. Live items sit in `items[head...]` sorted by key.
/// - `pushBack` with a key not below the last: O(1) amortized; `insert`: O(log n + moved items);
///   `pushFront`: O(1) while there is room before `head`.
struct WaitingQueue {
    struct Item {
        var key: Double
        var slot: Int32
        var generation: UInt32
    }

    private(set) var items: [Item] = []
    private(set) var head = 0
    /// Live items.
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// Appends `item`, keeping order: at the end when its key is not below the last, else by binary search.
    mutating func insert(_ item: Item) {
        count += 1
        if items.count == head || items[items.count - 1].key <= item.key {
            items.append(item)
            return
        }
        var lo = head, hi = items.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if items[mid].key <= item.key { lo = mid + 1 } else { hi = mid }
        }
        items.insert(item, at: lo)
    }

    /// Puts a slot ahead of every other item (a preempted request resumes first).
    mutating func pushFront(slot: Int32, generation: UInt32) {
        count += 1
        let key = head < items.count ? items[head].key - 1 : 0
        if head > 0 {
            head -= 1
            items[head] = Item(key: key, slot: slot, generation: generation)
        } else {
            items.insert(Item(key: key, slot: slot, generation: generation), at: 0)
        }
    }

    /// Records that one live item was taken out (its slot's generation has moved on).
    mutating func noteRemoved() {
        count -= 1
    }

    /// Drops dead items at the front, and compacts when most of the storage is dead.
    /// `isLive(item)` tells whether an item still stands for a queued request. O(dead items skipped).
    mutating func trimFront(isLive: (Item) -> Bool) {
        while head < items.count && !isLive(items[head]) { head += 1 }
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 4096 && head > items.count / 2 {
            items.removeSubrange(0..<head)
            head = 0
        } else if items.count - head > 2 * count + 4096 {
            var w = 0
            for r in head..<items.count where isLive(items[r]) {
                items[w] = items[r]
                w += 1
            }
            items.removeSubrange(w..<items.count)
            head = 0
        }
    }

    /// Calls `body` with live items from the front, in key order, until it returns false.
    func forEachLive(isLive: (Item) -> Bool, _ body: (Item) -> Bool) {
        var i = head
        while i < items.count {
            let it = items[i]
            if isLive(it) && !body(it) { return }
            i += 1
        }
    }
}
