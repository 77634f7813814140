import KVCache

/// Chunk key -> the KV of that chunk held in pool blocks, with several variants per chunk (the same tokens'
/// KV computed after different preceding contexts, as Cache-Craft keeps them) and the metadata to choose
/// among them and to re-use one elsewhere.
///
/// Dense arrays indexed by variant slot (no object per variant): a variant's fields, its blocks as a run
/// in one block-id array per slot, and the chunk's variants chained through `nextVariant` from one
/// dictionary entry per chunk key. The store owns a `BlockPool` of `capacityBlocks` blocks; an insert that
/// finds too few free blocks evicts unheld variants least recently used first.
///
/// Cost: `lookup` is one hash probe plus a walk over the chunk's variants (at most `maxVariantsPerChunk`)
/// and allocates nothing; `insert` is O(blocks + evicted blocks) and may grow the per-slot block arrays and
/// the dictionary; `remove`, `acquire`, `release` are O(blocks) / O(1). Failures throw `ChunkError` and
/// change nothing. Single-threaded: callers serialise access.
///
/// Not there yet: tiers (every variant is in device blocks; spilling to host and disk through KVTiers and
/// the `.host`/`.disk` sources of a plan), eviction policies other than LRU (PGDSF priced by a chunk's
/// recompute cost), sharing blocks with the prefix tree of `KVCacheManager`, and the C ABI.
public struct ChunkStore: Sendable {
    /// What is known of one stored variant.
    public struct Variant: Sendable, Equatable {
        public var chunk: ChunkKey
        /// Tokens in the chunk.
        public var tokens: Int
        /// The position of the chunk's first token when its KV was computed (the re-rotation's origin).
        public var computedAt: Int
        /// The key of the context the KV was computed after (a `BlockKey` of the preceding prefix, or the
        /// root key when computed alone): variants of one chunk differ by it.
        public var context: BlockKey
        /// Cache-Craft's cache-context impact: how much this variant's KV depends on its context (0 = none),
        /// from attention statistics the engine recorded when computing it; nil when not measured.
        public var contextImpact: Float?
        /// Reuses so far.
        public var hits: Int
    }

    public let blockTokens: Int
    public let maxVariantsPerChunk: Int
    public private(set) var pool: BlockPool

    private var heads: [ChunkKey: Int32] = [:]
    private var variants: [Variant?] = []
    private var generations: [UInt32] = []
    private var nextVariant: [Int32] = []
    private var blockLists: [[BlockID]] = []
    private var tokenImpacts: [[Float]] = []
    private var holders: [Int32] = []
    private var lastUse: [UInt64] = []
    private var freeSlots: [Int32] = []
    private var clock: UInt64 = 0
    public private(set) var evictedVariants = 0
    /// The variants the last `insert` evicted to make room, with the blocks they held (now the new
    /// variant's or free): what a tiered store copies out before the engine overwrites them.
    public private(set) var lastEvicted: [(variant: Variant, blocks: [BlockID])] = []

    public init(capacityBlocks: Int, blockTokens: Int, maxVariantsPerChunk: Int = 4) throws(ChunkError) {
        guard blockTokens >= 1, maxVariantsPerChunk >= 1 else {
            throw .invalidArgument("blockTokens and maxVariantsPerChunk must be positive")
        }
        do { pool = try BlockPool(capacity: capacityBlocks) } catch { throw .invalidArgument(error.description) }
        self.blockTokens = blockTokens
        self.maxVariantsPerChunk = maxVariantsPerChunk
    }

    /// Live variants.
    public var count: Int { variants.count - freeSlots.count }

    private func live(_ id: ChunkVariantID) -> Bool {
        id.slot >= 0 && Int(id.slot) < variants.count && generations[Int(id.slot)] == id.generation && variants[Int(id.slot)] != nil
    }

    /// The variant `id`, or nil when it is gone.
    public func variant(_ id: ChunkVariantID) -> Variant? { live(id) ? variants[Int(id.slot)] : nil }

