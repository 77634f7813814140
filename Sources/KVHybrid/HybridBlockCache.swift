import KVCache

/// vLLM+ as the Marconi simulator runs it: a tree of token blocks (at most `blockTokens`, 32), one SSM
/// checkpoint per block node, reuse at block granularity, LRU over leaf blocks.
///
/// A walk descends into the first child (in insertion order) whose block is a prefix of the rest of
/// the sequence, so a trailing partial block counts when fully matched; a walk refreshes only full
/// blocks. An insert ticks the clock twice, estimates its space in floating point as
/// `(len - 32·nodes_on_path) / 32` blocks of `checkpoint + 32 tokens of KV` (`nodes_on_path` counting
/// the root), evicts the excess (one more tick) with a Python-ordered heap over leaves, fills the partial
/// block it ends on (which moves to the end of its siblings) and appends the rest in blocks. The tree may
/// end an insert over capacity, as the simulator's does. Dense arrays; lookup allocates nothing.
public struct HybridBlockCache: Sendable {
    public let model: HybridModel
    public let capacityBytes: Int64
    public let blockTokens: Int
    public private(set) var clock: Int64 = 0
    public private(set) var blocks = 0
    public private(set) var cachedTokens = 0
    public private(set) var evictedNodes = 0
    public private(set) var evictionCalls = 0

    static let none: Int32 = -1
    private var parent: [Int32] = [none]
    private var firstChild: [Int32] = [none]
    private var lastChild: [Int32] = [none]
    private var nextSibling: [Int32] = [none]
    private var prevSibling: [Int32] = [none]
    private var keyStart: [Int] = [0]
    private var keyLength: [Int32] = [0]
    private var stamp: [Int64] = [0]
    private var freeNodes: [Int32] = []
    private var arena: [Int32] = []
    private var heap = IndexedHeap<Int64>()
    private var stack: [Int32] = []

    public init(model: HybridModel, capacityBytes: Int64, blockTokens: Int = 32) {
        self.model = model
        self.capacityBytes = capacityBytes
        self.blockTokens = blockTokens
    }

    public var bytes: Int64 { Int64(blocks) * model.checkpointBytes + Int64(cachedTokens) * model.kvBytesPerToken }

    /// Walks `seq`: the last node, nodes matched, tokens matched.
    private mutating func walk(_ seq: UnsafeBufferPointer<Int32>, refresh: Bool) -> (node: Int32, nodes: Int, tokens: Int) {
        var node: Int32 = 0, nodes = 0, i = 0
        let n = seq.count
        while i < n {
            var c = firstChild[Int(node)], found = Self.none
            while c != Self.none {
                let ci = Int(c), len = Int(keyLength[ci])
                if len <= n - i {
                    var k = 0
                    let s = keyStart[ci]
                    while k < len && arena[s + k] == seq[i + k] { k += 1 }
                    if k == len {
                        found = c
                        break
                    }
                }
                c = nextSibling[ci]
            }
            if found == Self.none { break }
            if refresh && Int(keyLength[Int(found)]) == blockTokens { stamp[Int(found)] = clock }
            node = found
            nodes += 1
            i += Int(keyLength[Int(found)])
        }
        return (node, nodes, i)
    }

    /// Tokens reusable for `seq`. One tick; refreshes matched full blocks.
    public mutating func lookup(_ seq: UnsafeBufferPointer<Int32>) -> Int {
        clock += 1
        return walk(seq, refresh: true).tokens
    }

    /// Inserts `seq`, evicting first when the simulator's estimate says so.
    public mutating func insert(_ seq: UnsafeBufferPointer<Int32>) {
        clock += 2
        let dry = walk(seq, refresh: true)
        let B = Int64(blockTokens)
        let blockBytes = Double(model.checkpointBytes + B * model.kvBytesPerToken)
        let estimate = blockBytes * Double(Int64(seq.count) - B * Int64(dry.nodes + 1)) / Double(B)
        if Double(bytes) + estimate > Double(capacityBytes) { evict(Double(bytes) + estimate - Double(capacityBytes)) }
        var (node, _, i) = walk(seq, refresh: true)
        if node != 0 && Int(keyLength[Int(node)]) < blockTokens && i < seq.count {
            // Fill the partial block the sequence ends on; it moves to the end of its siblings.
            let ni = Int(node), old = Int(keyLength[ni]), p = i - old
            let len = min(blockTokens, seq.count - p)
            keyStart[ni] = arena.count
            arena.append(contentsOf: UnsafeBufferPointer(rebasing: seq[p ..< p + len]))
            keyLength[ni] = Int32(len)
            cachedTokens += len - old
            stamp[ni] = clock
            let q = parent[ni]
            unlink(node)
            append(node, to: q)
            i = p + len
        }
        while i < seq.count {
            let len = min(blockTokens, seq.count - i)
            let c = newNode(parent: node, start: arena.count, length: len)
            arena.append(contentsOf: UnsafeBufferPointer(rebasing: seq[i ..< i + len]))
            cachedTokens += len
            blocks += 1
            node = c
            i += len
        }
        compactIfNeeded()
    }

