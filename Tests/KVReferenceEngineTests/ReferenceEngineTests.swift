import Foundation
import KVCache
import KVData
import Testing
@testable import KVReferenceEngine

@Suite("engine on the paged KV cache", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct ReferenceEngineTests {
    static func engine(capacity: Int, blockTokens: Int = 16, caching: Bool = true) throws -> ReferenceEngine {
        let m = try TestModel.require()
        return try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, blockTokens: blockTokens,
                                   capacityBlocks: capacity, enablePrefixCaching: caching)
    }

    static func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    @Test("a prompt extending an earlier one reuses its blocks and equals a cold run")
    func prefixReuseIsExact() throws {
        let m = try TestModel.require()
        let first = m.tokenizer.encode(ChatTemplate.render(user: "Name three colors."))
        let second = first + m.tokenizer.encode("Red, green and")
        let warm = try Self.engine(capacity: 16)
        let a = try warm.generate(prompt: first, maxTokens: 3)
        #expect(a.cachedPromptTokens == 0)
        let b = try warm.generate(prompt: second, maxTokens: 5)
        #expect(b.cachedPromptTokens == first.count / 16 * 16)
        #expect(b.cachedPromptTokens >= 32)

        let cold = try Self.engine(capacity: 16, caching: false).generate(prompt: second, maxTokens: 5)
        #expect(cold.cachedPromptTokens == 0)
        #expect(Self.maxDiff(b.promptLogits, cold.promptLogits) <= 1e-4)
        #expect(b.tokens == cold.tokens)
        // The same prompt again hits every full block but the one holding its last token.
        let again = try warm.generate(prompt: second, maxTokens: 5)
        #expect(again.cachedPromptTokens == (second.count - 1) / 16 * 16)
        #expect(again.tokens == cold.tokens)
        #expect(Self.maxDiff(again.promptLogits, cold.promptLogits) <= 1e-4)
        try warm.cache.validate()
    }

    @Test("forked samples share the prompt's blocks and each equals a separate cold run")
    func forkIsExact() throws {
        let m = try TestModel.require()
        let prompt = m.tokenizer.encode("Once upon a time, in a small village by the sea, there lived")
        #expect(prompt.count % 16 != 0, "the prompt must end in a partial block to exercise copy-on-write")
        let samplers = [Sampler(temperature: 0.9, topK: 40, seed: 1), Sampler(temperature: 0.9, topK: 40, seed: 2),
                        Sampler.greedy]
        let engine = try Self.engine(capacity: 12)
        let forked = try engine.generateForked(prompt: prompt, maxTokens: 6, samplers: samplers)
        #expect(forked.count == 3)
        // Two of the three sequences had to copy the shared partial block before writing into it.
        #expect(engine.cache.stats.copiedBlocks == 2)
        for (sample, sampler) in zip(forked, samplers) {
            let cold = try Self.engine(capacity: 4, caching: false).generate(prompt: prompt, maxTokens: 6, sampler: sampler)
            #expect(sample.tokens == cold.tokens)
        }
        #expect(forked[0].tokens != forked[1].tokens || forked[0].tokens != forked[2].tokens)
        try engine.cache.validate()
    }

    @Test("with a tiny pool, evicted prefixes are recomputed and outputs equal cold runs")
    func evictionIsSafe() throws {
        let m = try TestModel.require()
        let prompts = ["The sun is a star", "Water boils at", "The sun is a star that", "Seven plus two is"]
            .map { m.tokenizer.encode($0) }
        #expect(prompts.allSatisfy { $0.count <= 8 })
        // Block size 4 and 3 blocks: one sequence of up to 12 tokens fits; cached prefixes must be
        // evicted for the next prompt and recomputed when it comes back.
        let tiny = try Self.engine(capacity: 3, blockTokens: 4)
        for p in prompts + prompts {
            let out = try tiny.generate(prompt: p, maxTokens: 4)
            let cold = try Self.engine(capacity: 8, caching: false).generate(prompt: p, maxTokens: 4)
            #expect(out.tokens == cold.tokens)
            #expect(Self.maxDiff(out.promptLogits, cold.promptLogits) <= 1e-4)
            try tiny.cache.validate()
        }
        #expect(tiny.cache.stats.evictedBlocks > 0)
        // A request larger than the whole pool is refused and leaves the engine usable.
        let long = m.tokenizer.encode(String(repeating: "word ", count: 20))
        #expect(throws: EngineError.self) { _ = try tiny.generate(prompt: long, maxTokens: 1) }
        #expect(tiny.cache.sequenceCount == 0)
        #expect(tiny.cache.freeBlockCount == 3)
        let after = try tiny.generate(prompt: prompts[1], maxTokens: 2)
        #expect(after.tokens.count == 2)
    }

    @Test("seeded random requests over shared prefixes and a small pool always equal cold runs")
    func randomRequestsMatchColdRuns() throws {
        let m = try TestModel.require()
        let pieces = ["The cat", " sat on the mat", " and looked", " at the bird", " outside."].map { m.tokenizer.encode($0) }
        let engine = try Self.engine(capacity: 6, blockTokens: 4)
        let cold = try Self.engine(capacity: 8, blockTokens: 4, caching: false)
        var rng = SplitMix64(seed: 42)
        var hits = 0
        for step in 0 ..< 8 {
            // A prompt built from a random-length run of pieces, so prompts share prefixes.
            let count = 1 + Int(rng.next() % 4)
            let prompt = pieces.prefix(count).flatMap { $0 }
            let maxTokens = 1 + Int(rng.next() % 3)
            let out = try engine.generate(prompt: prompt, maxTokens: maxTokens)
            let ref = try cold.generate(prompt: prompt, maxTokens: maxTokens)
            hits += out.cachedPromptTokens
            #expect(out.tokens == ref.tokens, "step \(step)")
            #expect(Self.maxDiff(out.promptLogits, ref.promptLogits) <= 1e-4, "step \(step)")
            try engine.cache.validate()
        }
        #expect(hits > 0)
    }

    @Test("a prompt computed in small chunks equals one computed at once")
    func chunkedPrefill() throws {
        let m = try TestModel.require()
        let prompt = m.tokenizer.encode(ChatTemplate.render(user: "Chunk me."))
        let whole = try Self.engine(capacity: 4).generate(prompt: prompt, maxTokens: 3)
        let chunked = try ReferenceEngine(model: m.model, tokenizer: m.tokenizer, capacityBlocks: 4, prefillChunkTokens: 7)
            .generate(prompt: prompt, maxTokens: 3)
        #expect(Self.maxDiff(whole.promptLogits, chunked.promptLogits) <= 1e-4)
        #expect(whole.tokens == chunked.tokens)
    }

    @Test("invalid requests throw and change nothing")
    func invalidRequests() throws {
        let engine = try Self.engine(capacity: 4)
        #expect(throws: EngineError.emptyInput) { _ = try engine.generate(prompt: [], maxTokens: 1) }
        #expect(throws: EngineError.tokenOutOfRange(60000, vocabulary: 49152)) {
            _ = try engine.generate(prompt: [1, 60000], maxTokens: 1)
        }
        #expect(throws: EngineError.self) { try engine.step(SequenceID(99), token: 1) }
        #expect(engine.cache.sequenceCount == 0)
        #expect(engine.cache.freeBlockCount == 4)
    }
}

