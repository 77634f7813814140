/// The hybrid prefix tree: a radix tree over token runs whose nodes may hold an SSM-state checkpoint
/// (an opaque slot of a fixed-size state pool, the state after the node's last token), with the
/// attention KV of each edge. A prefix is reusable only up to a node holding a checkpoint: an SSM state
/// exists only there.
///
/// Dense arrays indexed by `Int32` node ids (node 0 is the root), children in an intrusive list kept in
/// insertion order (the order the eviction scans and the reference simulator's DFS follow), edge tokens
/// in one arena. Lookup (`match`) walks the tree and allocates nothing; insert appends to the arena and
/// to the node arrays (amortised O(1) per new token). Every structural change keeps the byte accounting
/// exact: `bytes == checkpoints x checkpointBytes + cachedTokens x kvBytesPerToken`, which `validate()`
/// recounts. The tree itself never decides what to evict: the policies in `HybridCache` do.
public struct HybridPrefixTree: Sendable {
    public static let root: Int32 = 0
    static let none: Int32 = -1

    // Per node. A freed node id goes to `freeNodes`; `parent == freedMark` marks it.
    var parent: [Int32] = [none]
    var firstChild: [Int32] = [none]
    var lastChild: [Int32] = [none]
    var nextSibling: [Int32] = [none]
    var prevSibling: [Int32] = [none]
    var childCount: [Int32] = [0]
    var edgeStart: [Int] = [0]
    var edgeLength: [Int32] = [0]
    /// Tokens from the root to the node's end.
    var depth: [Int32] = [0]
    /// Last access (the caller's logical clock).
    public internal(set) var stamp: [Int64] = [0]
    /// Checkpoint slot, or `none`.
    var slot: [Int32] = [none]
    /// Hits served from the node's checkpoint (the caller counts them; a merged node keeps its child's).
    public internal(set) var uses: [Int32] = [0]
    /// The node has been a branch point (split off, or given a second child): its end is a prefix two
    /// sequences shared, not only the end of one. Kept while the node lives (children evicted or not).
    public internal(set) var branched: [Bool] = [false]
    var freeNodes: [Int32] = []
    static let freedMark: Int32 = -2

    /// Edge tokens of every node; edges point into it. Compacted when mostly garbage.
    var arena: [Int32] = []
    var freeSlots: [Int32] = []
    var slotsIssued: Int32 = 0

    public let model: HybridModel
    /// When set, every checkpoint given or dropped is appended to `events` (the caller drains them).
    public var recordsEvents = false
    public internal(set) var events: [HybridCheckpointEvent] = []
    /// Nodes holding a checkpoint, and tokens with cached KV.
    public private(set) var checkpoints = 0
    public private(set) var cachedTokens = 0

    public init(model: HybridModel) { self.model = model }

    /// Bytes held: checkpoints and KV.
    @inlinable public var bytes: Int64 {
        Int64(checkpoints) * model.checkpointBytes + Int64(cachedTokens) * model.kvBytesPerToken
    }
    /// Live nodes other than the root.
    public var nodeCount: Int { parent.count - 1 - freeNodes.count }
    public var isEmpty: Bool { firstChild[0] == Self.none }

    /// Where a sequence leaves the tree: `node` is the deepest node whose edge it matches fully
    /// (`matched` tokens from the root), `raw` the tokens matched including a partial edge into
    /// `partialChild` (`none` when the match ends at `node`).
    public struct Match: Sendable, Equatable {
        public var node: Int32
        public var matched: Int
        public var raw: Int
        public var partialChild: Int32
        public var splits: Bool { partialChild >= 0 }
    }

    /// The child of `node` whose edge starts with `token`, or `none`. O(children).
    @inline(__always) func child(of node: Int32, startingWith token: Int32) -> Int32 {
        var c = firstChild[Int(node)]
        while c != Self.none {
            if arena[edgeStart[Int(c)]] == token { return c }
            c = nextSibling[Int(c)]
        }
        return Self.none
    }

