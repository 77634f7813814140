import Foundation
import KVCache
import Testing
@testable import KVReferenceEngine

/// Builds small GGUF v3 files byte by byte, so the reader's validation can be tested without a model.
struct GGUFBuilder {
    var metadata: [(String, UInt32, [UInt8])] = []
    var tensors: [(name: String, dims: [UInt64], type: UInt32, data: [UInt8])] = []
    var alignment = 32
    var version: UInt32 = 3
    /// Data offsets to write instead of the computed ones, by tensor index.
    var offsetOverrides: [Int: UInt64] = [:]

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    static func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func addString(_ key: String, _ value: String) { metadata.append((key, 8, Self.str(value))) }
    mutating func addU32(_ key: String, _ value: UInt32) { metadata.append((key, 4, Self.le(value))) }

    /// The file's bytes; tensor data placed in order, each at an aligned offset.
    func bytes() -> [UInt8] {
        var out = Self.le(UInt32(0x4655_4747)) + Self.le(version)
        out += Self.le(UInt64(tensors.count)) + Self.le(UInt64(metadata.count))
        for (k, t, v) in metadata { out += Self.str(k) + Self.le(t) + v }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset = (offset + t.data.count + alignment - 1) / alignment * alignment
        }
        for (i, (t, o)) in zip(tensors, offsets).enumerated() {
            out += Self.str(t.name) + Self.le(UInt32(t.dims.count))
            for d in t.dims { out += Self.le(d) }
            out += Self.le(t.type) + Self.le(offsetOverrides[i] ?? UInt64(o))
        }
        while out.count % alignment != 0 { out.append(0) }
        let base = out.count
        for (t, o) in zip(tensors, offsets) {
            while out.count < base + o { out.append(0) }
            out += t.data
        }
        return out
    }
}

