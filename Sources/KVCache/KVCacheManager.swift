/// The facade an inference server calls each scheduler step: prefix lookup, slot allocation,
/// publishing computed blocks, freeing and forking sequences, statistics and events.
///
/// It owns the `BlockPool` (ids, holders, free list), the `PrefixIndex` (cached blocks, eviction)
/// and the live sequences' block tables. Single-threaded by contract, like the scheduler loop of
/// vLLM or SGLang: call it from one thread. Shaped for a C ABI: integer ids, value types, no
/// closures on hot calls. Every throwing call that throws has changed nothing.
///
/// A request's life: `addSequence` (hashes the prompt's full blocks) -> `lookup` (longest cached
/// prefix) -> `allocate` (pins that prefix, takes blocks for new tokens, evicting cached blocks if
/// needed) -> engine step -> `commit` (publishes newly full blocks) -> `append` the sampled token ->
/// `allocate` ... -> `free`.
public final class KVCacheManager {
    public let config: KVCacheConfig
    public let hasher: BlockHasher
    /// The chain root of sequences with no adapter and no salt (`BlockHasher.rootKey` of the namespace),
    /// hashed once: adding such a sequence runs none of the root's string code.
    private let defaultRoot: BlockKey
    /// The device pool's allocator (read-only view; the manager is its only mutator).
    // Single-threaded by contract and never re-entered (observers must not call back), so the
    // per-access exclusivity checks of class properties are turned off on the hot state.
    @exclusivity(unchecked) public private(set) var pool: BlockPool
    /// The prefix cache (read-only view).
    @exclusivity(unchecked) public private(set) var index: PrefixIndex
    /// Told about each evicted block before its id is reused, so a lower tier can save the bytes.
    /// It must not call back into the manager.
    public weak var evictionObserver: (any BlockEvictionObserver)?

    @exclusivity(unchecked) private var sequences = SequenceTable()
    @exclusivity(unchecked) private var clock: UInt64 = 0
    @exclusivity(unchecked) private var pendingCopies: [(src: BlockID, dst: BlockID)] = []
    /// Events (only with `recordEvents`), recorded flat: keys evicted by the current `allocate` are its
    /// pending keys until it returns and closes them as one removal event.
    @exclusivity(unchecked) private var events = KVEventLog()
    @exclusivity(unchecked) private var counters = KVCacheStats()

    public convenience init(_ config: KVCacheConfig) throws(KVCacheError) {
        try self.init(config, policy: try config.policy.make(capacity: config.capacityBlocks, recomputeCost: config.recomputeCost,
                                                             parameters: config.policyParameters))
    }

    /// A manager whose eviction order is `policy`, a fresh instance owned by this cache from now on
    /// (a policy outside `EvictionPolicyKind`, or one built with options); `config.policy` is ignored.
    public init(_ config: KVCacheConfig, policy: any EvictionPolicy) throws(KVCacheError) {
        guard (1 ... 1024).contains(config.blockTokens) else {
            throw .invalidArgument("blockTokens must be in 1...1024, got \(config.blockTokens)")
        }
        self.config = config
        hasher = BlockHasher(blockTokens: config.blockTokens)
        defaultRoot = BlockHasher.rootKey(namespace: config.namespace)
        pool = try BlockPool(capacity: config.capacityBlocks)
        index = PrefixIndex(capacity: config.capacityBlocks, policy: policy)
        counters.capacityBlocks = config.capacityBlocks
    }

    public var blockTokens: Int { config.blockTokens }
    /// Tokens one sequence may hold (2^48): far beyond any pool, and small enough that no token
    /// arithmetic on a count the caller passes can overflow.
    public static let maxSequenceTokens = 1 << 48
    public var capacityBlocks: Int { pool.capacity }
    /// Blocks an allocation can get now: free ones plus cached ones nobody holds.
    public var freeBlockCount: Int { pool.freeCount + index.unheldCount }
    /// Live sequences.
    public var sequenceCount: Int { sequences.count }

