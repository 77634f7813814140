/// The paged KV-cache allocator: `capacity` fixed-size blocks with dense `Int32` ids, a reference
/// count per block, and an intrusive LIFO free list threaded through one `Int32` array.
///
/// No object per block and no heap allocation per call: `allocate` pops and `free` pushes the free
/// list, O(1) each. A block is *free* (on the free list) or *held* (refCount > 0), or neither: the
/// owner (the prefix index) keeps it cached with no holder. The pool does not know about caching.
///
/// Every misuse (out-of-range id, double free, freeing a held block, asking for more blocks than are
/// free) throws a `KVCacheError` and changes nothing.
public struct BlockPool: Sendable {
    /// Number of blocks.
    public let capacity: Int
    // Storage is @usableFromInline so the O(1) operations inline into callers in other modules.
    /// One block's holders and free-list link, side by side so that a block's state is one load.
    @usableFromInline struct Slot: Sendable {
        /// Holders of the block.
        @usableFromInline var refCount: Int32
        /// Next block on the free list, `end` at the tail, `notFree` when the block is not on the list.
        @usableFromInline var nextFree: Int32
        @usableFromInline init(refCount: Int32, nextFree: Int32) {
            self.refCount = refCount
            self.nextFree = nextFree
        }
    }
    @usableFromInline var slots: [Slot]
    @usableFromInline var freeHead: Int32
    @usableFromInline var freeBlocks: Int

    @usableFromInline static let end: Int32 = -1
    @usableFromInline static let notFree: Int32 = -2

    /// Blocks on the free list.
    @inlinable public var freeCount: Int { freeBlocks }

    /// A pool of `capacity` blocks, all free; block 0 is handed out first.
    public init(capacity: Int) throws(KVCacheError) {
        guard capacity >= 1, capacity <= Int(Int32.max) else {
            throw .invalidArgument("capacity must be in 1...\(Int32.max), got \(capacity)")
        }
        self.capacity = capacity
        slots = (0 ..< capacity).map { Slot(refCount: 0, nextFree: $0 + 1 < capacity ? Int32($0 + 1) : Self.end) }
        freeHead = 0
        freeBlocks = capacity
    }

    @inlinable
    public func isValid(_ block: BlockID) -> Bool { block >= 0 && Int(block) < capacity }

    /// Holders of `block` (0 for a free or cached-idle block).
    @inlinable
    public func refCount(_ block: BlockID) -> Int { Int(slots[Int(block)].refCount) }

    /// Whether `block` is on the free list.
    @inlinable
    public func isFree(_ block: BlockID) -> Bool { slots[Int(block)].nextFree != Self.notFree }

    /// Pops one free block and gives it one holder, or returns nil when none is free. O(1).
    @inlinable
    public mutating func allocateOne() -> BlockID? {
        let b = freeHead
        guard b != Self.end else { return nil }
        freeHead = slots[Int(b)].nextFree
        slots[Int(b)].nextFree = Self.notFree
        freeBlocks -= 1
        slots[Int(b)].refCount = 1
        return b
    }

    /// Gives one holder to an unheld block that is not on the free list (a cached block the owner just
    /// evicted), as `free` then `allocateOne` would, without the trip through the free list. O(1).
    @inlinable
    public mutating func adopt(_ block: BlockID) throws(KVCacheError) {
        guard isValid(block) else { throw .invalidBlock(block) }
        guard !isFree(block) else { throw .invalidArgument("adopt of free block \(block)") }
        let rc = slots[Int(block)].refCount
        guard rc == 0 else { throw .blockStillReferenced(block, refCount: Int(rc)) }
        slots[Int(block)].refCount = 1
    }

    /// Allocates `count` blocks, each with one holder, appending their ids to `blocks`; all or nothing.
    /// O(count); no allocation when `blocks` has capacity.
    @inlinable
    public mutating func allocate(_ count: Int, into blocks: inout [BlockID]) throws(KVCacheError) {
        guard count >= 0 else { throw .invalidArgument("negative block count \(count)") }
        guard count <= freeCount else { throw .insufficientBlocks(needed: count, available: freeCount) }
        for _ in 0 ..< count { blocks.append(allocateOne()!) }
    }

    /// Adds a holder to a block that is not free. O(1).
    @inlinable
    public mutating func retain(_ block: BlockID) throws(KVCacheError) {
        guard isValid(block) else { throw .invalidBlock(block) }
        guard !isFree(block) else { throw .invalidArgument("retain of free block \(block)") }
        slots[Int(block)].refCount += 1
    }

    /// Removes a holder and returns the remaining count. The block is not freed: the caller decides
    /// whether an unheld block goes back to the free list or stays cached. O(1).
    @discardableResult
    @inlinable
    public mutating func release(_ block: BlockID) throws(KVCacheError) -> Int {
        guard isValid(block) else { throw .invalidBlock(block) }
        guard slots[Int(block)].refCount > 0 else { throw .blockNotReferenced(block) }
        slots[Int(block)].refCount -= 1
        return Int(slots[Int(block)].refCount)
    }

    /// Returns an unheld block to the free list (LIFO, so hot memory is reused first). O(1).
    @inlinable
    public mutating func free(_ block: BlockID) throws(KVCacheError) {
        guard isValid(block) else { throw .invalidBlock(block) }
        guard !isFree(block) else { throw .doubleFree(block) }
        let rc = slots[Int(block)].refCount
        guard rc == 0 else { throw .blockStillReferenced(block, refCount: Int(rc)) }
        slots[Int(block)].nextFree = freeHead
        freeHead = block
        freeBlocks += 1
    }

    /// Releases one holder and frees the block if it was the last. Convenience for uncached blocks.
    @inlinable
    public mutating func releaseAndFreeIfUnheld(_ block: BlockID) throws(KVCacheError) {
        if try release(block) == 0 { try free(block) }
    }

    /// Checks the free list against the per-block state: `freeCount` entries, no cycle, each with no
    /// holder, and every block off the list is marked so. O(capacity).
    public func validate() throws(InvariantViolation) {
        var seen = [Bool](repeating: false, count: capacity)
        var n = 0
        var b = freeHead
        while b != Self.end {
            guard isValid(b) else { throw InvariantViolation("free list holds invalid id \(b)") }
            guard !seen[Int(b)] else { throw InvariantViolation("free list cycles at block \(b)") }
            seen[Int(b)] = true
            guard slots[Int(b)].refCount == 0 else { throw InvariantViolation("free block \(b) has holders") }
            n += 1
            b = slots[Int(b)].nextFree
        }
        guard n == freeCount else { throw InvariantViolation("free list has \(n) blocks, count says \(freeCount)") }
        for i in 0 ..< capacity where !seen[i] && slots[i].nextFree != Self.notFree {
            throw InvariantViolation("block \(i) is marked free but not on the free list")
        }
    }
}

/// A broken internal invariant found by a `validate()` call.
public struct InvariantViolation: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
