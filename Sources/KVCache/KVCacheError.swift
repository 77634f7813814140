/// Misuse of the cache API. Every throwing call that throws one of these has changed nothing.
public enum KVCacheError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The sequence was never added, or was already freed.
    case unknownSequence(SequenceID)
    /// `addSequence` or `fork` named a sequence that already exists.
    case duplicateSequence(SequenceID)
    /// A block id outside `0..<capacityBlocks`.
    case invalidBlock(BlockID)
    /// `free` of a block that is already free.
    case doubleFree(BlockID)
    /// `free` of a block that still has holders.
    case blockStillReferenced(BlockID, refCount: Int)
    /// `release` of a block nobody holds.
    case blockNotReferenced(BlockID)
    /// More blocks asked for than the pool can supply now.
    case insufficientBlocks(needed: Int, available: Int)
    /// `reset` while sequences still hold blocks.
    case blocksInUse(Int)
    /// An argument out of its documented range.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .unknownSequence(let s): "unknown sequence \(s)"
        case .duplicateSequence(let s): "sequence \(s) already exists"
        case .invalidBlock(let b): "block id \(b) is out of range"
        case .doubleFree(let b): "block \(b) is already free"
        case .blockStillReferenced(let b, let n): "block \(b) is still referenced (\(n) holders)"
        case .blockNotReferenced(let b): "block \(b) has no holder to release"
        case .insufficientBlocks(let n, let a): "need \(n) blocks, \(a) available"
        case .blocksInUse(let n): "\(n) blocks are still in use"
        case .invalidArgument(let why): "invalid argument: \(why)"
        }
    }
}