    public var stats: KVCacheStats {
        var s = counters
        s.freeBlocks = pool.freeCount
        s.cachedBlocks = index.count
        s.usedBlocks = pool.capacity - pool.freeCount - index.unheldCount
        return s
    }

    // MARK: Sequences

    /// Registers a sequence whose prompt token ids are known and keys its full blocks, chained from
    /// the root of (namespace, `lora`, `salt`). O(prompt tokens).
    /// With `recordEvents` the sequence keeps `prompt` itself (a reference, not a copy) for the token ids
    /// of its stored events.
    public func addSequence(_ id: SequenceID, prompt: [UInt32], salt: String = "", lora: String = "",
                            multimodal: [MultimodalItem] = []) throws(KVCacheError) {
        let s = try prompt.withUnsafeBufferPointer { (p) throws(KVCacheError) in
            try register(id, prompt: p, salt: salt, lora: lora, multimodal: multimodal)
        }
        if config.recordEvents { sequences[s].eventPrompt = prompt }
    }

    /// `addSequence(_:prompt:salt:lora:multimodal:)` over borrowed token ids (a C caller's buffer),
    /// so adding a sequence copies no token array (but with `recordEvents`, which keeps a copy of them
    /// for the token ids of its stored events). O(prompt tokens).
    public func addSequence(_ id: SequenceID, prompt: UnsafeBufferPointer<UInt32>, salt: String = "",
                            lora: String = "", multimodal: [MultimodalItem] = []) throws(KVCacheError) {
        let s = try register(id, prompt: prompt, salt: salt, lora: lora, multimodal: multimodal)
        if config.recordEvents { sequences[s].eventPrompt = Array(prompt) }
    }

    /// The checks and the keying of `addSequence`; returns the new sequence's slot. O(prompt tokens).
    private func register(_ id: SequenceID, prompt: UnsafeBufferPointer<UInt32>, salt: String, lora: String,
                          multimodal: [MultimodalItem]) throws(KVCacheError) -> Int {
        guard sequences.slot(of: id) == nil else { throw .duplicateSequence(id) }
        guard !prompt.isEmpty else { throw .invalidArgument("empty prompt") }
        for item in multimodal where item.start < 0 || item.length < 1 || item.start > prompt.count
            || item.length > prompt.count - item.start {  // no overflow for any Int start and length
            throw .invalidArgument("multimodal item at \(item.start)+\(item.length) outside the prompt")
        }
        let s = sequences.add(id)
        let root = lora.isEmpty && salt.isEmpty ? defaultRoot
            : BlockHasher.rootKey(namespace: config.namespace, lora: lora, salt: salt)
        sequences[s].root = root
        sequences[s].multimodal = multimodal
        sequences[s].promptTokens = prompt.count
        sequences[s].tokenCount = prompt.count
        hasher.appendKeys(of: prompt, parent: root, multimodal: multimodal, to: &sequences[s].keys)
        let full = prompt.count / blockTokens * blockTokens
        sequences[s].tail.append(contentsOf: prompt[full...])
        return s
    }

    /// Registers a sequence known by precomputed prompt block keys (from a router, another node, or
    /// a trace). Its other tokens have no ids, so blocks past the keys are never cached.
    /// - Parameter promptTokens: prompt length; at least `promptKeys.count x blockTokens`.
    public func addSequence(_ id: SequenceID, promptKeys: [BlockKey], promptTokens: Int) throws(KVCacheError) {
        try promptKeys.withUnsafeBufferPointer { (k) throws(KVCacheError) in
            try addSequence(id, promptKeys: k, promptTokens: promptTokens)
        }
    }

