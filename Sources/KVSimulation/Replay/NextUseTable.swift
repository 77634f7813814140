import KVCache

/// For every block of every request of a trace, the index of the next request that uses the same
/// block key (or `never`): the future an offline policy (`BeladyPolicy`) is allowed to see.
///
/// Built in one backward pass over the requests' key lists, O(total keys) expected time with one
/// dictionary of the distinct keys; stored flat (one `Int32` per key occurrence plus one offset per
/// request). Immutable once built.
public struct NextUseTable: Sendable {
    /// The next use of a key that is never used again.
    public static let never = Int32.max

    private let keys: [BlockKey]
    private let next: [Int32]
    private let offsets: [Int]

    /// - Parameter requests: each request's block keys, in replay order (root first). At most
    ///   `Int32.max - 1` requests.
    public init(requests: [[BlockKey]]) {
        precondition(requests.count < Int(Self.never), "too many requests for 32-bit request indices")
        var offsets = [0]
        offsets.reserveCapacity(requests.count + 1)
        for r in requests { offsets.append(offsets.last! + r.count) }
        var keys = [BlockKey](), next = [Int32](repeating: Self.never, count: offsets.last!)
        keys.reserveCapacity(offsets.last!)
        for r in requests { keys.append(contentsOf: r) }
        var lastSeen: [BlockKey: Int32] = [:]
        for i in stride(from: requests.count - 1, through: 0, by: -1) {
            for j in offsets[i] ..< offsets[i + 1] {
                next[j] = lastSeen[keys[j]] ?? Self.never
            }
            for j in offsets[i] ..< offsets[i + 1] { lastSeen[keys[j]] = Int32(i) }
        }
        self.keys = keys; self.next = next; self.offsets = offsets
    }

    /// Number of requests.
    public var count: Int { offsets.count - 1 }

    /// Request `i`'s keys.
    public func keys(of i: Int) -> ArraySlice<BlockKey> { keys[offsets[i] ..< offsets[i + 1]] }

    /// For each key of request `i`, the index of the next request that uses it (`never` if none).
    public func nextUses(of i: Int) -> ArraySlice<Int32> { next[offsets[i] ..< offsets[i + 1]] }
}
