import Testing
import KVCache
import KVPlan
@testable import KVTiers

@Suite("KV byte-plane codec")
struct KVByteCodecTests {
    /// Property: decode(encode(x)) == x for random sizes and contents of every kind, with and without planes.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func roundTripOverRandomData(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        for elementSize in [1, 2] {
            for planes in [true, false] {
                let maxBytes = 16 * 1024
                let codec = try KVByteCodec(elementSize: elementSize, bytePlanes: planes, maxInputBytes: maxBytes)
                var encoded = [UInt8](repeating: 0, count: KVByteCodec.maxEncodedSize(rawBytes: maxBytes))
                for _ in 0 ..< 40 {
                    let count = Int(rng.next() % UInt64(maxBytes / elementSize + 1)) * elementSize
                    var input = [UInt8](repeating: 0, count: count)
                    switch rng.next() % 4 {
                    case 0: for i in input.indices { input[i] = UInt8(truncatingIfNeeded: rng.next()) }
                    case 1: break // all zero
                    case 2: for i in input.indices where rng.next() % 8 == 0 { input[i] = UInt8(truncatingIfNeeded: rng.next()) }
                    default:
                        let layout = try KVGeometry(layers: 1, kvHeads: 1, headDim: max(1, count / (2 * elementSize)),
                                                  dtype: elementSize == 2 ? .bf16 : .fp8, blockTokens: 1)
                        if layout.bytesPerBlock == count {
                            input.withUnsafeMutableBytes { SyntheticKV.fill($0, layout: layout, seed: rng.next()) }
                        }
                    }
                    let (mode, n) = try input.withUnsafeBytes { src in
                        try encoded.withUnsafeMutableBytes { try codec.encode(src, into: $0) }
                    }
                    var output = [UInt8](repeating: 0xAA, count: count)
                    let stored: [UInt8] = mode == .raw ? input : Array(encoded[0 ..< n])
                    try stored.withUnsafeBytes { src in
                        try output.withUnsafeMutableBytes { try codec.decode(src, mode: mode, into: $0) }
                    }
                    #expect(output == input)
                    if mode == .raw { #expect(n == count) } else { #expect(n < count) }
                    if mode == .zstdBytePlanes { #expect(planes && elementSize == 2) }
                }
            }
        }
    }

    @Test func bytePlanesBeatPlainZstdOnKVData() throws {
        for dtype in [KVDType.fp16, .bf16] {
            let layout = try KVGeometry(layers: 4, kvHeads: 4, headDim: 64, dtype: dtype, blockTokens: 16)
            var block = [UInt8](repeating: 0, count: layout.bytesPerBlock)
            block.withUnsafeMutableBytes { SyntheticKV.fill($0, layout: layout, seed: 7) }
            var sizes: [Bool: Int] = [:]
            for planes in [true, false] {
                let codec = try KVByteCodec(layout: layout, bytePlanes: planes)
                var out = [UInt8](repeating: 0, count: KVByteCodec.maxEncodedSize(rawBytes: block.count))
                sizes[planes] = try block.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try codec.encode(s, into: $0).count } }
            }
            #expect(sizes[true]! < sizes[false]!, "\(dtype): planes \(sizes[true]!) vs plain \(sizes[false]!)")
        }
    }

    @Test func damagedFrameThrowsInsteadOfTrapping() throws {
        let codec = try KVByteCodec(layout: smallLayout)
        var block = [UInt8](repeating: 0, count: smallLayout.bytesPerBlock)
        block.withUnsafeMutableBytes { SyntheticKV.fill($0, layout: smallLayout, seed: 1) }
        var out = [UInt8](repeating: 0, count: KVByteCodec.maxEncodedSize(rawBytes: block.count))
        let (mode, n) = try block.withUnsafeBytes { s in try out.withUnsafeMutableBytes { try codec.encode(s, into: $0) } }
        #expect(mode != .raw)
        var damaged = Array(out[0 ..< n])
        damaged[0] ^= 0xFF   // breaks the frame magic
        var dst = [UInt8](repeating: 0, count: block.count)
        #expect(throws: TierError.self) {
            try damaged.withUnsafeBytes { s in try dst.withUnsafeMutableBytes { try codec.decode(s, mode: mode, into: $0) } }
        }
        // Too-large input is an argument error, not a trap.
        let big = [UInt8](repeating: 0, count: smallLayout.bytesPerBlock + 2)
        #expect(throws: TierError.self) {
            try big.withUnsafeBytes { s in try out.withUnsafeMutableBytes { _ = try codec.encode(s, into: $0) } }
        }
    }

    @Test func fp8AndBF16Conversions() {
        #expect(SyntheticKV.bfloat16Bits(1.0) == 0x3F80)
        #expect(SyntheticKV.bfloat16Bits(-2.0) == 0xC000)
        #expect(SyntheticKV.fp8E4M3Bits(1.0) == 0x38)
        #expect(SyntheticKV.fp8E4M3Bits(448) == 0x7E)
        #expect(SyntheticKV.fp8E4M3Bits(-0.5) == 0xB0)
        #expect(SyntheticKV.fp8E4M3Bits(1e6) == 0x7E)
    }
}