    /// Walks `seq` down the tree; when `refresh` is given, stamps every visited node with it (the
    /// partially matched child included). O(len + children scanned); allocates nothing.
    public mutating func match(_ seq: UnsafeBufferPointer<Int32>, refresh: Int64? = nil) -> Match {
        var node = Self.root
        var i = 0
        let n = seq.count
        while i < n {
            let c = child(of: node, startingWith: seq[i])
            if c == Self.none { break }
            let start = edgeStart[Int(c)], length = Int(edgeLength[Int(c)])
            var k = 0
            while k < length && i + k < n && arena[start + k] == seq[i + k] { k += 1 }
            if let refresh { stamp[Int(c)] = refresh }
            if k == length {
                node = c
                i += k
                continue
            }
            return Match(node: node, matched: i, raw: i + k, partialChild: c)
        }
        return Match(node: node, matched: i, raw: i, partialChild: Self.none)
    }

    /// The deepest node on `match`'s path (itself included) that holds a checkpoint, and its depth.
    public func checkpointed(atOrAbove node: Int32) -> (node: Int32, tokens: Int) {
        var x = node
        while x != Self.root && slot[Int(x)] == Self.none { x = parent[Int(x)] }
        return (x, Int(depth[Int(x)]))
    }

    /// Inserts the rest of `seq` after `match` (taken on the current tree): splits the partial edge
    /// (the split node gets a checkpoint when `checkpointSplit`), then adds a leaf for the remaining
    /// tokens, with a checkpoint. New nodes take `stamp`. Returns the deepest node of `seq`.
    @discardableResult
    public mutating func insert(_ seq: UnsafeBufferPointer<Int32>, at match: Match, stamp now: Int64,
                                checkpointSplit: Bool = true) -> Int32 {
        var node = match.node
        if match.partialChild >= 0 {
            node = split(match.partialChild, at: match.raw - match.matched, stamp: now, checkpoint: checkpointSplit)
        }
        if match.raw < seq.count {
            let start = arena.count
            arena.append(contentsOf: UnsafeBufferPointer(rebasing: seq[match.raw...]))
            node = addChild(of: node, edgeStart: start, length: seq.count - match.raw, stamp: now)
            giveCheckpoint(node)
            cachedTokens += seq.count - match.raw
        }
        return node
    }

    /// Splits `c`'s edge after `k` tokens: a new node takes the first `k` (and `c`'s place among its
    /// siblings), `c` keeps the rest below it. Returns the new node.
    mutating func split(_ c: Int32, at k: Int, stamp now: Int64, checkpoint: Bool) -> Int32 {
        let ci = Int(c)
        let p = parent[ci]
        let mid = newNode(parent: p, edgeStart: edgeStart[ci], length: k, stamp: now)
        // mid replaces c in the parent's list.
        let mi = Int(mid)
        prevSibling[mi] = prevSibling[ci]
        nextSibling[mi] = nextSibling[ci]
        if prevSibling[ci] != Self.none { nextSibling[Int(prevSibling[ci])] = mid } else { firstChild[Int(p)] = mid }
        if nextSibling[ci] != Self.none { prevSibling[Int(nextSibling[ci])] = mid } else { lastChild[Int(p)] = mid }
        parent[ci] = mid
        prevSibling[ci] = Self.none
        nextSibling[ci] = Self.none
        firstChild[mi] = c
        lastChild[mi] = c
        childCount[mi] = 1
        branched[mi] = true
        edgeStart[ci] += k
        edgeLength[ci] -= Int32(k)
        if checkpoint { giveCheckpoint(mid) }
        return mid
    }

    /// Removes leaf `x` with its checkpoint and its edge's KV.
    public mutating func removeLeaf(_ x: Int32) {
        let xi = Int(x)
        precondition(x != Self.root && childCount[xi] == 0, "not a leaf")
        unlink(x)
        cachedTokens -= Int(edgeLength[xi])
        dropCheckpoint(x)
        release(x)
    }

