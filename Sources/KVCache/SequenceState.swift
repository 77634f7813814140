/// What the manager knows of one live sequence: its block table, the keys of its full blocks, and
/// how far its KV is computed and published. Arrays keep their capacity when a slot is reused, so a
/// steady stream of sequences allocates nothing.
struct SequenceState {
    var id = SequenceID(-1)
    /// Block table: block i holds tokens [i*B, (i+1)*B).
    var blocks: [BlockID] = []
    /// Keys of the full blocks whose token ids are known, in order (may run ahead of `blocks`).
    var keys: [BlockKey] = []
    /// Token ids after the last full block (fewer than B), to key the next block once it fills.
    var tail: [UInt32] = []
    /// The key chain's start (namespace, adapter, salt).
    var root = BlockKey.zero
    /// Multimodal items of the prompt (token spans), mixed into the keys of the blocks they cover.
    var multimodal: [MultimodalItem] = []
    /// Whether every token's id is known, so new full blocks can be keyed.
    var keyable = true
    /// Tokens known (prompt plus appended).
    var tokenCount = 0
    /// Prompt tokens.
    var promptTokens = 0
    /// Tokens whose KV is written.
    var computed = 0
    /// Leading blocks that are nodes of the prefix cache (published or reused).
    var committedBlocks = 0
    /// Whether the first `allocate` has pinned the looked-up prefix.
    var pinned = false
    /// Blocks found by the last `lookup`, pinned by the first `allocate` if still cached.
    var lookupBlocks = 0
    /// The blocks the last `lookup` found, one per looked-up block, so that `allocate` pins them
    /// without probing again (it checks that each still holds its key).
    var lookupHits: [BlockID] = []
    /// The prompt's token ids, kept only with `recordEvents` so that stored events carry them; empty
    /// for a sequence added by keys. Shared (the caller's prompt array, the event log's slices of it)
    /// and never written, so a log's slice never makes an append copy it; a reused slot drops it.
    var eventPrompt: [UInt32] = []
    /// The token ids appended after the prompt (with `recordEvents`): the sequence's own, copied into
    /// the event log, never shared with it.
    var eventAppended: [UInt32] = []

    mutating func reset(id: SequenceID) {
        self.id = id
        blocks.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        tail.removeAll(keepingCapacity: true)
        multimodal.removeAll(keepingCapacity: true)
        root = .zero
        keyable = true
        tokenCount = 0
        promptTokens = 0
        computed = 0
        committedBlocks = 0
        pinned = false
        lookupBlocks = 0
        lookupHits.removeAll(keepingCapacity: true)
        eventPrompt = []
        eventAppended.removeAll(keepingCapacity: true)
    }
}

/// Live sequences in reusable slots, found by id through one dictionary probe.
struct SequenceTable {
    private(set) var slots: [SequenceState] = []
    private var slotOf: [SequenceID: Int] = [:]
    private var freeSlots: [Int] = []

    var count: Int { slotOf.count }
    func slot(of id: SequenceID) -> Int? { slotOf[id] }
    var liveSlots: Dictionary<SequenceID, Int>.Values { slotOf.values }

    /// A fresh slot for `id`. Precondition: `id` is not live.
    mutating func add(_ id: SequenceID) -> Int {
        let s: Int
        if let f = freeSlots.popLast() { s = f } else { s = slots.count; slots.append(SequenceState()) }
        slots[s].reset(id: id)
        slotOf[id] = s
        return s
    }

    mutating func remove(_ id: SequenceID) {
        guard let s = slotOf.removeValue(forKey: id) else { return }
        freeSlots.append(s)
    }

    subscript(slot: Int) -> SequenceState {
        _read { yield slots[slot] }
        _modify { yield &slots[slot] }
    }

    mutating func removeAll() {
        for s in slotOf.values { freeSlots.append(s) }
        slotOf.removeAll(keepingCapacity: true)
    }
}