    /// `addSequence(_:promptKeys:promptTokens:)` over borrowed keys (a C caller's buffer).
    /// O(keys).
    public func addSequence(_ id: SequenceID, promptKeys: UnsafeBufferPointer<BlockKey>,
                            promptTokens: Int) throws(KVCacheError) {
        guard sequences.slot(of: id) == nil else { throw .duplicateSequence(id) }
        guard promptTokens >= 1, promptTokens <= Self.maxSequenceTokens, promptKeys.count <= promptTokens / blockTokens else {
            throw .invalidArgument("\(promptKeys.count) keys of \(blockTokens) tokens need more than the \(promptTokens) prompt tokens given")
        }
        guard !promptKeys.contains(.zero) else { throw .invalidArgument("the zero key is reserved") }
        let s = sequences.add(id)
        sequences[s].keys.append(contentsOf: promptKeys)
        sequences[s].keyable = false
        sequences[s].promptTokens = promptTokens
        sequences[s].tokenCount = promptTokens
    }

    private func slot(_ id: SequenceID) throws(KVCacheError) -> Int {
        guard let s = sequences.slot(of: id) else { throw .unknownSequence(id) }
        return s
    }

    /// The longest cached prefix of the sequence's prompt, in whole blocks; the last prompt token
    /// never counts (its logits must be computed). Counts the query in `stats`; pins nothing (the
    /// first `allocate` does). O(matched blocks) hash probes.
    public func lookup(_ id: SequenceID) throws(KVCacheError) -> PrefixHit {
        let s = try slot(id)
        guard !sequences[s].pinned else { throw .invalidArgument("lookup after allocate for \(id)") }
        var k = 0
        if config.enablePrefixCaching {
            let limit = min(sequences[s].keys.count, (sequences[s].promptTokens - 1) / blockTokens)
            // Move the hit list out so that filling it does not overlap the read of the keys.
            var found = sequences[s].lookupHits
            sequences[s].lookupHits = []
            found.removeAll(keepingCapacity: true)
            k = sequences[s].keys.withUnsafeBufferPointer {
                index.match(UnsafeBufferPointer(rebasing: $0[..<limit]), into: &found)
            }
            sequences[s].lookupHits = found
        }
        sequences[s].lookupBlocks = k
        counters.lookups += 1
        counters.queryTokens += sequences[s].promptTokens
        counters.hitTokens += k * blockTokens
        return PrefixHit(cachedBlocks: k, cachedTokens: k * blockTokens)
    }

    /// Number of leading `keys` cached here, for a router asking where a prefix lives. Changes
    /// nothing. O(matched) probes.
    public func matchLength(_ keys: [BlockKey]) -> Int {
        keys.withUnsafeBufferPointer { index.matchLength($0) }
    }

    /// `matchLength(_:)` over borrowed keys (a C caller's buffer). O(matched) probes.
    public func matchLength(_ keys: UnsafeBufferPointer<BlockKey>) -> Int {
        index.matchLength(keys)
    }