@Suite("KV dump", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct KVDumpTests {
    @Test("blocks dumped as f32 and loaded back after being wiped give bit-identical logits")
    func roundTripIsBitwise() throws {
        let m = try TestModel.require()
        let prompt = m.tokenizer.encode("Blocks spilled to disk must come back unchanged, byte for byte.")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvdump-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }

        // Reference: no round trip.
        let reference = try ReferenceEngineTests.engine(capacity: 4)
        let refID = reference.makeSequenceID()
        try reference.start(refID, prompt: prompt)
        let next = UInt32(reference.lastLogits.indices.max { reference.lastLogits[$0] < reference.lastLogits[$1] }!)
        try reference.step(refID, token: next)

        let engine = try ReferenceEngineTests.engine(capacity: 4)
        let id = engine.makeSequenceID()
        try engine.start(id, prompt: prompt)
        let table = try engine.cache.blockTable(id)
        let manifest = try KVDump.write(pool: engine.pool, blockTable: table, tokens: prompt.count,
                                        model: ModelLocator.fileName, dtype: .f32, to: dir)
        #expect(manifest.blocks.count == (prompt.count + 15) / 16)
        #expect(manifest.bytesPerBlock == 30 * 2 * 16 * 3 * 64 * 4)
        #expect(manifest.blocks.last?.tokens == prompt.count - (manifest.blocks.count - 1) * 16)
        #expect(try KVDump.readManifest(in: dir) == manifest)

        // Wipe the blocks (as if evicted), load them back, continue.
        for b in table { engine.pool.withMutableBlockBytes(b) { $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        try KVDump.load(from: dir, into: engine.pool, blockTable: table)
        try engine.step(id, token: next)
        #expect(engine.lastLogits == reference.lastLogits)

        // Without the reload the output would differ: the check can fail.
        for b in table { engine.pool.withMutableBlockBytes(b) { $0.initializeMemory(as: UInt8.self, repeating: 0) } }
        let wiped = try m.model.forward(tokens: [next], startPosition: prompt.count + 1, blockTable: table, pool: engine.pool)
        #expect(wiped != reference.lastLogits)

        // f16 dumps are half the size; a pool of another shape is refused.
        let f16 = try KVDump.write(pool: engine.pool, blockTable: table, tokens: prompt.count,
                                   model: ModelLocator.fileName, dtype: .f16, to: dir.appendingPathComponent("f16"))
        #expect(f16.bytesPerBlock * 2 == manifest.bytesPerBlock)
        let other = PagedKVPool(layers: 30, kvHeads: 3, headDim: 64, blockTokens: 8, capacityBlocks: 8)
        #expect(throws: KVDump.LoadError.self) { try KVDump.load(from: dir, into: other, blockTable: Array(0 ..< 8)) }
        #expect(throws: KVDump.LoadError.self) {
            try KVDump.write(pool: engine.pool, blockTable: [99], tokens: 3, model: "", dtype: .f32, to: dir)
        }

        // A link where a block file goes is refused, and what it points to stays as it was.
        let linked = dir.appendingPathComponent("linked")
        try FileManager.default.createDirectory(at: linked, withIntermediateDirectories: true)
        let victim = dir.appendingPathComponent("victim.txt")
        try Data("keep".utf8).write(to: victim)
        try FileManager.default.createSymbolicLink(at: linked.appendingPathComponent("block-00000.bin"),
                                                   withDestinationURL: victim)
        #expect(throws: DataError.self) {
            try KVDump.write(pool: engine.pool, blockTable: table, tokens: prompt.count,
                             model: ModelLocator.fileName, dtype: .f32, to: linked)
        }
        #expect(try Data(contentsOf: victim) == Data("keep".utf8))
    }
}