/// Writes `bytes` to a fresh temporary file, passes its path to `body`, and removes it.
func withTemporaryFile<T>(_ bytes: [UInt8], _ body: (String) throws -> T) throws -> T {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("kvref-\(UUID().uuidString).gguf")
    try Data(bytes).write(to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    return try body(url.path)
}

/// Opens `bytes` as a GGUF file.
func openGGUF(_ bytes: [UInt8]) throws -> GGUFFile {
    try withTemporaryFile(bytes) { try GGUFFile(path: $0) }
}

func half(_ f: Float) -> [UInt8] { GGUFBuilder.le(Float16(f).bitPattern) }

/// A file with one tensor of each supported type and known contents.
func sampleFile() -> (GGUFBuilder, expected: [String: [Float]]) {
    var b = GGUFBuilder()
    b.addString("general.architecture", "test")
    b.addU32("general.alignment", 32)
    var expected: [String: [Float]] = [:]
    // F32 2x3
    let f32: [Float] = [1, -2, 3.5, 0, 1e-3, -7]
    b.tensors.append(("f32", [3, 2], 0, f32.flatMap { GGUFBuilder.le($0.bitPattern) }))
    expected["f32"] = f32
    // F16 4
    let f16: [Float] = [0.5, -1.25, 2048, 0]
    b.tensors.append(("f16", [4], 1, f16.flatMap(half)))
    expected["f16"] = f16
    // Q4_1 one block: d = 0.5, m = -1, nibble j = j % 16 (low) and 15 - j % 16 (high)
    var q41 = half(0.5) + half(-1)
    var q41Expected = [Float](repeating: 0, count: 32)
    for j in 0 ..< 16 {
        let lo = UInt8(j), hi = UInt8(15 - j)
        q41.append(lo | hi << 4)
        q41Expected[j] = 0.5 * Float(lo) - 1
        q41Expected[j + 16] = 0.5 * Float(hi) - 1
    }
    b.tensors.append(("q4_1", [32], 3, q41))
    expected["q4_1"] = q41Expected
    // Q8_0 one block: d = 0.25, q = j - 16
    var q80 = half(0.25)
    var q80Expected: [Float] = []
    for j in 0 ..< 32 { q80.append(UInt8(bitPattern: Int8(j - 16))); q80Expected.append(0.25 * Float(j - 16)) }
    b.tensors.append(("q8_0", [32], 8, q80))
    expected["q8_0"] = q80Expected
    return (b, expected)
}

@Suite("GGUF reader")
struct GGUFFileTests {
    @Test("parses header, metadata and tensors, and dequantizes each supported type exactly")
    func parsesAndDequantizes() throws {
        let (builder, expected) = sampleFile()
        let file = try openGGUF(builder.bytes())
        #expect(file.version == 3)
        #expect(file.metadata["general.architecture"] == .string("test"))
        #expect(file.tensors.map(\.name) == ["f32", "f16", "q4_1", "q8_0"])
        #expect(file.tensor(named: "f32")?.dims == [3, 2])
        for t in file.tensors {
            var out = [Float](repeating: .nan, count: t.elementCount)
            file.withBytes(of: t) { bytes in
                out.withUnsafeMutableBufferPointer { Dequantize.run(t.type, from: bytes.baseAddress!, to: $0.baseAddress!, count: t.elementCount) }
            }
            #expect(out == expected[t.name], "tensor \(t.name)")
        }
    }

    @Test("every truncation of a valid file is a clear error, never a crash")
    func truncations() throws {
        let bytes = sampleFile().0.bytes()
        for cut in stride(from: 0, to: bytes.count, by: 1) {
            do {
                _ = try openGGUF(Array(bytes[..<cut]))
                Issue.record("cut at \(cut) was accepted")
            } catch let error as GGUFError {
                if case .truncated = error { continue }
                Issue.record("cut at \(cut): expected truncation, got \(error)")
            }
        }
    }

    @Test("bad magic, version, value type, alignment and overlap are rejected with a reason")
    func malformed() throws {
        var bytes = sampleFile().0.bytes()
        bytes[0] = UInt8(ascii: "X")
        #expect(throws: GGUFError.badMagic(found: 0x4655_4758)) { try openGGUF(bytes) }

        var b = sampleFile().0
        b.version = 2
        #expect(throws: GGUFError.unsupportedVersion(2)) { try openGGUF(b.bytes()) }

        b = sampleFile().0
        b.metadata.append(("bad.type", 99, []))
        #expect(throws: GGUFError.malformed("metadata bad.type has unknown value type 99")) {
            try openGGUF(b.bytes())
        }

        b = sampleFile().0
        b.metadata[1] = ("general.alignment", 4, GGUFBuilder.le(UInt32(24)))
        #expect(throws: GGUFError.malformed("general.alignment must be a power of two")) {
            try openGGUF(b.bytes())
        }

        // Two tensors claiming the same bytes.
        b = sampleFile().0
        b.tensors.append(b.tensors[0])
        b.tensors[4].name = "again"
        b.offsetOverrides[4] = 0
        let overlapping = b.bytes()
        let error = #expect(throws: GGUFError.self) { try openGGUF(overlapping) }
        #expect(error?.description.contains("overlap") == true)

        b = sampleFile().0
        b.offsetOverrides[1] = 4
        #expect(throws: GGUFError.malformed("tensor f16 offset 4 is not aligned to 32")) {
            try openGGUF(b.bytes())
        }

        #expect(throws: GGUFError.self) { try GGUFFile(path: "/nonexistent/model.gguf") }
    }

    @Test("seeded random corruptions are either read or refused with a GGUFError, never a crash")
    func randomCorruptions() throws {
        let original = sampleFile().0.bytes()
        var rng = SplitMix64(seed: 11)
        var refused = 0
        for _ in 0 ..< 300 {
            var bytes = original
            for _ in 0 ..< 1 + Int(rng.next() % 4) {
                let at = Int(rng.next() % UInt64(min(bytes.count, 400)))   // mostly header bytes
                bytes[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            do {
                let file = try openGGUF(bytes)
                // Whatever was accepted must describe tensors inside the file.
                for t in file.tensors { #expect(t.fileOffset + t.byteCount <= file.fileSize) }
            } catch {
                refused += 1
            }
        }
        #expect(refused > 0)
    }

    @Test("unsupported and unknown tensor types are refused by name")
    func unsupportedTypes() throws {
        var b = sampleFile().0
        b.tensors[0].type = 12   // Q4_K
        #expect(throws: GGUFError.unsupportedTensorType(tensor: "f32", type: "Q4_K")) {
            try openGGUF(b.bytes())
        }
        b.tensors[0].type = 99
        #expect(throws: GGUFError.unsupportedTensorType(tensor: "f32", type: "unknown type 99")) {
            try openGGUF(b.bytes())
        }
    }

    @Test("the real model's header", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
    func realModelHeader() throws {
        let file = try GGUFFile(path: try #require(TestModel.path, TestModel.missingMessage))
        #expect(file.tensors.count == 272)
        let byType = Dictionary(grouping: file.tensors, by: \.type).mapValues(\.count)
        #expect(byType == [.q4_1: 210, .q8_0: 1, .f32: 61])
        let config = try LlamaConfig(gguf: file)
        #expect(config == LlamaConfig(layers: 30, embedding: 576, feedForward: 1536, heads: 9, kvHeads: 3, headDim: 64,
                                      ropeBase: 100_000, ropeDims: 64, rmsEpsilon: 1e-5, contextLength: 8192,
                                      vocabSize: 49152))
    }
}