    private mutating func evict(_ need: Double) {
        clock += 1
        evictionCalls += 1
        heap.removeAll()
        stack.removeAll(keepingCapacity: true)
        pushChildrenReversed(0)
        while let x = stack.popLast() {
            if firstChild[Int(x)] == Self.none { heap.appendUnordered(x, key: stamp[Int(x)]) }
            pushChildrenReversed(x)
        }
        heap.heapify()
        var freed = 0.0
        while freed < need && !heap.isEmpty {
            let x = heap.popMin()!, xi = Int(x)
            let p = parent[xi]
            freed += Double(model.checkpointBytes + model.kvBytesPerToken * Int64(keyLength[xi]))
            unlink(x)
            cachedTokens -= Int(keyLength[xi])
            blocks -= 1
            evictedNodes += 1
            parent[xi] = -2
            freeNodes.append(x)
            if p != 0 && firstChild[Int(p)] == Self.none { heap.insert(p, key: stamp[Int(p)]) }
        }
    }

    private mutating func pushChildrenReversed(_ x: Int32) {
        var c = lastChild[Int(x)]
        while c != Self.none {
            stack.append(c)
            c = prevSibling[Int(c)]
        }
    }

    private mutating func newNode(parent p: Int32, start: Int, length: Int) -> Int32 {
        let id: Int32
        if let reused = freeNodes.popLast() { id = reused } else {
            id = Int32(parent.count)
            parent.append(0); firstChild.append(Self.none); lastChild.append(Self.none); nextSibling.append(Self.none)
            prevSibling.append(Self.none); keyStart.append(0); keyLength.append(0); stamp.append(0)
        }
        let i = Int(id)
        firstChild[i] = Self.none; lastChild[i] = Self.none
        keyStart[i] = start
        keyLength[i] = Int32(length)
        stamp[i] = clock
        append(id, to: p)
        return id
    }

    private mutating func append(_ c: Int32, to p: Int32) {
        let ci = Int(c), pi = Int(p)
        parent[ci] = p
        nextSibling[ci] = Self.none
        prevSibling[ci] = lastChild[pi]
        if lastChild[pi] == Self.none { firstChild[pi] = c } else { nextSibling[Int(lastChild[pi])] = c }
        lastChild[pi] = c
    }

    private mutating func unlink(_ x: Int32) {
        let xi = Int(x), p = Int(parent[xi])
        if prevSibling[xi] != Self.none { nextSibling[Int(prevSibling[xi])] = nextSibling[xi] } else { firstChild[p] = nextSibling[xi] }
        if nextSibling[xi] != Self.none { prevSibling[Int(nextSibling[xi])] = prevSibling[xi] } else { lastChild[p] = prevSibling[xi] }
    }

    private mutating func compactIfNeeded() {
        guard arena.count > 3 * cachedTokens + 65_536 else { return }
        var fresh: [Int32] = []
        fresh.reserveCapacity(2 * cachedTokens)
        for i in 1 ..< parent.count where parent[i] != -2 {
            let start = fresh.count
            fresh.append(contentsOf: arena[keyStart[i] ..< keyStart[i] + Int(keyLength[i])])
            keyStart[i] = start
        }
        arena = fresh
    }

    /// Recounts blocks and tokens over the nodes reachable from the root, checks links and block sizes.
    public func validate() -> String? {
        var count = 0, tokens = 0
        var stack: [Int32] = [0]
        while let x = stack.popLast() {
            var c = firstChild[Int(x)], prev = Self.none
            while c != Self.none {
                let ci = Int(c)
                if parent[ci] != x || prevSibling[ci] != prev { return "block \(c): bad links" }
                if keyLength[ci] < 1 || Int(keyLength[ci]) > blockTokens { return "block \(c): \(keyLength[ci]) tokens" }
                count += 1
                tokens += Int(keyLength[ci])
                stack.append(c)
                prev = c
                c = nextSibling[ci]
            }
            if lastChild[Int(x)] != prev { return "block \(x): bad last child" }
        }
        if count != blocks { return "blocks \(blocks) != recount \(count)" }
        if tokens != cachedTokens { return "tokens \(cachedTokens) != recount \(tokens)" }
        return nil
    }
}
