/// The device pool's `KVEvent`s as the manager records them: flat buffers (`FlatBuffer`: the keys of
/// every event in one run, one record per event, a stored run's token ids either a range of the
/// recording sequence's prompt, shared rather than copied, or copied into one run of the log's), so
/// recording allocates nothing once the buffers have grown, emptying is O(1) besides releasing the
/// shared prompts, and handing a batch to another thread is an exchange of buffers or a copy of flat
/// records and keys (`take(from:)`), not of events or token ids. The `KVEvent`s themselves (arrays of
/// their own) are built only when the log is read (`appendEvents(to:)`), by whoever reads it: a
/// publisher does so on its own thread, off the serving path. Events are kept in recording order;
/// reading gives exactly the events that were recorded.
///
/// Recording an event with keys is two steps: `appendKey` for each key, or `appendKeys(count:_:)` for
/// a run written in place (the event's pending keys), then `closeStored` or `closeRemoved`, which makes
/// them one event; `appendStored` does both for a stored run whose keys are at hand, with one copy of
/// them. Records only ever close pending keys, so a record's keys are those after the previous record's.
/// A stored run keyed by its token ids alone (`appendStored(blocks:chainedFrom:...)`) is a record and
/// no keys: the reader chains the token ids' hashes from the recorded parent (`BlockHasher`), so the
/// recording thread neither writes those keys nor hands them to the reading thread.
public struct KVEventLog: Sendable {
    // Sendable: `sharedBase` points into memory that is never written again while `owners` keeps it alive.
    struct Record: @unchecked Sendable, BitwiseCopyable {
        enum Kind: UInt8, Sendable, BitwiseCopyable { case stored, removed, cleared }
        var kind: Kind
        var tier: Tier
        var hasParent: Bool
        /// A stored event whose keys are not in `keys`: the chained keys of its token ids from `parent`
        /// (the event's parent when `hasParent`, else the chain's root), recomputed by the reader.
        var keysFromTokens = false
        var blockTokens: Int32
        /// End of this event's keys in `keys` (they start where the previous record's end).
        var keyEnd: Int
        /// End of this event's copied token ids in `tokens` (likewise).
        var tokenEnd: Int
        var parent: BlockKey
        /// A stored event's shared token ids, read in place: the memory of a range of the recording
        /// sequence's prompt, an array that `owners` keeps alive (nil and 0 when there are none). Plain
        /// values, so that reading, copying or emptying records touches no reference count.
        var sharedBase: UnsafePointer<UInt32>?
        var sharedCount: Int
    }

    /// A stored run's token ids as the recorder hands them over.
    public enum StoredTokens {
        /// Not known.
        case none
        /// The ids at `range` of an array nobody writes again (a sequence's prompt): the array is kept
        /// (one reference), the ids are not copied.
        case shared([UInt32], range: Range<Int>)
        /// Copied into the log: `head` then `tail` (a run across a prompt's end is in two pieces).
        case copied(UnsafeBufferPointer<UInt32>, UnsafeBufferPointer<UInt32>)

        /// How many token ids (0 for none). O(1).
        var count: Int {
            switch self {
            case .none: 0
            case .shared(_, let range): range.count
            case .copied(let head, let tail): head.count + tail.count
            }
        }
    }

    private var records = FlatBuffer<Record>()
    private var keys = FlatBuffer<BlockKey>()
    private var tokens = FlatBuffer<UInt32>()
    /// The prompts whose memory stored records point into, one per such record: held here so the
    /// memory stays valid while the log does; only the recording thread (which empties the log) ever
    /// touches their reference counts, never a reader on another thread.
    private var owners: [[UInt32]] = []

    public init() {}

    /// An empty log with room for `keys` keys and `events` events, so that recording that many allocates
    /// nothing. O(1) besides the two allocations.
    public init(reservingKeys keys: Int, events: Int) {
        self.keys = FlatBuffer(reservingCapacity: keys)
        records = FlatBuffer(reservingCapacity: events)
    }