    /// Ensures slots for `newTokens` tokens to compute this step plus `lookahead` more. The first
    /// call pins the blocks found by `lookup` that are still cached (the sequence's computed tokens
    /// start there). Takes free blocks first, then evicts unheld cached leaves in policy order; a
    /// partial last block shared after a fork is copied first (see `drainCopies`).
    /// O(new blocks x log cached); allocates nothing in steady state.
    /// - Returns: `.insufficientBlocks` with nothing changed when the pool cannot supply the blocks.
    public func allocate(_ id: SequenceID, newTokens: Int, lookahead: Int = 0) throws(KVCacheError) -> AllocationOutcome {
        let s = try slot(id)
        guard newTokens >= 0, lookahead >= 0 else { throw .invalidArgument("negative token count") }
        guard lookahead <= Self.maxSequenceTokens else { throw .invalidArgument("lookahead \(lookahead) is too large") }
        // Read scalars only: a copy of the state would make the appends below copy the arrays.
        let B = blockTokens
        let pinned = sequences[s].pinned
        var hits = 0, pinCost = 0
        if !pinned {
            let limit = sequences[s].lookupBlocks
            while hits < limit {
                // The block the lookup found, unless it was evicted since: then the key's block now, if any.
                var b = sequences[s].lookupHits[hits]
                if index.key(of: b) != sequences[s].keys[hits] {
                    let parent = hits == 0 ? PrefixIndex.noParent : sequences[s].lookupHits[hits - 1]
                    guard let now = index.child(of: parent, key: sequences[s].keys[hits]) else { break }
                    b = now
                    sequences[s].lookupHits[hits] = now
                }
                if pool.refCount(b) == 0 { pinCost += 1 }
                hits += 1
            }
        }
        let computed = pinned ? sequences[s].computed : hits * B
        let held = pinned ? sequences[s].blocks.count : hits
        let uncomputed = sequences[s].tokenCount - computed
        guard newTokens <= uncomputed else {
            throw .invalidArgument("\(newTokens) new tokens but only \(uncomputed) are not computed")
        }
        let wanted = max(0, (computed + newTokens + lookahead + B - 1) / B - held)
        let copyIndex = computed / B
        let needsCopy = pinned && newTokens > 0 && computed % B != 0 && copyIndex < held
            && pool.refCount(sequences[s].blocks[copyIndex]) > 1
        let needed = wanted + (needsCopy ? 1 : 0)
        let available = pool.freeCount + index.unheldCount - pinCost
        guard needed <= available else { return .insufficientBlocks(needed: needed, available: available) }

        clock &+= 1
        index.makeUnique()  // once per call: the index's records are written in place below
        if !pinned {
            for i in 0 ..< hits {
                let b = sequences[s].lookupHits[i]
                retainCached(b)
                sequences[s].blocks.append(b)
            }
            sequences[s].computed = hits * B
            sequences[s].committedBlocks = hits
            sequences[s].pinned = true
        }
        let observer = evictionObserver  // one weak load per call, not per block
        if needsCopy {
            let src = sequences[s].blocks[copyIndex]
            let dst = takeBlock(observer)
            pendingCopies.append((src, dst))
            _ = try? pool.release(src)  // still held by the sibling: refCount was > 1
            sequences[s].blocks[copyIndex] = dst
            counters.copiedBlocks += 1
        }
        // Move the block table out so that each append checks one array, not the sequence table too.
        var table = sequences[s].blocks
        sequences[s].blocks = []
        var toEvict = wanted
        while toEvict > 0, let b = pool.allocateOne() {
            table.append(b)
            toEvict -= 1
        }
        if toEvict > 0 && observer == nil {
            // The victims in one pass (by release: the cold end's run in one step), each adopted as it goes;
            // with events, their keys are written in place into the log's pending keys (no append per key).
            var evicted = 0
            if config.recordEvents {
                events.appendKeys(count: toEvict) { keys in
                    var k = 0
                    _ = index.evictInPlace(toEvict, clock: clock, tokens: B) { b, key in
                        try! pool.adopt(b)  // evicted: unheld and not on the free list
                        table.append(b)
                        keys[k] = key
                        k &+= 1
                    }
                    evicted = k
                    return k
                }
            } else {
                evicted = index.evictInPlace(toEvict, clock: clock, tokens: B) { b, _ in
                    try! pool.adopt(b)  // evicted: unheld and not on the free list
                    table.append(b)
                }
            }
            counters.evictedBlocks += evicted  // == toEvict: `available` counted them
        } else {
            for _ in 0 ..< toEvict { table.append(takeBlock(observer)) }
        }
        sequences[s].blocks = table
        if config.recordEvents { events.closeRemoved(tier: .device) }  // one event per call, not one per block
        return .allocated(newBlocks: needed)
    }

