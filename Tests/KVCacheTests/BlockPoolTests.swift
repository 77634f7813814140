import Testing
@testable import KVCache

struct BlockPoolTests {
    @Test func allocateAndFreeAreLIFOAndDense() throws {
        var pool = try BlockPool(capacity: 4)
        var blocks: [BlockID] = []
        try pool.allocate(3, into: &blocks)
        #expect(blocks == [0, 1, 2])
        #expect(pool.freeCount == 1)
        try pool.releaseAndFreeIfUnheld(1)
        var more: [BlockID] = []
        try pool.allocate(2, into: &more)
        #expect(more == [1, 3])
        try pool.validate()
    }

    @Test func misuseThrowsAndChangesNothing() throws {
        var pool = try BlockPool(capacity: 3)
        var blocks: [BlockID] = []
        try pool.allocate(2, into: &blocks)
        try pool.retain(0)
        let before = pool.freeCount
        #expect(throws: KVCacheError.insufficientBlocks(needed: 2, available: 1)) { try pool.allocate(2, into: &blocks) }
        #expect(blocks.count == 2 && pool.freeCount == before)
        #expect(throws: KVCacheError.blockStillReferenced(0, refCount: 2)) { try pool.free(0) }
        #expect(throws: KVCacheError.invalidBlock(9)) { try pool.free(9) }
        #expect(throws: KVCacheError.invalidBlock(-1)) { try pool.retain(-1) }
        #expect(throws: KVCacheError.doubleFree(2)) { try pool.free(2) }
        #expect(throws: KVCacheError.invalidArgument("retain of free block 2")) { try pool.retain(2) }
        try pool.releaseAndFreeIfUnheld(1)
        #expect(throws: KVCacheError.doubleFree(1)) { try pool.free(1) }
        #expect(throws: KVCacheError.blockNotReferenced(1)) { try pool.release(1) }
        #expect(pool.refCount(0) == 2 && pool.freeCount == 2)
        try pool.validate()
        #expect(throws: KVCacheError.self) { try BlockPool(capacity: 0) }
    }
}