    /// No event recorded (pending keys are not an event yet).
    public var isEmpty: Bool { records.isEmpty }
    /// Events recorded.
    public var count: Int { records.count }
    /// Keys of the recorded events plus the pending keys. O(1).
    public var keyCount: Int { keys.count }
    /// Keys appended since the last event was closed. O(1).
    public var pendingKeys: Int { keys.count - (records.last?.keyEnd ?? 0) }

    /// Adds a key to the event being recorded. O(1) amortized; allocates only while the buffer grows.
    @inline(__always)
    public mutating func appendKey(_ key: BlockKey) { keys.append(key) }

    /// Adds up to `count` keys to the event being recorded, written in place by `fill` into a buffer of
    /// `count` keys; `fill` returns how many it wrote (those first in the buffer), and only they are
    /// kept. One growth check and one copy of the run instead of one append per key. O(count) amortized;
    /// allocates only while the buffer grows.
    @inline(__always)
    public mutating func appendKeys(count: Int, _ fill: (UnsafeMutableBufferPointer<BlockKey>) -> Int) {
        keys.append(count: count, filler: .zero, fill)
    }

    /// Records `keys` as one `.blockStored` event (nothing when they are empty), as `appendKey` for each
    /// then `closeStored` would, with one copy of the run. Precondition: no pending keys. O(keys) amortized.
    public mutating func appendStored(keys run: UnsafeBufferPointer<BlockKey>, parent: BlockKey?, blockTokens: Int,
                                      tier: Tier, tokens: StoredTokens) {
        precondition(pendingKeys == 0, "appendStored with pending keys")
        keys.append(contentsOf: run)
        closeStored(parent: parent, blockTokens: blockTokens, tier: tier, tokens: tokens)
    }

    /// Records `blocks` blocks as one `.blockStored` event without copying their keys: they are the
    /// chained keys of `tokens` (`BlockHasher.key(parent:tokens:)` of each block in turn, from
    /// `chainParent`), which a reader recomputes (`forEach`), so the recording thread writes no key and
    /// hands none to another thread. `chainParent` is the event's parent when `hasParent`, else the
    /// chain's root. For blocks keyed from their token ids alone (no multimodal item in them); `tokens`
    /// must be `blocks` x `blockTokens` ids (shared or copied). Precondition: no pending keys. O(1) for
    /// shared token ids, O(tokens) for copied ones.
    public mutating func appendStored(blocks: Int, chainedFrom chainParent: BlockKey, hasParent: Bool,
                                      blockTokens: Int, tier: Tier, tokens: StoredTokens) {
        precondition(pendingKeys == 0, "appendStored with pending keys")
        precondition(blockTokens >= 1 && blockTokens <= 1024, "blockTokens must be in 1...1024")
        guard blocks > 0 else { return }
        precondition(tokens.count == blocks * blockTokens, "keys chained from token ids need the blocks' token ids")
        appendStoredRecord(parent: chainParent, hasParent: hasParent, keysFromTokens: true, blockTokens: blockTokens,
                           tier: tier, tokens: tokens)
    }

    /// Closes the pending keys as one `.blockStored` event (nothing when there are none). `tokens` are
    /// the blocks' token ids (pending keys x `blockTokens` of them) or none. O(1) amortized for shared
    /// ones, O(tokens) for copied ones.
    public mutating func closeStored(parent: BlockKey?, blockTokens: Int, tier: Tier, tokens: StoredTokens) {
        guard pendingKeys > 0 else { return }
        appendStoredRecord(parent: parent ?? .zero, hasParent: parent != nil, keysFromTokens: false,
                           blockTokens: blockTokens, tier: tier, tokens: tokens)
    }