    /// Records that the engine wrote KV for `computedTokens` more tokens and publishes every newly
    /// full block whose key is known. A block whose key is already cached in another block is
    /// replaced by that block (same prefix, same KV) and freed, so the sequence's published blocks are
    /// always a path of the tree. O(new full blocks x log cached).
    public func commit(_ id: SequenceID, computedTokens: Int) throws(KVCacheError) {
        let s = try slot(id)
        guard computedTokens >= 0 else { throw .invalidArgument("negative token count") }
        let allocated = min(sequences[s].blocks.count * blockTokens, sequences[s].tokenCount)
        guard computedTokens <= allocated - sequences[s].computed else {  // no overflow: both sides bounded
            throw .invalidArgument("\(computedTokens) more computed tokens exceed the \(allocated) allocated and known")
        }
        let total = sequences[s].computed + computedTokens
        sequences[s].computed = total
        guard config.enablePrefixCaching else { return }
        let first = sequences[s].committedBlocks
        let limit = min(total / blockTokens, sequences[s].keys.count)
        guard first < limit else { return }
        clock &+= 1
        index.makeUnique()  // once per call: the index's records are written in place below
        var runStart = first  // the run of blocks inserted since the last deduplicated one
        let chained = sequences[s].keyable && sequences[s].root != .zero  // keys hashed here, from tokens
        for i in first ..< limit {
            let key = sequences[s].keys[i]
            let mine = sequences[s].blocks[i]
            let parent = i == 0 ? PrefixIndex.noParent : sequences[s].blocks[i - 1]
            if let cached = index.publishInPlace(key, block: mine, parent: parent, tokens: blockTokens, clock: clock,
                                                 chained: chained) {
                if cached != mine {
                    retainCached(cached)
                    releaseBlock(mine)
                    sequences[s].blocks[i] = cached
                    counters.deduplicatedBlocks += 1
                }
                if config.recordEvents { recordStored(s, blocks: runStart ..< i) }
                runStart = i + 1
            } else {
                counters.insertedBlocks += 1
            }
        }
        if config.recordEvents { recordStored(s, blocks: runStart ..< limit) }
        sequences[s].committedBlocks = limit
    }

    /// Records the run `blocks` of consecutive blocks just published by the sequence in slot `s` as one
    /// stored event, with their token ids when the sequence knows them for every block of the run: a
    /// range of the prompt (one reference, no copy) when the run lies in it, else copied (a decode step's
    /// block, or a run across the prompt's end). A run with token ids and no multimodal item records no
    /// key at all (its keys are the chained hashes of those token ids, recomputed by the log's reader);
    /// otherwise its keys are copied from the sequence's in one go. O(1) for a prompt run, else O(run).
    ///
    /// The prompt run without multimodal items (a prefill's) is the one taken on every request, so it
    /// is kept short here and the others are out of line (`recordStoredRun`): the serving cycle's code
    /// takes fewer instruction-cache lines.
    private func recordStored(_ s: Int, blocks: Range<Int>) {
        guard !blocks.isEmpty else { return }
        let first = blocks.lowerBound, hi = blocks.upperBound * blockTokens
        guard hi <= sequences[s].eventPrompt.count && sequences[s].multimodal.isEmpty else {
            return recordStoredRun(s, blocks: blocks)
        }
        events.appendStored(blocks: blocks.count, chainedFrom: first == 0 ? sequences[s].root : sequences[s].keys[first - 1],
                            hasParent: first != 0, blockTokens: blockTokens, tier: .device,
                            tokens: .shared(sequences[s].eventPrompt, range: first * blockTokens ..< hi))
    }

    /// `recordStored` for the other runs: past the prompt, or touched by a multimodal item.
    @inline(never)
    private func recordStoredRun(_ s: Int, blocks: Range<Int>) {
        let B = blockTokens
        let lo = blocks.lowerBound * B, hi = blocks.upperBound * B
        let prompt = sequences[s].eventPrompt.count, chained = sequences[s].multimodal.isEmpty, root = sequences[s].root
        sequences[s].keys.withUnsafeBufferPointer { k in
            let run = UnsafeBufferPointer(rebasing: k[blocks]), parent = blocks.lowerBound == 0 ? nil : k[blocks.lowerBound - 1]
            func record(_ tokens: KVEventLog.StoredTokens) {
                var known = true
                if case .none = tokens { known = false }
                if chained && known {   // the keys are the token ids' chained hashes: the log's reader recomputes them
                    events.appendStored(blocks: blocks.count, chainedFrom: parent ?? root, hasParent: parent != nil,
                                        blockTokens: B, tier: .device, tokens: tokens)
                } else {
                    events.appendStored(keys: run, parent: parent, blockTokens: B, tier: .device, tokens: tokens)
                }
            }
            if hi <= prompt {
                record(.shared(sequences[s].eventPrompt, range: lo ..< hi))
            } else if prompt > 0 && hi <= prompt + sequences[s].eventAppended.count {
                sequences[s].eventPrompt.withUnsafeBufferPointer { p in
                    sequences[s].eventAppended.withUnsafeBufferPointer { a in
                        record(.copied(UnsafeBufferPointer(rebasing: p[min(lo, prompt)...]),
                                       UnsafeBufferPointer(rebasing: a[max(lo - prompt, 0) ..< hi - prompt])))
                    }
                }
            } else {
                record(.none)
            }
        }
    }

