/// The engine contract of the adaptive policy: what an engine serving a hybrid model does around one
/// request.
///
/// 1. `plan(prompt)` before prefill. `hitTokens` tokens are served from the cache: the engine restores
///    the SSM state from slot `restoreSlot` of its state pool and reads the attention KV of those
///    tokens, then prefills from `hitTokens`. KV may exist up to `rawTokens`, but no state does past
///    `hitTokens`, and every layer after a Mamba layer depends on that state: the engine recomputes from
///    the nearest checkpoint, `hitTokens` (0 and slot -1: a full prefill).
/// 2. During prefill the engine saves the SSM state after `saveBranchAt` tokens when it is set (a
///    branch point the cache admits: the prefix recurred), into the slot the cache assigns at commit;
///    after the last decoded token it saves the end state.
/// 3. `commit(sequence:plan:savedBranch:savedEnd:)` with prompt + output. A checkpoint the engine
///    could not save is simply not admitted: without the end state nothing past the branch point is
///    cached (KV without a state cannot serve a hit), without the branch state the branch node holds KV
///    only and later hits fall back to the nearest checkpoint above it. Commit evicts (never over
///    capacity), inserts, and records `HybridCheckpointEvent`s: `stored(slot:tokens:)` tells the engine
///    which slot receives the state saved after `tokens` tokens; `removed` frees a slot.
///
/// A plan is valid for the cache state it saw: a commit after another insert or eviction throws
/// `.stalePlan`; a sequence that cannot fit even in an empty cache throws `.tooLarge`. Both change
/// nothing. `plan` is O(prompt), allocates nothing; `commit` as `insert`.
public struct HybridPlan: Sendable, Equatable {
    /// Tokens served from the cache, and the state-pool slot holding the state after them (-1 when 0).
    public var hitTokens: Int
    public var restoreSlot: Int32
    /// Tokens of the prompt whose KV the cache holds (at least `hitTokens`).
    public var rawTokens: Int
    /// Save the SSM state after this many prompt tokens (the branch point), or nil.
    public var saveBranchAt: Int?
    /// The cache generation the plan was made for.
    public var generation: UInt64

    public init(hitTokens: Int, restoreSlot: Int32, rawTokens: Int, saveBranchAt: Int?, generation: UInt64) {
        self.hitTokens = hitTokens
        self.restoreSlot = restoreSlot
        self.rawTokens = rawTokens
        self.saveBranchAt = saveBranchAt
        self.generation = generation
    }
}

extension HybridCache {
    /// Plans a request for `prompt` (a lookup: refreshes, counts the hit and the prefix's recurrence).
    /// Only the adaptive policy admits branch checkpoints this way; the others throw `.invalidArgument`
    /// (they are the simulator's parity modes).
    public mutating func plan(_ prompt: UnsafeBufferPointer<Int32>) throws(HybridCacheError) -> HybridPlan {
        guard policy == .adaptive else { throw .invalidArgument("plan and commit need the adaptive policy") }
        try Self.checkLength(prompt.count)
        plannedPrompt = prompt.count
        let (hit, raw, _) = lookup(prompt)
        let m = tree.match(prompt)
        let node = tree.checkpointed(atOrAbove: m.node).node
        let a = admission(prompt, m)
        let branch = a.checkpointAtBranch && m.raw < prompt.count && m.raw > hit ? m.raw : nil
        return HybridPlan(hitTokens: hit, restoreSlot: node == HybridPrefixTree.root ? -1 : tree.checkpointSlot(node),
                          rawTokens: raw, saveBranchAt: branch, generation: generation)
    }

    /// Caches `sequence` (prompt + output) after the engine ran `plan`: the branch checkpoint when it was
    /// planned and saved, the end checkpoint when saved. Throws `.stalePlan` or `.tooLarge` and then
    /// changes nothing.
    public mutating func commit(sequence: UnsafeBufferPointer<Int32>, plan: HybridPlan, savedBranch: Bool,
                                savedEnd: Bool) throws(HybridCacheError) {
        guard policy == .adaptive else { throw .invalidArgument("plan and commit need the adaptive policy") }
        try Self.checkLength(sequence.count)
        guard plan.generation == generation else { throw .stalePlan }
        if let b = plan.saveBranchAt, b < 1 || b > sequence.count {
            throw .invalidArgument("the sequence is shorter than the planned branch point")
        }
        let branch = savedBranch ? plan.saveBranchAt : nil
        // Without the end state only the prefix up to a saved branch point is worth caching.
        let length = savedEnd ? sequence.count : (branch ?? 0)
        if bytesAlone(length) > capacityBytes { throw .tooLarge(bytes: bytesAlone(length), capacity: capacityBytes) }
        if tuner != nil, let next = tuner!.observe(input: UnsafeBufferPointer(rebasing: sequence[0 ..< min(plannedPrompt, sequence.count)]),
                                                   sequence: sequence) {
            alpha = next.alpha
            settings = next.settings
        }
        guard length > 0 else { return }
        let seq = UnsafeBufferPointer(rebasing: sequence[0 ..< length])
        clock += 2
        var a = commitAdmission(seq, branch: branch)
        while tree.bytes + a.cost > capacityBytes && !tree.isEmpty {
            evict(tree.bytes + a.cost - capacityBytes)
            a = commitAdmission(seq, branch: branch)
        }
        generation &+= 1
        place(seq, a)
    }

    /// The admission of a commit on the current tree: the node where `seq` leaves the tree takes a
    /// checkpoint when `seq` ends there (the state the engine saved last) or when it is the saved
    /// branch point; the cost counts the checkpoints so decided.
    private mutating func commitAdmission(_ seq: UnsafeBufferPointer<Int32>, branch: Int?) -> Admission {
        let m = tree.match(seq)
        var a = admission(seq, m)
        let open = m.splits || (m.node != HybridPrefixTree.root && !tree.hasCheckpoint(m.node))
        let checkpoint = open && (m.raw == seq.count || branch == m.raw)
        if checkpoint != a.checkpointAtBranch { a.cost += checkpoint ? tree.model.checkpointBytes : -tree.model.checkpointBytes }
        a.checkpointAtBranch = checkpoint
        return a
    }

    /// Re-tunes `alpha` and `settings` online from now on: shadow caches, one per candidate, see every
    /// committed request (its planned prompt looked up, the sequence inserted), and every `window`
    /// commits the cache takes the best shadow's setting (`HybridAlphaTuner`). Starts from the first
    /// candidate. Costs one lookup and one insert per candidate per commit. `candidates` must not be empty
    /// and `window` must be at least 1 (preconditions: a programming error, not an input).
    public mutating func enableOnlineTuning(candidates: [HybridAlphaTuner.Candidate] = HybridAlphaTuner.defaultGrid,
                                            window: Int = 25) {
        tuner = HybridAlphaTuner(model: tree.model, capacityBytes: capacityBytes, candidates: candidates, window: window)
        alpha = candidates[0].alpha
        settings = candidates[0].settings
    }

    /// Drains the checkpoint events recorded since the last call (`recordsEvents` must be set).
    public mutating func takeEvents() -> [HybridCheckpointEvent] { tree.takeEvents() }

    /// Records checkpoint events from now on (or stops).
    public mutating func setRecordsEvents(_ on: Bool) { tree.recordsEvents = on }
}