    /// A stored event's record over the keys since the previous record (none when `keysFromTokens`),
    /// holding or copying `tokens`.
    private mutating func appendStoredRecord(parent: BlockKey, hasParent: Bool, keysFromTokens: Bool, blockTokens: Int,
                                             tier: Tier, tokens: StoredTokens) {
        var base: UnsafePointer<UInt32>? = nil, count = 0
        switch tokens {
        case .none: break
        case .shared(let t, let range) where !range.isEmpty:
            precondition(range.lowerBound >= 0 && range.upperBound <= t.count, "shared token ids outside their array")
            // The array's memory stays put: it is never written again and `owners` holds it.
            base = t.withUnsafeBufferPointer { $0.baseAddress! + range.lowerBound }
            count = range.count
            owners.append(t)
        case .shared: break
        case .copied(let head, let tail): appendTokens(head, tail)
        }
        records.append(Record(kind: .stored, tier: tier, hasParent: hasParent, keysFromTokens: keysFromTokens,
                              blockTokens: Int32(blockTokens), keyEnd: keys.count, tokenEnd: self.tokens.count,
                              parent: parent, sharedBase: base, sharedCount: count))
    }

    /// Copies a stored run's token ids in: out of line, since a prefill's runs share their prompt's and
    /// only decoded blocks come here. O(tokens) amortized.
    @inline(never)
    private mutating func appendTokens(_ head: UnsafeBufferPointer<UInt32>, _ tail: UnsafeBufferPointer<UInt32>) {
        tokens.append(contentsOf: head)
        tokens.append(contentsOf: tail)
    }

    /// Closes the pending keys as one `.blockRemoved` event (nothing when there are none). O(1) amortized.
    public mutating func closeRemoved(tier: Tier) {
        guard pendingKeys > 0 else { return }
        records.append(Record(kind: .removed, tier: tier, hasParent: false, blockTokens: 0, keyEnd: keys.count,
                              tokenEnd: tokens.count, parent: .zero, sharedBase: nil, sharedCount: 0))
    }

    /// Records `.allBlocksCleared`. Precondition: no pending keys. O(1) amortized.
    public mutating func appendCleared() {
        records.append(Record(kind: .cleared, tier: .device, hasParent: false, blockTokens: 0, keyEnd: keys.count,
                              tokenEnd: tokens.count, parent: .zero, sharedBase: nil, sharedCount: 0))
    }

    /// Forgets every event (and pending key), keeping the buffers' capacity. O(1) besides releasing the
    /// prompts the log holds (one per stored event whose token ids are shared).
    public mutating func removeAll() {
        records.removeAll()
        keys.removeAll()
        tokens.removeAll()
        owners.removeAll(keepingCapacity: true)
    }

    /// Moves the closed events of `other` after this log's, leaving `other` empty and its pending keys
    /// pending. When this log is empty and `other` has no pending keys, the two exchange buffers and
    /// nothing is copied (a publisher whose thread keeps up with the steps takes each step's log whole);
    /// otherwise the records and keys are copied (never the shared token ids). Either way the buffers
    /// only change hands, so the logs that take turns all grow to the largest backlog and from then on
    /// none allocates. Precondition: this log has no pending keys. O(1) for an exchange, else O(other's
    /// events and keys).
    public mutating func take(from other: inout KVEventLog) {
        if records.isEmpty && keys.isEmpty && other.pendingKeys == 0 {
            swap(&self, &other)
            return
        }
        append(from: &other)
    }

    /// `take(from:)` when the buffers cannot be exchanged: a copy of the records and keys. Out of line,
    /// so a publisher that keeps up (an exchange each step) runs only the few instructions above.
    @inline(never)
    private mutating func append(from other: inout KVEventLog) {
        let pending = other.pendingKeys
        let keyBase = keys.count, tokenBase = tokens.count
        let closedKeys = other.keys.count - pending
        other.keys.withUnsafeBufferPointer { keys.append(contentsOf: UnsafeBufferPointer(rebasing: $0[..<closedKeys])) }
        other.records.withUnsafeBufferPointer { theirs in
            for var r in theirs {
                r.keyEnd += keyBase
                r.tokenEnd += tokenBase
                records.append(r)
            }
        }
        other.records.removeAll()
        if !other.tokens.isEmpty {   // pending keys have no token ids yet
            other.tokens.withUnsafeBufferPointer { tokens.append(contentsOf: $0) }
            other.tokens.removeAll()
        }
        if owners.isEmpty {
            swap(&owners, &other.owners)   // moved, no reference count touched
        } else if !other.owners.isEmpty {
            owners.append(contentsOf: other.owners)
            other.owners.removeAll(keepingCapacity: true)
        }
        if pending == 0 { other.keys.removeAll() } else { other.keys.removeFirst(closedKeys) }
    }