    /// The blocks holding `id`'s KV, in token order (token t in block `t / blockTokens`).
    public func blocks(of id: ChunkVariantID) throws(ChunkError) -> [BlockID] {
        guard live(id) else { throw .unknownVariant(id) }
        return blockLists[Int(id.slot)]
    }

    /// Cache-Craft's per-token statistics of `id` (one value per token, as `insert` took them: the share
    /// of each token's attention that went outside the chunk when it was computed), or nil when none were
    /// recorded.
    public func tokenImpact(of id: ChunkVariantID) throws(ChunkError) -> [Float]? {
        guard live(id) else { throw .unknownVariant(id) }
        let t = tokenImpacts[Int(id.slot)]
        return t.isEmpty ? nil : t
    }

    /// The best variant of `chunk` to reuse after `context`: the one computed after that very context if
    /// stored, else the one least dependent on its context (lowest measured `contextImpact`; unmeasured
    /// ones after measured ones), else the most recently used. Marks it used (`find` then `touch`). One
    /// hash probe and a walk over at most `maxVariantsPerChunk` variants; no allocation.
    public mutating func lookup(_ chunk: ChunkKey, context: BlockKey? = nil) -> ChunkVariantID? {
        guard let id = find(chunk, context: context) else { return nil }
        touch(id)
        return id
    }

    /// The variant `lookup` would return, without marking it used: changes nothing. No allocation.
    public func find(_ chunk: ChunkKey, context: BlockKey? = nil) -> ChunkVariantID? {
        guard var s = heads[chunk] else { return nil }
        var best: Int32 = -1
        while s >= 0 {
            let v = variants[Int(s)]!
            if let context, v.context == context { best = s; break }
            if best < 0 || Self.better(v, lastUse[Int(s)], than: variants[Int(best)]!, lastUse[Int(best)]) { best = s }
            s = nextVariant[Int(s)]
        }
        return ChunkVariantID(slot: best, generation: generations[Int(best)])
    }

    /// Marks the live variant `id` used now (last to be evicted) and counts a hit. O(1).
    /// - Precondition: `id` is live (as `find` returned it, with no change to the store since).
    public mutating func touch(_ id: ChunkVariantID) {
        precondition(live(id), "touch of a variant that is gone")
        clock += 1
        lastUse[Int(id.slot)] = clock
        variants[Int(id.slot)]!.hits += 1
    }

    private static func better(_ a: Variant, _ aUse: UInt64, than b: Variant, _ bUse: UInt64) -> Bool {
        switch (a.contextImpact, b.contextImpact) {
        case let (x?, y?) where x != y: return x < y
        case (.some, nil): return true
        case (nil, .some): return false
        default: return aUse > bUse
        }
    }

