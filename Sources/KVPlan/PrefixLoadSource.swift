import KVCache

/// A lower tier (host memory, later disk or remote) from which prompt blocks missing from the device
/// cache can be loaded instead of recomputed.
///
/// At admission, after the device prefix hit, the scheduler asks how many of the prompt blocks that
/// follow the tier can supply (`loadableBlocks`), allocates device blocks for them, then `load`s them:
/// the loaded tokens count as computed (committed at once, like swap-in restores) and are published
/// to the device cache; the plan lists them in `StepPlan.prefixLoads` so the engine copies them (and
/// pays the host link) before the step. Key prompts use their keys, token prompts the cache manager's
/// keys of their full blocks. A source that tracks what the device holds (`recordsStoredBlocks`) hears,
/// after each commit of prompt blocks (loaded or computed), which device block holds which key
/// (`stored`), before a finishing request is freed. The source decides what
/// pays: a tier whose loads are slower than recomputing should answer 0. `TierPrefixSource` (KVRuntime)
/// puts the real tiers (`KVTierManager`) behind this protocol; `HostPrefixTier` (KVSimulation) is the
/// modelled engine's keys-only stand-in.
public protocol PrefixLoadSource: AnyObject {
    /// How many of `keys[start...]`, consecutive from `start` and at most `maxBlocks`, the tier can
    /// supply now. Changes nothing.
    func loadableBlocks(_ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int
    /// Loads `keys[start ..< start + blocks.count]` into the device blocks `blocks` (allocated for them
    /// just before) and returns how many leading ones arrived (the device allocation in between may have
    /// pushed some out); the rest are computed instead.
    func load(_ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int
    /// Whether the scheduler reports committed prompt blocks through `stored` (default false: a source
    /// fed by evictions alone, which then costs nothing at commit).
    var recordsStoredBlocks: Bool { get }
    /// The device blocks `blocks` now hold the committed prompt blocks `keys[start ..< start +
    /// blocks.count]` (`keys[start - 1]` is the first one's parent). Only when `recordsStoredBlocks`.
    func stored(_ keys: [BlockKey], from start: Int, blocks: ArraySlice<BlockID>)
    /// `loadableBlocks` for the request `id`, which the scheduler calls: a source whose answer depends on
    /// the request and not only on its keys (a conversation's retained context) reads the id; the
    /// default ignores it.
    func loadableBlocks(for id: SequenceID, _ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int
    /// `load` for the request `id`, which the scheduler calls; the default ignores the id.
    func load(for id: SequenceID, _ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int
}

extension PrefixLoadSource {
    public var recordsStoredBlocks: Bool { false }
    public func stored(_ keys: [BlockKey], from start: Int, blocks: ArraySlice<BlockID>) {}
    public func loadableBlocks(for id: SequenceID, _ keys: [BlockKey], from start: Int, maxBlocks: Int) -> Int {
        loadableBlocks(keys, from: start, maxBlocks: maxBlocks)
    }
    public func load(for id: SequenceID, _ keys: [BlockKey], from start: Int, into blocks: ArraySlice<BlockID>) -> Int {
        load(keys, from: start, into: blocks)
    }
}