    /// One recorded event read in place: its keys and token ids are the log's memory or the recording
    /// sequence's prompt, valid only inside the `forEach` call that hands it out.
    public enum Entry {
        case stored(keys: UnsafeBufferPointer<BlockKey>, parent: BlockKey?, blockTokens: Int, tier: Tier,
                    tokens: UnsafeBufferPointer<UInt32>)
        case removed(keys: UnsafeBufferPointer<BlockKey>, tier: Tier)
        case cleared

        /// The event as a `KVEvent` (arrays of its own). O(keys + tokens).
        public var event: KVEvent {
            switch self {
            case let .stored(keys, parent, blockTokens, tier, tokens):
                .blockStored(keys: Array(keys), parent: parent, blockTokens: blockTokens, tier: tier, tokens: Array(tokens))
            case let .removed(keys, tier): .blockRemoved(keys: Array(keys), tier: tier)
            case .cleared: .allBlocksCleared
            }
        }
    }

    /// Calls `body` with the events recorded at positions `events` (a range of `0 ..< count`), in order,
    /// read in place: what a publisher thread encodes without building `KVEvent`s. It takes no reference
    /// to the token arrays the log shares with the recording sequences (their reference counts are the
    /// recording thread's alone: whoever empties the log releases them). O(events) besides `body`.
    public func forEach(in events: Range<Int>, _ body: (Entry) -> Void) {
        precondition(events.lowerBound >= 0 && events.upperBound <= records.count, "events outside the log")
        keys.withUnsafeBufferPointer { kb in
            tokens.withUnsafeBufferPointer { tb in
                records.withUnsafeBufferPointer { rb in
                    var k = 0, t = 0
                    if events.lowerBound > 0 { (k, t) = (rb[events.lowerBound - 1].keyEnd, rb[events.lowerBound - 1].tokenEnd) }
                    for i in events {
                        let end = rb[i].keyEnd, tokenEnd = rb[i].tokenEnd
                        let run = UnsafeBufferPointer(rebasing: kb[k ..< end])
                        switch rb[i].kind {
                        case .stored where rb[i].keysFromTokens:
                            let ids = tokenEnd > t ? UnsafeBufferPointer(rebasing: tb[t ..< tokenEnd])
                                : UnsafeBufferPointer(start: rb[i].sharedBase, count: rb[i].sharedCount)
                            Self.chainedKeys(of: ids, blockTokens: Int(rb[i].blockTokens), from: rb[i].parent) { run in
                                body(.stored(keys: run, parent: rb[i].hasParent ? rb[i].parent : nil,
                                             blockTokens: Int(rb[i].blockTokens), tier: rb[i].tier, tokens: ids))
                            }
                        case .stored where tokenEnd > t:
                            body(.stored(keys: run, parent: rb[i].hasParent ? rb[i].parent : nil, blockTokens: Int(rb[i].blockTokens),
                                         tier: rb[i].tier, tokens: UnsafeBufferPointer(rebasing: tb[t ..< tokenEnd])))
                        case .stored:
                            body(.stored(keys: run, parent: rb[i].hasParent ? rb[i].parent : nil,
                                         blockTokens: Int(rb[i].blockTokens), tier: rb[i].tier,
                                         tokens: UnsafeBufferPointer(start: rb[i].sharedBase, count: rb[i].sharedCount)))
                        case .removed:
                            body(.removed(keys: run, tier: rb[i].tier))
                        case .cleared:
                            body(.cleared)
                        }
                        k = end
                        t = tokenEnd
                    }
                }
            }
        }
    }

