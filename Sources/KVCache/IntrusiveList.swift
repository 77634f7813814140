/// A doubly linked list of node numbers `0 ..< capacity` threaded through one dense array of link
/// pairs (a node's two links share a cache line): no object per node, no allocation after `init`. Node numbers are `Int32` (a `BlockID`, a host slot). `head` is
/// the front (the most recently pushed: an LRU's hot end), `tail` the back (its cold end).
///
/// `pushFront`, `remove`, `contains`, `next` and `previous` are O(1). A node is in the list at most once:
/// pushing a member is a precondition failure, removing a non-member does nothing. Not thread-safe: the
/// owner serializes it, as it does the arrays the node numbers index.
public struct IntrusiveList: Sendable {
    /// "No node": the end of a walk, an empty list's head and tail.
    public static let end: Int32 = -1

    /// The front node, or `end` when empty.
    public private(set) var head: Int32 = IntrusiveList.end
    /// The back node, or `end` when empty.
    public private(set) var tail: Int32 = IntrusiveList.end
    /// Nodes in the list.
    public private(set) var count = 0
    private struct Links {
        var previous: Int32 = IntrusiveList.end
        var next: Int32 = IntrusiveList.end
    }
    private var links: [Links]

    /// An empty list over nodes `0 ..< capacity` (>= 0).
    public init(capacity: Int) {
        links = Array(repeating: Links(), count: max(0, capacity))
    }

    /// The number of nodes the list can hold.
    public var capacity: Int { links.count }

    /// Whether `node` is in the list. O(1).
    @inlinable
    public func contains(_ node: Int32) -> Bool { node >= 0 && (previous(node) != Self.end || head == node) }

    /// The node after `node` towards the tail, or `end`.
    @inline(__always)
    public func next(_ node: Int32) -> Int32 { links[Int(node)].next }

    /// The node before `node` towards the head, or `end`.
    @inline(__always)
    public func previous(_ node: Int32) -> Int32 { links[Int(node)].previous }

    /// Puts `node` (not in the list) at the front.
    public mutating func pushFront(_ node: Int32) {
        precondition(node >= 0 && Int(node) < capacity && !contains(node), "node \(node) out of range or listed")
        let h = head
        // Unchecked: `node` is in range (above) and `h` is a member.
        links.withUnsafeMutableBufferPointer { links in
            links[Int(node)] = Links(previous: Self.end, next: h)
            if h != Self.end { links[Int(h)].previous = node }
        }
        head = node
        if tail == Self.end { tail = node }
        count += 1
    }

    /// Takes `node` out of the list; nothing happens when it is not in it.
    public mutating func remove(_ node: Int32) {
        guard contains(node) else { return }
        // Unchecked: `node` is a member (so in range), its neighbours are members or `end`.
        let (p, n) = links.withUnsafeMutableBufferPointer { links in
            let (p, n) = (links[Int(node)].previous, links[Int(node)].next)
            if p != Self.end { links[Int(p)].next = n }
            if n != Self.end { links[Int(n)].previous = p }
            links[Int(node)] = Links()
            return (p, n)
        }
        if p == Self.end { head = n }
        if n == Self.end { tail = p }
        count -= 1
    }

    /// Takes the back node out of the list and returns it, or `end` when the list is empty. O(1).
    public mutating func popTail() -> Int32 {
        let node = tail
        guard node != Self.end else { return node }
        // Unchecked: `tail` is a member (so in range), its previous node a member or `end`.
        let p = links.withUnsafeMutableBufferPointer { links in
            let p = links[Int(node)].previous
            if p != Self.end { links[Int(p)].next = Self.end }
            links[Int(node)] = Links()
            return p
        }
        tail = p
        if p == Self.end { head = Self.end }
        count -= 1
        return node
    }

    /// Moves `node` to the front, inserting it when it is not in the list.
    public mutating func moveToFront(_ node: Int32) {
        remove(node)
        pushFront(node)
    }

    /// Checks that the links agree both ways, the walk from `head` ends at `tail` without a cycle, and
    /// `count` nodes are on it. O(count).
    public func validate() throws(InvariantViolation) {
        var n = 0
        var v = head
        var before = Self.end
        while v != Self.end {
            guard v >= 0, Int(v) < capacity else { throw InvariantViolation("list holds invalid node \(v)") }
            guard links[Int(v)].previous == before else { throw InvariantViolation("list links disagree at node \(v)") }
            n += 1
            guard n <= capacity else { throw InvariantViolation("list has a cycle") }
            before = v
            v = links[Int(v)].next
        }
        guard tail == before else { throw InvariantViolation("list tail is \(tail), the walk ends at \(before)") }
        guard n == count else { throw InvariantViolation("list walk finds \(n) nodes, count says \(count)") }
    }
}