    /// Adds sampled tokens to the sequence; each block they fill gets its key. O(tokens).
    public func append(_ id: SequenceID, tokens: [UInt32]) throws(KVCacheError) {
        try tokens.withUnsafeBufferPointer { (t) throws(KVCacheError) in try append(id, tokens: t) }
    }

    /// `append(_:tokens:)` over borrowed token ids (a C caller's buffer): a decode step's token
    /// copies no array. O(tokens).
    public func append(_ id: SequenceID, tokens: UnsafeBufferPointer<UInt32>) throws(KVCacheError) {
        let s = try slot(id)
        sequences[s].tokenCount += tokens.count
        guard sequences[s].keyable else { return }
        if config.recordEvents { sequences[s].eventAppended.append(contentsOf: tokens) }
        // Move the tail out so that hashing it while appending keys copies no array.
        var tail = sequences[s].tail
        sequences[s].tail = []
        tail.append(contentsOf: tokens)
        let full = tail.count / blockTokens * blockTokens
        if full > 0 {
            let firstBlock = sequences[s].keys.count
            let parent = sequences[s].keys.last ?? sequences[s].root
            let items = sequences[s].multimodal
            tail.withUnsafeBufferPointer { t in
                hasher.appendKeys(of: UnsafeBufferPointer(rebasing: t[..<full]), firstBlock: firstBlock,
                                  parent: parent, multimodal: items, to: &sequences[s].keys)
            }
            tail.removeFirst(full)
        }
        sequences[s].tail = tail
    }

    /// Adds `count` tokens whose ids are unknown (a trace's outputs). Blocks they touch are never
    /// cached. O(1).
    public func append(_ id: SequenceID, count: Int) throws(KVCacheError) {
        let s = try slot(id)
        guard count >= 0 else { throw .invalidArgument("negative token count") }
        guard count <= Self.maxSequenceTokens - sequences[s].tokenCount else {
            throw .invalidArgument("a sequence holds at most \(Self.maxSequenceTokens) tokens")
        }
        sequences[s].tokenCount += count
        sequences[s].keyable = false
        sequences[s].tail.removeAll(keepingCapacity: true)
    }

    /// Releases every block of a finished or preempted sequence, deepest first; cached blocks stay
    /// cached (and become evictable when nobody holds them), the others return to the free list.
    /// O(blocks x log cached).
    public func free(_ id: SequenceID) throws(KVCacheError) {
        let s = try slot(id)
        clock &+= 1
        index.makeUnique()  // once per call: the index's records are written in place below
        let blocks = sequences[s].blocks
        for b in blocks.reversed() { releaseBlock(b) }
        sequences.remove(id)
    }

    /// Starts `child` as a copy of `parent` (parallel sampling, beam search): it shares every block
    /// that holds computed tokens. The partial last block is copied on write, at the next `allocate`
    /// of whichever sequence writes into it first. O(blocks).
    public func fork(_ parent: SequenceID, into child: SequenceID) throws(KVCacheError) {
        let p = try slot(parent)
        guard sequences.slot(of: child) == nil else { throw .duplicateSequence(child) }
        var copy = sequences[p]
        copy.id = child
        let shared = (copy.computed + blockTokens - 1) / blockTokens
        if copy.blocks.count > shared { copy.blocks.removeLast(copy.blocks.count - shared) }
        for b in copy.blocks { try! pool.retain(b) }  // held by the parent: never free
        let c = sequences.add(child)
        sequences[c] = copy
    }

