import KVCache

/// Belady's offline optimum restricted to leaves: the unheld leaf whose next use lies furthest
/// ahead is evicted first (a block never used again first of all; ties: deeper first, then lower
/// block id, as the eviction heap orders them). A request that uses a block uses all its ancestors,
/// so a block's next use is never later than its children's and evicting leaves only loses nothing.
///
/// It reads the future from a `NextUseTable`, so it only works in a replay that calls
/// `willServe(request:)` before serving request `i` (its table row is then the truth for every
/// key the request touches). A block's priority is `-nextUse`, set whenever it is inserted or
/// touched; it cannot change between two uses, so the heap stays exact. O(1) expected per call (one
/// dictionary probe); the dictionary holds one entry per distinct key seen so far.
public final class BeladyPolicy: EvictionPolicy {
    public let table: NextUseTable
    private var upcoming: [BlockKey: Int32] = [:]
    /// The request being served (-1 before the first).
    public private(set) var current = -1

    public init(table: NextUseTable) { self.table = table }

    public var name: String { "belady" }

    /// Loads the next uses of request `i`'s keys. Call it once per request, in order, before the
    /// request reaches the cache. O(request keys).
    public func willServe(request i: Int) {
        precondition(i == current + 1 && i < table.count, "requests must be served in table order")
        current = i
        for (k, n) in zip(table.keys(of: i), table.nextUses(of: i)) { upcoming[k] = n }
    }

    /// The index of the next request (after the current one) that uses `key`; `never` if none or
    /// if the key was never served.
    public func nextUse(of key: BlockKey) -> Int32 { upcoming[key] ?? NextUseTable.never }

    public func priorityOnInsert(_ node: PolicyNode) -> Double { -Double(nextUse(of: node.key)) }
    public func priorityOnAccess(_ node: PolicyNode, previous: Double, kind: AccessKind) -> Double {
        -Double(nextUse(of: node.key))
    }
}
