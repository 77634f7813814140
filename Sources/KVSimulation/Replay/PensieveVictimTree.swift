/// Pensieve's victim order: the member conversation of least value at a non-decreasing time `now`,
/// where a member's value is `cost / max(now - since, 1e-9)` (`costOverIdle`) or `since`
/// (`oldestFirst`), ties going to the lower `tie` (distinct among members; the id on equal ties):
/// exactly the member that a scan comparing `(value, tie)` picks, because winners are always decided
/// with that same expression.
///
/// - A kinetic tournament: a complete binary tree over the ids whose internal nodes hold the winner of
///   their two children as of the last time they were decided, a certificate (the earliest time that
///   decision can change) and `due`, the least certificate in their subtree. With `costOverIdle` values
///   change with time, but two members' order changes at most once: 1 / value = (now - since) / cost is
///   a line in `now`, and two lines cross once. The certificate is the crossing less a margin that covers
///   the rounding of the values' subtraction and division (1e-9 of the times' magnitude, scaled by how
///   flat the crossing is); inside the margin, and while a member is within 2e-9 s of its `since` (where
///   the 1e-9 floor holds), the node is decided again at every later time. `oldestFirst` never changes.
/// - Time: `now` must not decrease for the bounds below; an earlier `now` re-decides every node
///   (O(capacity)) and stays correct.
/// - Cost: `set` and `remove` decide the O(log n) nodes on the leaf's path, `minimum` is O(1); all three
///   first re-decide the nodes whose certificates have failed and their ancestors (a kinetic tournament
///   over lines with insertions and deletions sees amortised O(log n) failures per operation, so
///   O(log^2 n) amortised); `oldestFirst` has no failures: O(log n). No allocation per call once the
///   arrays have grown to the largest id (doubling, O(capacity) then).
/// - `validate()` checks membership and every node that is not due against a fresh tournament.
struct PensieveVictimTree: Sendable {
    enum Order: Sendable { case costOverIdle, oldestFirst }

    let order: Order
    private(set) var count = 0
    private var cost: [Double] = [0]
    private var since: [Double] = [0]
    private var member: [Bool] = [false]
    private var tie: [Int] = [0]
    /// Leaves at `capacity + id`; node 1 is the root; -1: no member below.
    private var winner: [Int32] = [-1, -1]
    private var due: [Double] = [.infinity, .infinity]
    private var capacity = 1
    private var clock = -Double.infinity

    init(order: Order) { self.order = order }

    @inline(__always) private func value(_ c: Int, _ now: Double) -> Double {
        order == .oldestFirst ? since[c] : cost[c] / max(now - since[c], 1e-9)
    }

    @inline(__always) private func precedes(_ a: Int, _ b: Int, _ now: Double) -> Bool {
        let va = value(a, now), vb = value(b, now)
        return va < vb || va == vb && (tie[a] < tie[b] || tie[a] == tie[b] && a < b)
    }

    /// Adds member `c` (an id >= 0) or changes its key: O(log n) plus failed certificates; O(1) when it
    /// is a member with this key already.
    mutating func set(_ c: Int, cost k: Double, since t: Double, tie order: Int, now: Double) {
        precondition(c >= 0, "ids are >= 0")
        if c < capacity && member[c] && cost[c] == k && since[c] == t && tie[c] == order { return }
        advanceClock(now)
        if c >= capacity { grow(to: c, now: now) }
        if !member[c] { member[c] = true; count += 1 }
        cost[c] = k
        since[c] = t
        tie[c] = order
        winner[capacity + c] = Int32(c)
        decidePath(capacity + c, now: now)
    }

    /// Removes `c` if it is a member. O(log n) plus failed certificates.
    mutating func remove(_ c: Int, now: Double) {
        guard c >= 0, c < capacity, member[c] else { return }
        advanceClock(now)
        member[c] = false
        count -= 1
        winner[capacity + c] = -1
        decidePath(capacity + c, now: now)
    }

