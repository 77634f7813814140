import Foundation
import KVCache
import Testing
@testable import KVReferenceEngine

/// Crafted model files and runs that fill the pool or the context: every one ends in a clear error
/// or a result with its stop reason, never a trap, a hang, an absurd allocation or lost text.
@Suite("hostile inputs")
struct HostileInputTests {
    /// The llama metadata of a tiny valid model, with `overrides` (key -> (value type, bytes)).
    static func llamaHeader(_ overrides: [String: (UInt32, [UInt8])] = [:]) -> GGUFBuilder {
        var b = GGUFBuilder()
        b.addString("general.architecture", "llama")
        let base: [(String, (UInt32, [UInt8]))] = [
            ("llama.block_count", (4, GGUFBuilder.le(UInt32(2)))),
            ("llama.embedding_length", (4, GGUFBuilder.le(UInt32(64)))),
            ("llama.feed_forward_length", (4, GGUFBuilder.le(UInt32(128)))),
            ("llama.attention.head_count", (4, GGUFBuilder.le(UInt32(4)))),
            ("llama.attention.layer_norm_rms_epsilon", (6, GGUFBuilder.le(Float(1e-5).bitPattern))),
            ("llama.context_length", (4, GGUFBuilder.le(UInt32(256)))),
            ("llama.vocab_size", (4, GGUFBuilder.le(UInt32(100)))),
        ]
        for (key, value) in base where overrides[key] == nil { b.metadata.append((key, value.0, value.1)) }
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) { b.metadata.append((key, value.0, value.1)) }
        return b
    }

    static func config(_ overrides: [String: (UInt32, [UInt8])]) throws(GGUFError) -> LlamaConfig {
        let file: GGUFFile
        do { file = try openGGUF(llamaHeader(overrides).bytes()) } catch { throw .malformed("test file: \(error)") }
        return try LlamaConfig(gguf: file)
    }

    @Test("every hyperparameter is range-checked, naming the key")
    func configLimits() throws {
        #expect(try Self.config([:]).layers == 2)
        let u64 = { (v: UInt64) in (UInt32(10), GGUFBuilder.le(v)) }
        let f32 = { (v: Float) in (UInt32(6), GGUFBuilder.le(v.bitPattern)) }
        let bad: [(String, (UInt32, [UInt8]))] = [
            ("llama.block_count", u64(1 << 40)), ("llama.embedding_length", u64(UInt64(Int.max))),
            ("llama.feed_forward_length", u64(0)), ("llama.attention.head_count", u64(1 << 31)),
            ("llama.attention.head_count_kv", u64(1 << 20)), ("llama.context_length", u64(1 << 62)),
            ("llama.vocab_size", u64(1 << 40)), ("llama.rope.dimension_count", u64(1000)),
            ("llama.attention.layer_norm_rms_epsilon", f32(.nan)), ("llama.attention.layer_norm_rms_epsilon", f32(0)),
            ("llama.rope.freq_base", f32(.infinity)), ("llama.rope.freq_base", f32(-1)),
            ("llama.context_length", (8, GGUFBuilder.str("12"))),
        ]
        for (key, value) in bad {
            do {
                _ = try Self.config([key: value])
                Issue.record("\(key) accepted")
            } catch {
                #expect(error.description.contains(key), "\(error)")
            }
        }
    }

    @Test("a token id past the vocabulary is refused; the token count is bounded")
    func tokenizerIDs() throws {
        func tokenizer(eos: UInt32) throws -> BPETokenizer {
            var b = GGUFBuilder()
            b.addString("tokenizer.ggml.model", "gpt2")
            let tokens = ["a", "b", "ab"]
            b.metadata.append(("tokenizer.ggml.tokens", 9,
                               GGUFBuilder.le(UInt32(8)) + GGUFBuilder.le(UInt64(tokens.count)) + tokens.flatMap(GGUFBuilder.str)))
            b.metadata.append(("tokenizer.ggml.merges", 9,
                               GGUFBuilder.le(UInt32(8)) + GGUFBuilder.le(UInt64(1)) + GGUFBuilder.str("a b")))
            b.addU32("tokenizer.ggml.eos_token_id", eos)
            return try BPETokenizer(gguf: try openGGUF(b.bytes()))
        }
        #expect(try tokenizer(eos: 2).eosID == 2)
        #expect(throws: GGUFError.malformed("tokenizer.ggml.eos_token_id is not a token id below 3")) {
            _ = try tokenizer(eos: 3)
        }
    }

    @Test("a FIFO or a folder is refused at once, not read or waited on")
    func notARegularFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvref-fifo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fifo = dir.appendingPathComponent("model.gguf").path
        #expect(mkfifo(fifo, 0o600) == 0)
        for path in [fifo, dir.path] {
            #expect(throws: GGUFError.cannotOpen(path: path, reason: "not a regular file")) { _ = try GGUFFile(path: path) }
        }
    }

    @Test("a full pool stops the run with its text kept, equal to the start of an unhindered run",
          .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
    func poolFullKeepsText() throws {
        let m = try TestModel.require()
        let prompt = m.tokenizer.encode("1, 2, 3,")
        let small = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: 4, capacityBlocks: 4)
        var streamed: [UInt32] = []
        let g = try small.generate(prompt: prompt, maxTokens: 40) { streamed.append($0) }
        #expect(g.stopReason == .poolFull)
        #expect(!g.tokens.isEmpty && g.tokens == streamed)
        #expect(g.tokens.count == 4 * 4 - prompt.count + 1)   // every slot computed, plus the last sampled token
        let big = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: 4, capacityBlocks: 64)
        let full = try big.generate(prompt: prompt, maxTokens: g.tokens.count)
        #expect(full.stopReason == .length && full.tokens == g.tokens)
        #expect(small.cache.sequenceCount == 0)   // the stopped sequence was finished
    }

    @Test("NaN weights are an error, not empty text", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
    func nonFiniteWeights() throws {
        let source = try #require(TestModel.path)
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("kvref-nan-\(UUID().uuidString).gguf")
        try FileManager.default.copyItem(atPath: source, toPath: copy.path)
        defer { try? FileManager.default.removeItem(at: copy) }
        let norm = try #require(try GGUFFile(path: copy.path).tensor(named: "output_norm.weight"))
        #expect(norm.type == .f32)
        let handle = try FileHandle(forWritingTo: copy)
        try handle.seek(toOffset: UInt64(norm.fileOffset))
        try handle.write(contentsOf: GGUFBuilder.le(Float.nan.bitPattern))
        try handle.close()
        let loaded = try LoadedModel(path: copy.path)
        let engine = try ReferenceEngine(model: loaded.model, tokenizer: loaded.tokenizer, capacityBlocks: 8)
        let prompt = loaded.tokenizer.encode("Hello")
        #expect(throws: EngineError.nonFiniteLogits(position: prompt.count)) {
            _ = try engine.generate(prompt: prompt, maxTokens: 4)
        }
        #expect(engine.cache.sequenceCount == 0)
    }
}
