import Testing
@testable import KVCache

/// Chunk keys are specified (docs/BLOCK_KEYS.md, "Chunk keys"); these vectors were computed
/// independently with Python's `xxhash.xxh3_128_intdigest` over the documented byte layout.
struct ChunkKeyTests {
    @Test func matchesIndependentVectors() {
        #expect(ChunkKey(tokens: Array(0 ..< 16)).description == "b671d9ed4826728a988cb5ac4c417fb0")
        #expect(ChunkKey(tokens: Array(0 ..< 16), namespace: "llama3-8b", salt: "tenant-a").description
                == "a41184e97a7e6bee2843b6cfe2de9420")
        #expect(ChunkKey(tokens: Array(0 ..< 16), lora: "adapter-x").description == "a7829b04fd0d3eacf33f1c3d12053422")
        #expect(ChunkKey(tokens: [42]).description == "746921c5cabc5d4725ce99dda461400c")
        #expect(ChunkKey(tokens: Array(100 ..< 200)).description == "4be7143bec38d899dd57f84f0a7bbb6d")
    }

    @Test func neverEqualsTheBlockKeyOfTheSameTokens() {
        let root = BlockHasher.rootKey()
        let tokens: [UInt32] = Array(0 ..< 16)
        let block = tokens.withUnsafeBufferPointer { BlockHasher(blockTokens: 16).key(parent: root, tokens: $0) }
        let chunk = tokens.withUnsafeBufferPointer { ChunkKey(root: root, tokens: $0) }
        #expect(block.description == "3a124e110868c4dc68ea992478eb8549")
        #expect(chunk.bits != block && chunk.bits != root)
    }

    @Test func dependsOnTokensOrderRootButNotPosition() {
        let a = ChunkKey(tokens: [1, 2, 3]), b = ChunkKey(tokens: [1, 2, 3])
        #expect(a == b)
        #expect(a != ChunkKey(tokens: [3, 2, 1]))
        #expect(a != ChunkKey(tokens: [1, 2]))
        #expect(a != ChunkKey(tokens: [1, 2, 3], salt: "t"))
        #expect(a != ChunkKey(tokens: [1, 2, 3], namespace: "m"))
        // A large chunk (beyond any small stack buffer) hashes the same way through the pointer entry point.
        let big: [UInt32] = (0 ..< 20_000).map { UInt32($0 * 7 % 49_152) }
        let viaRoot = big.withUnsafeBufferPointer { ChunkKey(root: BlockHasher.rootKey(), tokens: $0) }
        #expect(viaRoot == ChunkKey(tokens: big))
        #expect(viaRoot.description == "7c3172e53da1e8fecad020687a42f912")
        #expect(viaRoot != ChunkKey(tokens: Array(big.dropLast())))
    }
}
