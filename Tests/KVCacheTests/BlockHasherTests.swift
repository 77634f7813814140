import Testing
@testable import KVCache

/// Keys are specified (docs/BLOCK_KEYS.md); these vectors were computed independently with Python's
/// `xxhash.xxh3_128_intdigest` over the documented byte layout.
struct BlockHasherTests {
    let hasher = BlockHasher(blockTokens: 16)

    func key(_ parent: BlockKey, _ tokens: [UInt32], _ mm: [MultimodalExtra] = []) -> BlockKey {
        tokens.withUnsafeBufferPointer { t in mm.withUnsafeBufferPointer { hasher.key(parent: parent, tokens: t, multimodal: $0) } }
    }

    @Test func rootAndChainMatchIndependentVectors() {
        let root = BlockHasher.rootKey()
        #expect(root.description == "e7bc82a8a9a14a588f0346a5b741f558")
        let k0 = key(root, Array(0 ..< 16))
        #expect(k0.description == "3a124e110868c4dc68ea992478eb8549")
        let k1 = key(k0, Array(16 ..< 32))
        #expect(k1.description == "3df40c694c8474c7b2034a9473b11e91")
        let salted = BlockHasher.rootKey(namespace: "llama3-8b", salt: "tenant-a")
        #expect(salted.description == "4babca2eef6ee669571fe2b4ead1b5fe")
        #expect(key(salted, Array(0 ..< 16)).description == "f8e1e9e1b62e49e508e4ffc760d4299d")
        let mm = MultimodalExtra(hash: BlockKey(lo: 0x5678, hi: 0x1234), offset: -4)
        #expect(key(root, Array(0 ..< 16), [mm]).description == "43065de7c9a0584be254ca2b6b0a7955")
    }

    /// Blocks of 253 tokens and more stream through an XXH3 state (the one-shot stack buffer would
    /// spill to the heap); the digest must be the specified one on both sides of that switch.
    @Test(arguments: [(252, "2e504418329a3bb860af6bd65adc331c"), (253, "aefd292ce1584608b0d7f7279a911b46"),
                      (512, "cfff4f3734820b165feee8f57d38e370"), (1024, "e9532f91bcf2003bbfa2c346b7a08d84")])
    func largeBlocksMatchIndependentVectors(blockTokens: Int, expected: String) {
        let tokens = (0 ..< blockTokens).map { UInt32((7 * $0) % 49152) }
        let big = BlockHasher(blockTokens: blockTokens)
        let k = tokens.withUnsafeBufferPointer { big.key(parent: BlockHasher.rootKey(), tokens: $0) }
        #expect(k.description == expected)
        if blockTokens == 512 {
            let mm = [MultimodalExtra(hash: BlockKey(lo: 0x5678, hi: 0x1234), offset: -4),
                      MultimodalExtra(hash: BlockKey(lo: 9, hi: 0), offset: 100)]
            let withItems = tokens.withUnsafeBufferPointer { t in
                mm.withUnsafeBufferPointer { big.key(parent: BlockHasher.rootKey(), tokens: t, multimodal: $0) }
            }
            #expect(withItems.description == "27fc790510a6d36994647ece35529db4")
        }
    }

    @Test func appendKeysChainsFullBlocksOnly() {
        let tokens: [UInt32] = Array(0 ..< 40)
        var keys: [BlockKey] = []
        tokens.withUnsafeBufferPointer { hasher.appendKeys(of: $0, parent: BlockHasher.rootKey(), to: &keys) }
        #expect(keys.count == 2)
        #expect(keys[0].description == "3a124e110868c4dc68ea992478eb8549")
        #expect(keys[1].description == "3df40c694c8474c7b2034a9473b11e91")
    }

    @Test func saltLoraNamespaceAndImagesSeparateCaches() {
        let roots = [BlockHasher.rootKey(), BlockHasher.rootKey(salt: "a"), BlockHasher.rootKey(salt: "b"),
                     BlockHasher.rootKey(lora: "a"), BlockHasher.rootKey(namespace: "a"),
                     BlockHasher.rootKey(namespace: "a", lora: "", salt: "")]
        #expect(Set(roots.prefix(5)).count == 5)
        #expect(roots[4] == roots[5])
        let tokens: [UInt32] = Array(repeating: 7, count: 32)
        func keys(_ items: [MultimodalItem]) -> [BlockKey] {
            var out: [BlockKey] = []
            tokens.withUnsafeBufferPointer { hasher.appendKeys(of: $0, parent: roots[0], multimodal: items, to: &out) }
            return out
        }
        let plain = keys([])
        let imageA = keys([MultimodalItem(hash: BlockKey(lo: 1, hi: 0), start: 20, length: 8)])
        let imageB = keys([MultimodalItem(hash: BlockKey(lo: 2, hi: 0), start: 20, length: 8)])
        #expect(plain[0] == imageA[0])  // the image does not touch block 0
        #expect(plain[1] != imageA[1] && imageA[1] != imageB[1])
    }

    @Test func keyHexRoundTrip() {
        let k = BlockKey(lo: 0x0123_4567_89ab_cdef, hi: 0xfedc_ba98_7654_3210)
        #expect(BlockKey(hex: k.description) == k)
        #expect(BlockKey(hex: "xyz") == nil)
    }
}