    /// Moves the block copies the engine must perform before its next step (copy-on-write after a
    /// fork) into `copies`.
    public func drainCopies(into copies: inout [(src: BlockID, dst: BlockID)]) {
        copies.append(contentsOf: pendingCopies)
        pendingCopies.removeAll(keepingCapacity: true)
    }

    /// Copies waiting for `drainCopies`.
    public var pendingCopyCount: Int { pendingCopies.count }

    /// Hands each pending copy to `body` in order, then forgets them all; allocates nothing (for a
    /// caller that writes them into its own buffer). `body` must not call back into the manager.
    /// O(pending copies).
    public func drainCopies(_ body: (_ src: BlockID, _ dst: BlockID) -> Void) {
        for c in pendingCopies { body(c.src, c.dst) }
        pendingCopies.removeAll(keepingCapacity: true)
    }

    /// Lower tiers whose events join this manager's stream (device events first, then theirs, at
    /// each drain).
    public var lowerTierEvents: [any KVEventSource] = []

    /// Moves the recorded events into `out` (empty unless `recordEvents`): this pool's, then those
    /// of `lowerTierEvents`. O(events); allocates each event's arrays.
    public func drainEvents(into out: inout [KVEvent]) {
        events.appendEvents(to: &out)
        events.removeAll()
        for source in lowerTierEvents { source.drainEvents(into: &out) }
    }

    /// `drainEvents(into:)` in the recorded form, for a publisher that builds the `KVEvent`s on its own
    /// thread: this pool's events are appended to `log` (`KVEventLog.take(from:)`: buffers exchanged
    /// when `log` is empty, else records and keys copied; token ids shared either way), those of
    /// `lowerTierEvents` to `lowerTiers`; read `log`'s events before `lowerTiers`. O(1) into an empty
    /// `log`, else O(this pool's recorded events and keys).
    public func drainEvents(into log: inout KVEventLog, lowerTiers: inout [KVEvent]) {
        log.take(from: &events)
        for source in lowerTierEvents { source.drainEvents(into: &lowerTiers) }
    }

    /// The sequence's block table: block i holds tokens [i x blockTokens, (i+1) x blockTokens).
    public func blockTable(_ id: SequenceID) throws(KVCacheError) -> [BlockID] {
        sequences[try slot(id)].blocks
    }

    /// Keys of the sequence's full prompt blocks, as `lookup` matches them (so a lower tier can be
    /// asked about the blocks after the device hit with the same keys). O(prompt blocks).
    public func promptKeys(_ id: SequenceID) throws(KVCacheError) -> [BlockKey] {
        let s = try slot(id)
        return Array(sequences[s].keys.prefix(sequences[s].promptTokens / blockTokens))
    }

    /// Tokens whose KV is written (cached prefix included).
    public func computedTokens(_ id: SequenceID) throws(KVCacheError) -> Int {
        sequences[try slot(id)].computed
    }

    /// Tokens known for the sequence (prompt plus appended).
    public func tokenCount(_ id: SequenceID) throws(KVCacheError) -> Int {
        sequences[try slot(id)].tokenCount
    }

    /// Tokens of the sequence's prompt (those it was added with).
    public func promptTokens(_ id: SequenceID) throws(KVCacheError) -> Int {
        sequences[try slot(id)].promptTokens
    }

    /// Drops every cached block (vLLM's reset_prefix_cache). Only when no block is held, else
    /// `.blocksInUse` and nothing changes. O(capacity).
    public func reset() throws(KVCacheError) {
        let used = pool.capacity - pool.freeCount - index.unheldCount
        guard used == 0 else { throw .blocksInUse(used) }
        var p = pool
        index.removeAll { b in try! p.free(b) }  // cached, unheld: never free yet
        pool = p
        for s in sequences.liveSlots {
            sequences[s].lookupBlocks = 0
            sequences[s].lookupHits.removeAll(keepingCapacity: true)
            sequences[s].committedBlocks = 0
        }
        if config.recordEvents { events.appendCleared() }
    }

    // MARK: Blocks

