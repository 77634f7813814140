/// A change to the set of SSM-state checkpoints the cache holds, for an engine or a router that mirrors
/// the cache (as `KVEvent` does for KV blocks). `slot` is the state-pool slot, `tokens` the prefix
/// length the state summarises (tokens from the root to the node's end).
///
/// `stored` is recorded when the cache takes a checkpoint into a slot (the engine must have written
/// the state there, see `HybridCache.plan`); `removed` when the slot is freed (by eviction, by a
/// superseded checkpoint being dropped, or by a merge). Recorded only while
/// `HybridPrefixTree.recordsEvents` is set; drained with `HybridCache.takeEvents()`.
public enum HybridCheckpointEvent: Sendable, Equatable {
    case stored(slot: Int32, tokens: Int)
    case removed(slot: Int32, tokens: Int)
}