    /// Removes single-child node `x`: frees its checkpoint and merges its edge into its child, which
    /// takes `x`'s place and the larger stamp.
    public mutating func mergeIntoChild(_ x: Int32) {
        let xi = Int(x)
        precondition(x != Self.root && childCount[xi] == 1, "not a single-child node")
        let c = firstChild[xi], ci = Int(c), p = parent[xi]
        // The child's edge becomes x's edge + its own (one run in the arena).
        let start = arena.count
        arena.append(contentsOf: arena[edgeStart[xi] ..< edgeStart[xi] + Int(edgeLength[xi])])
        arena.append(contentsOf: arena[edgeStart[ci] ..< edgeStart[ci] + Int(edgeLength[ci])])
        edgeStart[ci] = start
        edgeLength[ci] += edgeLength[xi]
        stamp[ci] = max(stamp[ci], stamp[xi])
        parent[ci] = p
        prevSibling[ci] = prevSibling[xi]
        nextSibling[ci] = nextSibling[xi]
        if prevSibling[xi] != Self.none { nextSibling[Int(prevSibling[xi])] = c } else { firstChild[Int(p)] = c }
        if nextSibling[xi] != Self.none { prevSibling[Int(nextSibling[xi])] = c } else { lastChild[Int(p)] = c }
        dropCheckpoint(x)
        release(x)
        compactIfNeeded()
    }

    /// Sets every stamp from `node` up to the root's children to `now`.
    public mutating func refreshPath(from node: Int32, _ now: Int64) {
        var x = node
        while x != Self.root {
            stamp[Int(x)] = now
            x = parent[Int(x)]
        }
    }

    public func isLeaf(_ x: Int32) -> Bool { childCount[Int(x)] == 0 }
    public func children(_ x: Int32) -> Int { Int(childCount[Int(x)]) }
    public func edgeTokens(_ x: Int32) -> Int { Int(edgeLength[Int(x)]) }
    public func tokensFromRoot(_ x: Int32) -> Int { Int(depth[Int(x)]) }
    public func hasCheckpoint(_ x: Int32) -> Bool { slot[Int(x)] != Self.none }
    /// The checkpoint slot of `x`, or -1.
    public func checkpointSlot(_ x: Int32) -> Int32 { slot[Int(x)] }
    public func parentOf(_ x: Int32) -> Int32 { parent[Int(x)] }

    /// Drains the recorded checkpoint events, oldest first.
    public mutating func takeEvents() -> [HybridCheckpointEvent] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    // MARK: storage

    private mutating func newNode(parent p: Int32, edgeStart start: Int, length: Int, stamp now: Int64) -> Int32 {
        let id: Int32
        if let reused = freeNodes.popLast() {
            id = reused
        } else {
            id = Int32(parent.count)
            parent.append(Self.none); firstChild.append(Self.none); lastChild.append(Self.none)
            nextSibling.append(Self.none); prevSibling.append(Self.none); childCount.append(0)
            edgeStart.append(0); edgeLength.append(0); depth.append(0); stamp.append(0); slot.append(Self.none)
            uses.append(0); branched.append(false)
        }
        let i = Int(id)
        parent[i] = p
        firstChild[i] = Self.none; lastChild[i] = Self.none
        nextSibling[i] = Self.none; prevSibling[i] = Self.none
        childCount[i] = 0
        edgeStart[i] = start
        edgeLength[i] = Int32(length)
        depth[i] = depth[Int(p)] + Int32(length)
        stamp[i] = now
        slot[i] = Self.none
        uses[i] = 0
        branched[i] = false
        return id
    }

    private mutating func addChild(of p: Int32, edgeStart start: Int, length: Int, stamp now: Int64) -> Int32 {
        let c = newNode(parent: p, edgeStart: start, length: length, stamp: now)
        let pi = Int(p)
        if lastChild[pi] == Self.none { firstChild[pi] = c } else {
            nextSibling[Int(lastChild[pi])] = c
            prevSibling[Int(c)] = lastChild[pi]
        }
        lastChild[pi] = c
        childCount[pi] += 1
        if childCount[pi] >= 2 { branched[pi] = true }
        return c
    }

    private mutating func unlink(_ x: Int32) {
        let xi = Int(x), p = Int(parent[xi])
        if prevSibling[xi] != Self.none { nextSibling[Int(prevSibling[xi])] = nextSibling[xi] } else { firstChild[p] = nextSibling[xi] }
        if nextSibling[xi] != Self.none { prevSibling[Int(nextSibling[xi])] = prevSibling[xi] } else { lastChild[p] = prevSibling[xi] }
        childCount[p] -= 1
    }