    /// The member of least value at `now`, nil if none. O(1) plus failed certificates.
    mutating func minimum(now: Double) -> Int? {
        advanceClock(now)
        advance(1, now: now)
        let w = winner[1]
        return w < 0 ? nil : Int(w)
    }

    private mutating func advanceClock(_ now: Double) {
        if now < clock {
            for node in stride(from: capacity - 1, through: 1, by: -1) { decide(node, now: now) }
        }
        clock = now
    }

    private mutating func grow(to c: Int, now: Double) {
        var size = capacity
        while size <= c { size *= 2 }
        cost += repeatElement(0, count: size - capacity)
        since += repeatElement(0, count: size - capacity)
        member += repeatElement(false, count: size - capacity)
        tie += repeatElement(0, count: size - capacity)
        var leaves = [Int32](repeating: -1, count: 2 * size)
        for id in 0 ..< capacity where member[id] { leaves[size + id] = Int32(id) }
        winner = leaves
        due = [Double](repeating: .infinity, count: 2 * size)
        capacity = size
        for node in stride(from: size - 1, through: 1, by: -1) { decide(node, now: now) }
    }

    /// Re-decides the stale nodes under `node` and then `node`.
    private mutating func advance(_ node: Int, now: Double) {
        guard due[node] <= now, node < capacity else { return }
        advance(2 * node, now: now)
        advance(2 * node + 1, now: now)
        decide(node, now: now)
    }

    private mutating func decidePath(_ leaf: Int, now: Double) {
        var node = leaf / 2
        while node >= 1 {
            advance(2 * node, now: now)
            advance(2 * node + 1, now: now)
            decide(node, now: now)
            node /= 2
        }
    }

    /// Decides `node` from its (current) children at `now`.
    private mutating func decide(_ node: Int, now: Double) {
        let a = Int(winner[2 * node]), b = Int(winner[2 * node + 1])
        let children = min(due[2 * node], due[2 * node + 1])
        if a < 0 || b < 0 {
            winner[node] = Int32(max(a, b))
            due[node] = children
            return
        }
        let (w, l) = precedes(a, b, now) ? (a, b) : (b, a)
        winner[node] = Int32(w)
        due[node] = min(children, certificate(winner: w, loser: l, now: now))
    }

    /// The earliest time at which `loser` may come to precede `winner` (see the type's contract).
    private func certificate(winner w: Int, loser l: Int, now: Double) -> Double {
        guard order == .costOverIdle else { return .infinity }
        let kw = cost[w], kl = cost[l], tw = since[w], tl = since[l]
        if now - tw < 2e-9 || now - tl < 2e-9 { return now.nextUp }
        // The loser's value falls faster only when its cost is lower.
        guard kl < kw else { return .infinity }
        let crossing = (tl * kw - tw * kl) / (kw - kl)
        let margin = 1e-9 * (abs(crossing) + abs(tw) + abs(tl) + 1) * kw / (kw - kl)
        return crossing - margin > now ? crossing - margin : now.nextUp
    }

    /// Throws `invariant` if the member count or a node that is not due disagrees with a fresh tournament
    /// at the last time seen. O(capacity), allocates.
    func validate() throws(CacheModelError) {
        if member.filter({ $0 }).count != count { throw .invariant("victim tree counts \(count) members") }
        var truth = [Int32](repeating: -1, count: 2 * capacity)
        for id in 0 ..< capacity where member[id] { truth[capacity + id] = Int32(id) }
        for node in 0 ..< capacity where winner[capacity + node] != truth[capacity + node] {
            throw .invariant("victim tree leaf \(node) disagrees with its membership")
        }
        for node in stride(from: capacity - 1, through: 1, by: -1) {
            let a = Int(truth[2 * node]), b = Int(truth[2 * node + 1])
            truth[node] = Int32(a < 0 || b < 0 ? max(a, b) : precedes(a, b, clock) ? a : b)
            if due[node] > clock && winner[node] != truth[node] {
                throw .invariant("victim tree node \(node) holds \(winner[node]) where \(truth[node]) leads at \(clock)")
            }
        }
    }
}