    /// One block for a sequence: from the free list, else by evicting the policy's victim. The
    /// caller checked that one is available.
    private func takeBlock(_ observer: (any BlockEvictionObserver)?) -> BlockID {
        if let b = pool.allocateOne() { return b }
        let (b, key, parent) = index.evict(clock: clock, tokens: blockTokens)!
        if let observer { observer.willEvict(block: b, key: key, parent: parent == PrefixIndex.noParent ? nil : index.key(of: parent)) }
        counters.evictedBlocks += 1
        if config.recordEvents { events.appendKey(key) }
        try! pool.adopt(b)  // evicted: unheld and not on the free list
        return b
    }

    /// Adds a holder to a cached block (a hit or a deduplicated block). After `index.makeUnique()`.
    private func retainCached(_ b: BlockID) {
        try! pool.retain(b)  // cached blocks are never on the free list
        index.hitInPlace(b, first: pool.refCount(b) == 1, clock: clock, tokens: blockTokens)
    }

    /// Drops a holder; an unheld block stays cached (and evictable) or goes back to the free list.
    /// After `index.makeUnique()`.
    private func releaseBlock(_ b: BlockID) {
        guard try! pool.release(b) == 0 else { return }  // held by the caller's sequence
        if index.isCached(b) {
            index.releaseInPlace(b, clock: clock, tokens: blockTokens)
        } else {
            try! pool.free(b)
        }
    }

    // MARK: Invariants

    /// Checks every invariant: each block is exactly one of free / held / cached-unheld; holders
    /// equal the block-table entries naming the block; the key index and the tree agree; published
    /// blocks of each sequence are the tree path of its keys; counts add up to the capacity.
    /// O(capacity + total block-table length).
    public func validate() throws(InvariantViolation) {
        try pool.validate()
        try index.validate(isHeld: { pool.refCount($0) > 0 })
        var holders = [Int32](repeating: 0, count: pool.capacity)
        for s in sequences.liveSlots {
            let seq = sequences[s]
            for b in seq.blocks {
                guard pool.isValid(b) else { throw InvariantViolation("\(seq.id) holds invalid block \(b)") }
                holders[Int(b)] += 1
            }
            guard Set(seq.blocks).count == seq.blocks.count else { throw InvariantViolation("\(seq.id) holds a block twice") }
            guard seq.computed <= seq.blocks.count * blockTokens, seq.computed <= seq.tokenCount else {
                throw InvariantViolation("\(seq.id) computed \(seq.computed) past its blocks")
            }
            guard seq.lookupHits.count == seq.lookupBlocks else {
                throw InvariantViolation("\(seq.id) keeps \(seq.lookupHits.count) looked-up blocks for a hit of \(seq.lookupBlocks)")
            }
            guard seq.committedBlocks <= seq.blocks.count || !seq.pinned else {
                throw InvariantViolation("\(seq.id) committed more blocks than it holds")
            }
            for i in 0 ..< (seq.pinned ? seq.committedBlocks : 0) {
                guard index.key(of: seq.blocks[i]) == seq.keys[i] else {
                    throw InvariantViolation("\(seq.id) block \(i) is not the cached block of its key")
                }
            }
        }
        var free = 0, held = 0, idle = 0
        for b in 0 ..< pool.capacity {
            let id = BlockID(b)
            guard Int(holders[b]) == pool.refCount(id) else {
                throw InvariantViolation("block \(b) has refCount \(pool.refCount(id)) but \(holders[b]) holders")
            }
            let states = (pool.isFree(id) ? 1 : 0) + (holders[b] > 0 ? 1 : 0)
                + (holders[b] == 0 && index.isCached(id) ? 1 : 0)
            guard states == 1 else { throw InvariantViolation("block \(b) is in \(states) states") }
            if pool.isFree(id) { free += 1 } else if holders[b] > 0 { held += 1 } else { idle += 1 }
        }
        guard free + held + idle == pool.capacity, idle == index.unheldCount else {
            throw InvariantViolation("block counts do not add up")
        }
    }
}