    private mutating func release(_ x: Int32) {
        parent[Int(x)] = Self.freedMark
        freeNodes.append(x)
    }

    mutating func giveCheckpoint(_ x: Int32) {
        guard slot[Int(x)] == Self.none else { return }
        if let s = freeSlots.popLast() { slot[Int(x)] = s } else {
            slot[Int(x)] = slotsIssued
            slotsIssued += 1
        }
        checkpoints += 1
        if recordsEvents { events.append(.stored(slot: slot[Int(x)], tokens: Int(depth[Int(x)]))) }
    }

    /// Frees `x`'s checkpoint slot, if it holds one; the node and its KV stay.
    mutating func dropCheckpoint(_ x: Int32) {
        guard slot[Int(x)] != Self.none else { return }
        if recordsEvents { events.append(.removed(slot: slot[Int(x)], tokens: Int(depth[Int(x)]))) }
        freeSlots.append(slot[Int(x)])
        slot[Int(x)] = Self.none
        checkpoints -= 1
    }

    /// Rewrites the arena with live edges only when garbage exceeds twice the live tokens.
    private mutating func compactIfNeeded() {
        guard arena.count > 3 * cachedTokens + 65_536 else { return }
        var fresh: [Int32] = []
        fresh.reserveCapacity(2 * cachedTokens)
        for i in 1 ..< parent.count where parent[i] != Self.freedMark {
            let start = fresh.count
            fresh.append(contentsOf: arena[edgeStart[i] ..< edgeStart[i] + Int(edgeLength[i])])
            edgeStart[i] = start
        }
        arena = fresh
    }

    /// Checks every invariant by recount: each live node reachable from the root through its parent's
    /// list, sibling links consistent, child counts, depths, no empty edge, children of a node start
    /// with distinct tokens, a node with two children or more marked a branch point, checkpoint slots distinct, `checkpoints` and `cachedTokens` equal to a
    /// recount. O(nodes + tokens). Returns the first violation, or nil.
    public func validate() -> String? {
        var seen = [Bool](repeating: false, count: parent.count)
        var slots = Set<Int32>()
        var stack: [Int32] = [Self.root]
        var ckpts = 0, tokens = 0
        seen[0] = true
        while let x = stack.popLast() {
            let xi = Int(x)
            var c = firstChild[xi], prev = Self.none, count: Int32 = 0
            var firsts = Set<Int32>()
            while c != Self.none {
                let ci = Int(c)
                if seen[ci] { return "node \(c) reached twice" }
                seen[ci] = true
                if parent[ci] != x { return "node \(c): parent \(parent[ci]), listed under \(x)" }
                if prevSibling[ci] != prev { return "node \(c): bad previous sibling" }
                if edgeLength[ci] < 1 { return "node \(c): empty edge" }
                if depth[ci] != depth[xi] + edgeLength[ci] { return "node \(c): depth \(depth[ci])" }
                if !firsts.insert(arena[edgeStart[ci]]).inserted { return "node \(x): two children start with one token" }
                if slot[ci] != Self.none {
                    ckpts += 1
                    if !slots.insert(slot[ci]).inserted { return "slot \(slot[ci]) held twice" }
                }
                tokens += Int(edgeLength[ci])
                stack.append(c)
                prev = c
                count += 1
                c = nextSibling[ci]
            }
            if count >= 2 && !branched[xi] { return "node \(x): \(count) children, not marked a branch point" }
            if lastChild[xi] != prev { return "node \(x): bad last child" }
            if childCount[xi] != count { return "node \(x): child count \(childCount[xi]) != \(count)" }
        }
        for i in 1 ..< parent.count where (parent[i] != Self.freedMark) != seen[i] {
            return "node \(i): live \(parent[i] != Self.freedMark) but reachable \(seen[i])"
        }
        if slot[0] != Self.none { return "root holds a checkpoint" }
        if ckpts != checkpoints { return "checkpoints \(checkpoints) != recount \(ckpts)" }
        if tokens != cachedTokens { return "cached tokens \(cachedTokens) != recount \(tokens)" }
        return nil
    }
}