@Suite("engine under pool pressure", .enabled(if: TestModel.isAvailable, TestModel.missingMessage))
struct PoolPressureTests {
    @Test("a step refused for lack of a copy-on-write block succeeds when retried after space frees up")
    func stepRetriesAfterExhaustion() throws {
        let m = try TestModel.require()
        let prompt = m.tokenizer.encode("A fork needs its own copy")
        #expect(prompt.count % 4 != 0 && prompt.count <= 8)
        let blocks = (prompt.count + 3) / 4
        let engine = try ReferenceEngineTests.engine(capacity: blocks, blockTokens: 4)
        let parent = engine.makeSequenceID(), child = engine.makeSequenceID()
        try engine.start(parent, prompt: prompt)
        let token = UInt32(engine.lastLogits.withUnsafeBufferPointer { Sampler.argmax($0) })
        try engine.fork(parent, into: child)
        // The shared partial block must be copied before the child writes, and the pool is full.
        #expect(throws: EngineError.poolExhausted(needed: 1, available: 0)) { try engine.step(child, token: token) }
        #expect(throws: EngineError.self) { try engine.step(child, token: token &+ 1) }   // only the same token may retry
        try engine.finish(parent)
        try engine.step(child, token: token)
        let cold = try ReferenceEngineTests.engine(capacity: 4, blockTokens: 4, caching: false)
        let coldID = cold.makeSequenceID()
        try cold.start(coldID, prompt: prompt)
        try cold.step(coldID, token: token)
        #expect(engine.lastLogits == cold.lastLogits)
        try engine.cache.validate()
    }
}
