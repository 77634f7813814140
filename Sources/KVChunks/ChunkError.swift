import KVCache

/// Why a chunk-store or chunk-plan call failed. Every throwing call that throws one of these has changed
/// nothing.
public enum ChunkError: Error, Equatable, CustomStringConvertible {
    /// No live variant has this id (never inserted, or removed or evicted since).
    case unknownVariant(ChunkVariantID)
    /// The variant is held by a reader (`acquire`) and cannot be removed.
    case variantHeld(ChunkVariantID)
    /// Not enough blocks even after evicting every unheld variant.
    case insufficientBlocks(needed: Int, evictable: Int)
    /// A count, position or span that cannot be right.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .unknownVariant(v): "unknown chunk variant \(v.raw)"
        case let .variantHeld(v): "chunk variant \(v.raw) is held"
        case let .insufficientBlocks(n, e): "need \(n) blocks, \(e) free or evictable"
        case let .invalidArgument(why): "invalid argument: \(why)"
        }
    }
}

/// A slot of the chunk store with a generation, so that an id of an evicted variant never names the
/// variant that reuses its slot. Two words.
public struct ChunkVariantID: Hashable, Sendable {
    public var slot: Int32
    public var generation: UInt32
    public init(slot: Int32, generation: UInt32) { self.slot = slot; self.generation = generation }
    /// The id `raw` names (the inverse of `raw`).
    public init(raw: UInt64) { self.init(slot: Int32(bitPattern: UInt32(truncatingIfNeeded: raw)), generation: UInt32(raw >> 32)) }
    /// One integer for messages: generation << 32 | slot.
    public var raw: UInt64 { UInt64(generation) << 32 | UInt64(UInt32(bitPattern: slot)) }
}