    /// Calls `body` with the chained keys of `tokens`' full blocks from `parent`, in a temporary buffer.
    /// O(tokens); allocates nothing for runs of up to a few hundred blocks (the buffer is on the stack).
    private static func chainedKeys(of tokens: UnsafeBufferPointer<UInt32>, blockTokens: Int, from parent: BlockKey,
                                    _ body: (UnsafeBufferPointer<BlockKey>) -> Void) {
        let hasher = BlockHasher(blockTokens: blockTokens), n = tokens.count / blockTokens
        withUnsafeTemporaryAllocation(of: BlockKey.self, capacity: n) { run in
            var parent = parent
            for b in 0 ..< n {
                let block = UnsafeBufferPointer(rebasing: tokens[b * blockTokens ..< (b + 1) * blockTokens])
                parent = hasher.key(parent: parent, tokens: block)
                run.initializeElement(at: b, to: parent)
            }
            body(UnsafeBufferPointer(run))
        }
    }

    /// Appends the recorded events to `out` as `KVEvent`s, in order (each with arrays of its own).
    /// O(events + keys + tokens).
    public func appendEvents(to out: inout [KVEvent]) {
        forEach(in: 0 ..< records.count) { out.append($0.event) }
    }

    /// The recorded events as `KVEvent`s. O(events + keys + tokens).
    public var events: [KVEvent] {
        var out: [KVEvent] = []
        out.reserveCapacity(records.count)
        appendEvents(to: &out)
        return out
    }

    /// Checks the log's invariants: record ends never decrease and stay within the keys, a stored or
    /// removed event has keys and a clearing none, a stored event's token ids are none or exactly its
    /// blocks', and shared ones lie in a prompt the log holds (one per such event). O(events).
    public func validate() throws(InvariantViolation) {
        var k = 0, t = 0
        let records = self.records.withUnsafeBufferPointer { Array($0) }
        for (i, r) in records.enumerated() {
            guard r.keyEnd >= k, r.keyEnd <= keys.count else {
                throw InvariantViolation("event log record \(i) ends outside the keys or before the previous one")
            }
            guard (r.kind == .cleared || r.keysFromTokens) == (r.keyEnd == k) else {
                throw InvariantViolation("event log record \(i): a clearing or a run keyed by its token ids has keys, or another event none")
            }
            guard r.tokenEnd >= t, r.tokenEnd <= tokens.count else {
                throw InvariantViolation("event log record \(i) ends outside the copied token ids or before the previous one")
            }
            let copied = r.tokenEnd - t, n = copied + r.sharedCount
            guard copied == 0 || r.sharedCount == 0 else {
                throw InvariantViolation("event log record \(i) has both shared and copied token ids")
            }
            guard n == 0 || (r.kind == .stored && n == (r.keyEnd - k) * Int(r.blockTokens))
                    || (r.keysFromTokens && r.blockTokens > 0 && n % Int(r.blockTokens) == 0) else {
                throw InvariantViolation("event log record \(i) carries \(n) token ids for \(r.keyEnd - k) blocks")
            }
            guard !r.keysFromTokens || (r.kind == .stored && n > 0) else {
                throw InvariantViolation("event log record \(i) has keys from token ids but is no stored event with token ids")
            }
            k = r.keyEnd
            t = r.tokenEnd
        }
        guard t == tokens.count else { throw InvariantViolation("event log holds copied token ids of no event") }
        var owner = 0
        for (i, r) in records.enumerated() where r.sharedCount > 0 {
            guard owner < owners.count, owners[owner].withUnsafeBufferPointer({ b in
                      guard let start = b.baseAddress, let shared = r.sharedBase else { return false }
                      return shared >= start && shared + r.sharedCount <= start + b.count
                  })
            else { throw InvariantViolation("event log record \(i): its shared token ids are not in the prompt it holds") }
            owner += 1
        }
        guard owner == owners.count else { throw InvariantViolation("event log holds prompts of no event") }
    }
}