    /// Stores a variant of `chunk` (`tokens` tokens computed at `computedAt` after `context`) in fresh
    /// blocks and returns its id and blocks; the engine writes the KV into them. An existing variant of the
    /// same chunk and context is returned instead (nothing allocated). When the chunk already has
    /// `maxVariantsPerChunk` variants, its least recently used unheld one is dropped first; when the pool
    /// is short, unheld variants are evicted least recently used first.
    /// `tokenImpact` (one finite value >= 0 per token) are the attention statistics Cache-Craft selects
    /// tokens by; when given without `contextImpact`, the chunk's impact is their mean.
    /// - Throws: `.invalidArgument` for a non-positive length, a negative position or token impacts of the
    ///   wrong count or value, `.insufficientBlocks` when even eviction cannot make room. Nothing changes then.
    @discardableResult
    public mutating func insert(_ chunk: ChunkKey, tokens: Int, computedAt: Int, context: BlockKey,
                                contextImpact: Float? = nil, tokenImpact: [Float]? = nil) throws(ChunkError) -> (ChunkVariantID, [BlockID]) {
        guard tokens >= 1, computedAt >= 0 else { throw .invalidArgument("a chunk needs tokens >= 1 and computedAt >= 0") }
        if let tokenImpact {
            guard tokenImpact.count == tokens, tokenImpact.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
                throw .invalidArgument("token impacts need \(tokens) finite values >= 0, got \(tokenImpact.count)")
            }
        }
        let contextImpact = contextImpact ?? tokenImpact.map { $0.reduce(0, +) / Float(tokens) }
        var s = heads[chunk] ?? -1
        var siblings = 0
        while s >= 0 {
            if variants[Int(s)]!.context == context {
                let id = ChunkVariantID(slot: s, generation: generations[Int(s)])
                return (id, blockLists[Int(s)])
            }
            siblings += 1
            s = nextVariant[Int(s)]
        }
        let needed = (tokens + blockTokens - 1) / blockTokens
        // Plan every eviction before changing anything, so that a failure changes nothing.
        var victims: [Int32] = []
        if siblings >= maxVariantsPerChunk {
            guard let v = lruVictim(in: chunk, excluding: victims) else {
                throw .invalidArgument("the chunk has \(maxVariantsPerChunk) variants, all held")
            }
            victims.append(v)
        }
        var available = pool.freeCount + victims.reduce(0) { $0 + blockLists[Int($1)].count }
        while available < needed {
            guard let v = lruVictim(in: nil, excluding: victims) else {
                throw .insufficientBlocks(needed: needed, evictable: available)
            }
            victims.append(v)
            available += blockLists[Int(v)].count
        }
        lastEvicted.removeAll(keepingCapacity: true)
        for v in victims {
            lastEvicted.append((variants[Int(v)]!, blockLists[Int(v)]))
            drop(v)
            evictedVariants += 1
        }
        let slot: Int32
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = Int32(variants.count)
            variants.append(nil); generations.append(0); nextVariant.append(-1); blockLists.append([]); tokenImpacts.append([])
            holders.append(0); lastUse.append(0)
        }
        var list = blockLists[Int(slot)]
        list.removeAll(keepingCapacity: true)
        // Cannot fail: `available >= needed` blocks are free after the drops.
        try! pool.allocate(needed, into: &list)
        blockLists[Int(slot)] = list
        clock += 1
        variants[Int(slot)] = Variant(chunk: chunk, tokens: tokens, computedAt: computedAt, context: context,
                                      contextImpact: contextImpact, hits: 0)
        lastUse[Int(slot)] = clock
        tokenImpacts[Int(slot)] = tokenImpact ?? []
        holders[Int(slot)] = 0
        nextVariant[Int(slot)] = heads[chunk] ?? -1
        heads[chunk] = slot
        return (ChunkVariantID(slot: slot, generation: generations[Int(slot)]), list)
    }

    /// The least recently used unheld variant (of `chunk` only, when given) not in `excluding`. O(slots).
    private func lruVictim(in chunk: ChunkKey?, excluding: [Int32]) -> Int32? {
        var best: Int32? = nil
        for s in variants.indices where variants[s] != nil && holders[s] == 0 && !excluding.contains(Int32(s)) {
            if let chunk, variants[s]!.chunk != chunk { continue }
            if best == nil || lastUse[s] < lastUse[Int(best!)] { best = Int32(s) }
        }
        return best
    }

    /// Marks `id` as read by one more reader: it is not evicted or removed until `release`. O(1).
    public mutating func acquire(_ id: ChunkVariantID) throws(ChunkError) {
        guard live(id) else { throw .unknownVariant(id) }
        holders[Int(id.slot)] += 1
    }

    /// Readers holding `id` now (0 for a variant that is gone). O(1).
    public func holders(of id: ChunkVariantID) -> Int { live(id) ? Int(holders[Int(id.slot)]) : 0 }

    /// Ends one `acquire`. O(1).
    public mutating func release(_ id: ChunkVariantID) throws(ChunkError) {
        guard live(id), holders[Int(id.slot)] > 0 else { throw .unknownVariant(id) }
        holders[Int(id.slot)] -= 1
    }

    /// Drops `id` and frees its blocks. O(blocks + variants of its chunk).
    public mutating func remove(_ id: ChunkVariantID) throws(ChunkError) {
        guard live(id) else { throw .unknownVariant(id) }
        guard holders[Int(id.slot)] == 0 else { throw .variantHeld(id) }
        drop(id.slot)
    }

    /// Unlinks slot `s` from its chunk's chain, frees its blocks and its slot. Precondition: live, unheld.
    private mutating func drop(_ s: Int32) {
        let chunk = variants[Int(s)]!.chunk
        if heads[chunk] == s {
            let next = nextVariant[Int(s)]
            if next >= 0 { heads[chunk] = next } else { heads[chunk] = nil }
        } else {
            var p = heads[chunk]!
            while nextVariant[Int(p)] != s { p = nextVariant[Int(p)] }
            nextVariant[Int(p)] = nextVariant[Int(s)]
        }
        // Blocks of a live variant are allocated and held once by it: freeing cannot fail.
        for b in blockLists[Int(s)] { try! pool.releaseAndFreeIfUnheld(b) }
        blockLists[Int(s)].removeAll(keepingCapacity: true)
        tokenImpacts[Int(s)] = []
        variants[Int(s)] = nil
        nextVariant[Int(s)] = -1
        generations[Int(s)] &+= 1
        freeSlots.append(s)
    }

    /// Checks every invariant: each chain holds live variants of its key only, at most
    /// `maxVariantsPerChunk` of them, with distinct contexts; every live variant is in its chain exactly
    /// once; its block count covers its tokens; every block is held by exactly one variant and the pool's
    /// free count makes up the rest; free slots are exactly the dead ones. O(slots + blocks).
    public func validate() throws(InvariantViolation) {
        try pool.validate()
        var chained = Array(repeating: false, count: variants.count)
        for (key, head) in heads {
            var s = head, n = 0
            var contexts: Set<BlockKey> = []
            while s >= 0 {
                guard let v = variants[Int(s)], v.chunk == key else { throw InvariantViolation("chain of \(key) reaches a wrong slot \(s)") }
                guard !chained[Int(s)] else { throw InvariantViolation("slot \(s) chained twice") }
                guard contexts.insert(v.context).inserted else { throw InvariantViolation("two variants of \(key) share a context") }
                chained[Int(s)] = true
                n += 1
                s = nextVariant[Int(s)]
            }
            guard n >= 1, n <= maxVariantsPerChunk else { throw InvariantViolation("\(key) has \(n) variants") }
        }
        var owner: [BlockID: Int] = [:]
        for s in variants.indices {
            guard let v = variants[s] else {
                guard blockLists[s].isEmpty, tokenImpacts[s].isEmpty, holders[s] == 0 else { throw InvariantViolation("dead slot \(s) holds blocks") }
                continue
            }
            guard chained[s] else { throw InvariantViolation("live slot \(s) is in no chain") }
            guard tokenImpacts[s].isEmpty || tokenImpacts[s].count == v.tokens else {
                throw InvariantViolation("slot \(s) has \(tokenImpacts[s].count) token impacts for \(v.tokens) tokens")
            }
            guard blockLists[s].count == (v.tokens + blockTokens - 1) / blockTokens else {
                throw InvariantViolation("slot \(s) has \(blockLists[s].count) blocks for \(v.tokens) tokens")
            }
            for b in blockLists[s] {
                guard pool.isValid(b), !pool.isFree(b), pool.refCount(b) == 1, owner.updateValue(s, forKey: b) == nil else {
                    throw InvariantViolation("block \(b) of slot \(s) is free, invalid or shared")
                }
            }
        }
        guard owner.count + pool.freeCount == pool.capacity else {
            throw InvariantViolation("\(owner.count) held + \(pool.freeCount) free blocks != \(pool.capacity)")
        }
        let dead = variants.indices.filter { variants[$0] == nil }
        guard Set(freeSlots.map(Int.init)) == Set(dead), freeSlots.count == dead.count else {
            throw InvariantViolation("free slot list does not match the dead slots")
        }
    }
}
