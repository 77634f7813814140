/// One run of a prompt's positions and where their KV comes from: a prompt is admitted as consecutive
/// segments (a device hit, then loads from lower tiers, then computed tokens), and an engine executes
/// each by its source. A value type of two words; allocation is the caller's array.
///
/// How it extends: chunk reuse (CacheBlend) adds `.chunkReuse(ChunkRef, rotateBy: Int)`, KV computed
/// for the same tokens at another position and re-rotated by the position difference, and
/// `.selectiveRecompute(TokenSelection)`, the few tokens recomputed to repair cross-attention; hybrid
/// models add a segment that restores an SSM state checkpoint at its end. Engines switch over
/// `Source`, so each new case is a compile error where it still needs handling.
public struct PrefillSegment: Sendable, Equatable {
    public enum Source: Sendable, Equatable {
        /// Already in the device pool (a prefix hit): nothing to run.
        case deviceHit
        /// Copied from a lower tier into the segment's device blocks before any compute.
        case tierLoad
        /// Computed by the engine.
        case compute
    }

    public var source: Source
    /// Prompt positions, `lowerBound` included.
    public var positions: Range<Int>

    public init(_ source: Source, positions: Range<Int>) {
        self.source = source
        self.positions = positions
    }

    /// The segments of a `promptTokens`-token prompt whose first `deviceTokens` hit the device pool and
    /// whose next `loadedTokens` came from a lower tier; empty segments are left out. O(1).
    public static func prompt(deviceTokens: Int, loadedTokens: Int, promptTokens: Int) -> [PrefillSegment] {
        let loaded = deviceTokens + loadedTokens
        var out: [PrefillSegment] = []
        out.reserveCapacity(3)
        if deviceTokens > 0 { out.append(.init(.deviceHit, positions: 0 ..< deviceTokens)) }
        if loadedTokens > 0 { out.append(.init(.tierLoad, positions: deviceTokens ..< loaded)) }
        if promptTokens > loaded { out.append(.init(.compute, positions: loaded ..< promptTokens)) }
        return out
    }
}
