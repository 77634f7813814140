import ArgumentParser
import Foundation
import KVBench
import KVCache
import KVChunks
import KVData
import KVReferenceEngine

/// `kvcache blend`: chunk reuse at any position with selective recompute on the real model, every mode on
/// the same RAG samples side by side, measured against full prefill.
///
/// A prompt is a fixed short preamble, each passage as its own chunk, then the question. Each chunk's KV
/// is computed alone after the preamble (as a cache would hold it from an earlier request) and stored in
/// the chunk store with Cache-Craft's attention statistics. Modes: `full-prefill` (the reference),
/// `prefix` (only the leading chunk reused: exact prefix caching), `full-reuse` (every chunk reused,
/// re-rotated, nothing recomputed), and per selection (`hkvd`, `random`, `cci`) and ratio a blended
/// prefill. Times are measured in this process (wall clock of each prefill, the copies and
/// re-rotation included; the median over samples, and the median of each sample's ratio to its own full
/// prefill); the model and the chunk caching are not timed. Cache-Craft's statistics leave out position 0,
/// the attention sink every token attends to whatever its context.
struct BlendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blend",
        abstract: "Chunk reuse with selective recompute (CacheBlend, Cache-Craft) on the reference model, against full prefill.",
        discussion: """
        --data is CacheBlend's RAG input: a JSON array of {question, answers?, ctxs: [{title?, text}]}. \
        The model is found from --model, else $KVCACHE_MODEL, else ../shared/models/\(ModelLocator.fileName).
        """)

    @Option(help: "Path to the GGUF model file.") var model: String?
    @Option(help: "RAG samples: a JSON array of {question, answers?, ctxs: [{title?, text}]}.") var data: String
    @Option(help: "Recompute ratios, comma-separated, each in 0...1.") var ratio = "0.05,0.15,0.3,1"
    @Option(help: "Token selections, comma-separated: hkvd, random, cci.") var select = "hkvd,random,cci"
    @Option(help: "Samples to run (the first N), 1...\(Limits.samples.upperBound).") var limit = 20
    @Option(name: .customLong("max-tokens"), help: "Greedy tokens compared with full prefill's (1...\(Limits.maxTokens.upperBound)).") var maxTokens = 16
    @Option(help: "Passages per prompt (the first N of each sample), 1...\(Limits.passages.upperBound).") var passages = 4
    @Option(name: .customLong("passage-tokens"), help: "Cut each passage to this many tokens (0: whole).") var passageTokens = 0
    @Option(name: .customLong("check-layers"), help: "HKVD check layers, comma-separated, ascending (several: gradual filtering).") var checkLayers = "1,2"
    @Option(help: "HKVD deviation: value, key or key-value.") var metric = "key-value"
    @Option(help: "Threads for OpenBLAS and the decode kernels, 1...1024; default: all cores.") var threads: Int?
    @Flag(help: "Also run blend at the first --ratio from a tiered chunk store: each sample's chunks evicted to host memory and on to disk with their real bytes, fetched back or recomputed per chunk as the loading controller decides (mode blend-tiered).")
    var tiers = false
    @Option(name: .customLong("disk-gbps"), help: "With --tiers: the disk's read bandwidth the loading controller assumes, GB/s (an override for experiments; default: the tiers' measured bandwidth).")
    var diskGBps: Double?
    @Option(name: .customLong("recompute-ms-per-token"), help: "With --tiers: the recompute cost the loading controller assumes, ms per token (an override, so that its decisions do not follow the run's timings; default: fitted to the run's full prefills).")
    var recomputeMsPerToken: Double?
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    enum Limits {
        static let samples = 1 ... 100_000
        static let maxTokens = 1 ... 4096
        static let passages = 1 ... 64
        static let passageTokens = 0 ... 8192
    }

    enum Selection: String, CaseIterable { case hkvd, random, cci }

    var ratios: [Double] { ratio.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) } }
    var selections: [Selection] { select.split(separator: ",").compactMap { Selection(rawValue: $0.trimmingCharacters(in: .whitespaces)) } }
    var layers: [Int] { checkLayers.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        let r = ratio.split(separator: ",")
        guard !r.isEmpty, ratios.count == r.count, ratios.allSatisfy({ (0 ... 1).contains($0) }) else {
            throw ValidationError("--ratio must be comma-separated numbers in 0...1")
        }
        let s = select.split(separator: ",")
        guard !s.isEmpty, selections.count == s.count else { throw ValidationError("--select takes hkvd, random and cci") }
        let c = checkLayers.split(separator: ",")
        guard !c.isEmpty, layers.count == c.count, layers.allSatisfy({ $0 >= 0 }), zip(layers, layers.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw ValidationError("--check-layers must be ascending layer numbers")
        }
        guard DeviationCheck.Metric(rawValue: metric) != nil else { throw ValidationError("--metric must be value, key or key-value") }
        guard Limits.samples.contains(limit) else { throw ValidationError("--limit must be in \(Limits.samples)") }
        guard Limits.maxTokens.contains(maxTokens) else { throw ValidationError("--max-tokens must be in \(Limits.maxTokens)") }
        guard Limits.passages.contains(passages) else { throw ValidationError("--passages must be in \(Limits.passages)") }
        guard Limits.passageTokens.contains(passageTokens) else { throw ValidationError("--passage-tokens must be in \(Limits.passageTokens)") }
        guard threads.map((1 ... 1024).contains) ?? true else { throw ValidationError("--threads must be in 1...1024") }
        guard diskGBps.map({ $0.isFinite && $0 > 0 }) ?? true else { throw ValidationError("--disk-gbps must be positive") }
        guard recomputeMsPerToken.map({ $0.isFinite && $0 > 0 }) ?? true else { throw ValidationError("--recompute-ms-per-token must be positive") }
    }

    /// The fixed text around the passages (ChatML, as SmolLM2-Instruct was trained).
    static let preamble = "<|im_start|>system\nAnswer the question from the passages. Reply with the answer only, in a few words.<|im_end|>\n<|im_start|>user\n"
    static func passageText(_ p: RAGSamples.Passage) -> String { (p.title.isEmpty ? "" : p.title + ". ") + p.text + "\n\n" }
    static func questionText(_ q: String) -> String { "Question: \(q)<|im_end|>\n<|im_start|>assistant\n" }

    /// One mode's figures over the samples.
    struct Mode {
        var name: String
        var ratio: Double?
        var kl: [Double] = []
        var agreement: [Double] = []
        var top1: [Double] = []
        var f1: [Double] = []
        var seconds: [Double] = []
        var computed: [Int] = []
        var context: [Int] = []
        var logits: [[Float]] = []
    }

    func run() throws {
        guard let path = ModelLocator.resolve(explicit: model, roots: [FileManager.default.currentDirectoryPath]) else {
            throw CLIError("no model: pass --model PATH or set \(ModelLocator.environmentVariable)")
        }
        let samples: [RAGSamples.Sample]
        do { samples = Array(try RAGSamples.read(path: data).prefix(limit)) } catch { throw CLIError(error.description) }
        if let threads { BLASThreads.set(threads) }
        let loaded: LoadedModel
        do { loaded = try LoadedModel(path: path) } catch { throw CLIError("\(path): \(error)") }
        let lm = loaded.model, tok = loaded.tokenizer, c = lm.config
        let bt = 16
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }

        let preamble = tok.encode(Self.preamble)
        let context = ChunkKey(tokens: preamble, namespace: "smollm2-135m").bits
        // Prompts as token pieces; passages cut to --passage-tokens.
        let prompts: [(chunks: [[UInt32]], question: [UInt32])] = samples.map { s in
            let chunks = s.passages.prefix(passages).map { p in
                let t = tok.encode(Self.passageText(p), addBOS: false)
                return passageTokens > 0 ? Array(t.prefix(passageTokens)) : t
            }.filter { !$0.isEmpty }
            return (chunks, tok.encode(Self.questionText(s.question), addBOS: false))
        }
        guard prompts.allSatisfy({ !$0.chunks.isEmpty }) else { throw CLIError("\(data): a sample has no passage text") }
        let storeBlocks = 2 * (prompts.map { $0.chunks.reduce(0) { $0 + ($1.count + bt - 1) / bt } }.max() ?? 1)
        let blender = try ChunkBlender(model: lm, capacityBlocks: storeBlocks, blockTokens: bt)
        blender.checkLayers = layers
        blender.metric = DeviationCheck.Metric(rawValue: metric)!
        let workspace = ForwardWorkspace()
        // The preamble's KV, computed once: the cached prefix of every prompt.
        let preambleTable = (0 ..< Int32((preamble.count + bt - 1) / bt)).map { BlockID($0) }
        let preamblePool = PagedKVPool(config: c, blockTokens: bt, capacityBlocks: preambleTable.count)
        _ = try lm.forward(tokens: preamble, startPosition: 0, blockTable: preambleTable, pool: preamblePool, workspace: workspace)

        var modes = [Mode(name: "full-prefill"), Mode(name: "prefix"), Mode(name: "full-reuse")]
        for s in selections { for r in ratios { modes.append(Mode(name: s == .hkvd ? "blend" : s.rawValue, ratio: r)) } }
        let tiered = try tiers ? BlendTiers(config: c, blockTokens: bt, promptBlocks: storeBlocks / 2, diskGBps: diskGBps,
                                             recomputeMsPerToken: recomputeMsPerToken) : nil
        var tieredMode = Mode(name: "blend-tiered", ratio: ratios[0])
        let blendIndex = modes.firstIndex { $0.name == "blend" && $0.ratio == ratios[0] }
        let eos = tok.eosID

        for (index, (chunks, question)) in prompts.enumerated() {
            let prompt = preamble + chunks.joined() + question
            let n = prompt.count
            guard n + maxTokens <= c.contextLength else {
                throw CLIError("\(data): sample \(index + 1) has \(n) prompt tokens; with --max-tokens it passes the context of \(c.contextLength)")
            }
            let table = (0 ..< Int32((n + maxTokens + bt - 1) / bt)).map { BlockID($0) }
            let pool = PagedKVPool(config: c, blockTokens: bt, capacityBlocks: table.count)
            /// Greedy tokens after the prompt from the KV now in `pool`, stopping after the end token.
            func decode(_ logits: [Float]) throws -> [UInt32] {
                var out: [UInt32] = []
                var next = UInt32(logits.withUnsafeBufferPointer { Sampler.argmax($0) })
                while out.count < maxTokens {
                    out.append(next)
                    if next == eos || out.count == maxTokens { break }
                    let l = try lm.forward(tokens: [next], startPosition: n + out.count - 1, blockTable: table, pool: pool,
                                           workspace: workspace, mode: .decode)
                    next = UInt32(l.withUnsafeBufferPointer { Sampler.argmax($0) })
                }
                return out
            }
            let answers = samples[index].answers
            func text(_ tokens: [UInt32]) -> String {
                tok.decode(tokens.filter { $0 != eos }).split(separator: "\n").first.map(String.init) ?? ""
            }

            let t0 = clock.now
            let fullLogits = try lm.forward(tokens: prompt, startPosition: 0, blockTable: table, pool: pool, workspace: workspace)
            let fullSeconds = seconds(clock.now - t0)
            guard fullLogits.allSatisfy(\.isFinite) else { throw CLIError("\(path): the model computed a non-finite logit") }
            let reference = try decode(fullLogits)
            modes[0].kl.append(0); modes[0].agreement.append(1); modes[0].top1.append(1); modes[0].seconds.append(fullSeconds)
            modes[0].f1.append(OutputComparison.tokenF1(prediction: text(reference), answers: answers))
            modes[0].computed.append(n); modes[0].context.append(n)

            let keys = chunks.map { ChunkKey(tokens: $0, namespace: "smollm2-135m") }
            for (key, chunk) in zip(keys, chunks) { try blender.cache(key, tokens: chunk, after: preamble, context: context, statisticsFrom: 1) }

            for m in 1 ..< modes.count {
                var pieces = [PromptPiece(.cachedPrefix, tokens: preamble.count)]
                let selection: TokenSelection
                switch (modes[m].name, modes[m].ratio) {
                case ("prefix", _):
                    pieces.append(PromptPiece(.chunk(keys[0]), tokens: chunks[0].count))
                    pieces.append(PromptPiece(.fresh, tokens: n - preamble.count - chunks[0].count))
                    selection = .none
                default:
                    for (key, chunk) in zip(keys, chunks) { pieces.append(PromptPiece(.chunk(key), tokens: chunk.count)) }
                    pieces.append(PromptPiece(.fresh, tokens: question.count))
                    switch (modes[m].name, modes[m].ratio) {
                    case ("blend", let r?): selection = .highDeviation(ratio: r)
                    case ("random", let r?): selection = .random(ratio: r, seed: UInt64(index + 1))
                    case ("cci", let r?): selection = .contextImpact(ratio: r)
                    default: selection = .none
                    }
                }
                let start = clock.now
                pool.copyRows(from: preamblePool, sourceTable: preambleTable, sourceStart: 0, to: table, targetStart: 0, count: preamble.count)
                let plan: ChunkPrefillPlan
                do { plan = try ChunkPrefillPlan.build(pieces, store: &blender.store, context: context, selection: selection) } catch {
                    throw CLIError("chunk plan: \(error)")
                }
                let outcome = try blender.execute(plan, prompt: prompt, pool: pool, blockTable: table)
                let elapsed = seconds(clock.now - start)
                do { try plan.release(from: &blender.store) } catch { throw CLIError("chunk plan: \(error)") }
                guard plan.missingChunks == 0 else { throw CLIError("internal: \(plan.missingChunks) chunks missing from the store") }
                let tokens = try decode(outcome.logits)
                modes[m].kl.append(OutputComparison.klDivergence(reference: fullLogits, other: outcome.logits))
                modes[m].agreement.append(OutputComparison.greedyAgreement(reference: reference, other: tokens, n: reference.count))
                modes[m].top1.append(tokens.first == reference.first ? 1 : 0)
                modes[m].f1.append(OutputComparison.tokenF1(prediction: text(tokens), answers: answers))
                modes[m].seconds.append(elapsed)
                modes[m].computed.append(outcome.computedTokens)
                modes[m].context.append(n)
                if m == blendIndex { modes[m].logits.append(outcome.logits) }
            }
            if let tiered {
                // The same blend from the tiers: chunks staged there and evicted, fetched back or recomputed.
                tiered.fittedSecondsPerToken.append(fullSeconds / Double(n))
                try tiered.stage(keys, from: blender, context: context)
                var pieces = [PromptPiece(.cachedPrefix, tokens: preamble.count)]
                for (key, chunk) in zip(keys, chunks) { pieces.append(PromptPiece(.chunk(key), tokens: chunk.count)) }
                pieces.append(PromptPiece(.fresh, tokens: question.count))
                let controller = try tiered.controller(kvBytesPerToken: tiered.pool.bytesPerBlock / bt)
                let start = clock.now
                pool.copyRows(from: preamblePool, sourceTable: preambleTable, sourceStart: 0, to: table, targetStart: 0, count: preamble.count)
                let plan: ChunkPrefillPlan
                do {
                    plan = try tiered.tiered.plan(pieces, context: context, selection: .highDeviation(ratio: ratios[0]), controller: controller,
                                                  host: nil, disk: tiered.diskTier)
                } catch { throw CLIError("tiered chunk plan: \(error)") }
                let outcome = try blender.execute(plan, prompt: prompt, pool: pool, blockTable: table,
                                                  source: (tiered.tiered.store, tiered.pool))
                let elapsed = seconds(clock.now - start)
                try tiered.check(plan, ratio: ratios[0], against: blender, context: context)
                do { try tiered.tiered.release(plan: plan) } catch { throw CLIError("tiered chunk plan: \(error)") }
                if let b = blendIndex, plan.missingChunks == 0, let same = modes[b].logits.last {
                    tiered.maxLogitDifference = max(tiered.maxLogitDifference, zip(same, outcome.logits).map { abs($0 - $1) }.max() ?? 0)
                }
                let tokens = try decode(outcome.logits)
                tieredMode.kl.append(OutputComparison.klDivergence(reference: fullLogits, other: outcome.logits))
                tieredMode.agreement.append(OutputComparison.greedyAgreement(reference: reference, other: tokens, n: reference.count))
                tieredMode.top1.append(tokens.first == reference.first ? 1 : 0)
                tieredMode.f1.append(OutputComparison.tokenF1(prediction: text(tokens), answers: answers))
                tieredMode.seconds.append(elapsed)
                tieredMode.computed.append(outcome.computedTokens)
                tieredMode.context.append(n)
            }
            note("sample \(index + 1)/\(prompts.count): \(n) tokens, full prefill \(String(format: "%.3f", fullSeconds)) s, answer \"\(text(reference))\"")
        }
        if let tiered {
            modes.append(tieredMode)
            let measured = tiered.tiered.measuredTiers
            note(String(format: "tiers: %d chunks fetched (%d from host, %d from disk; %d with the recompute budget raised to the controller's ratio), "
                        + "%d recomputed by the loading controller's choice, %d fetched with KV unlike what was stored; max |logit - blend's logit| %.3g over the samples with every chunk loaded "
                        + "(at the end: host %.3g GB/s measured, disk %.3g GB/s %@)",
                        tiered.fetchedChunks, tiered.loadedFromHost, tiered.loadedFromDisk, tiered.raisedBudgets, tiered.recomputedChunks, tiered.mismatchedChunks,
                        Double(tiered.maxLogitDifference), measured.host.bytesPerSecond / 1e9,
                        (tiered.diskBandwidth ?? measured.disk.bytesPerSecond) / 1e9, tiered.diskBandwidth == nil ? "measured" : "given"))
        }
        try report(modes, samples: prompts.count, tiers: tiered)
        noteController(modes, reused: prompts.map { $0.chunks.dropFirst().reduce(0) { $0 + $1.count } },
                       kvBytesPerToken: PagedKVPool(config: c, blockTokens: bt, capacityBlocks: 1).bytesPerBlock / bt, layers: c.layers)
    }

    /// What CacheBlend's loading controller would choose for these prompts if their chunks sat in host
    /// memory: the recompute cost fitted to this run's full prefills (seconds per token, the linear layers
    /// dominating at this length) and host memory's copy bandwidth measured here. Modelled, on stderr.
    func noteController(_ modes: [Mode], reused: [Int], kvBytesPerToken: Int, layers: Int) {
        let bandwidth = BlendTiers.hostCopyBandwidth()
        let full = modes[0]
        let perToken = Measure.median(of: zip(full.seconds, full.context).map { $0 / Double($1) })
        guard let cost = try? RecomputeCost(secondsPerToken: perToken, secondsPerContextPair: 0),
              let controller = try? LoadingController(cost: cost, layers: layers, kvBytesPerToken: kvBytesPerToken),
              let d = try? controller.decide(reusedTokens: reused.max() ?? 0, contextTokens: full.context.max() ?? 0,
                                             tiers: [.init(name: "host memory", bytesPerSecond: bandwidth)]) else { return }
        note(String(format: "loading controller (modelled from measured figures): host memory %.1f GB/s, recompute %.2f ms/token; "
                    + "ratio %.2f, loading %.1f ms ", bandwidth / 1e9, perToken * 1e3, d.ratio, d.loadSeconds * 1e3)
             + (d.loadHidden ? "hidden under" : "longer than") + String(format: " recompute %.1f ms", d.recomputeSeconds * 1e3))
    }

    func report(_ modes: [Mode], samples: Int, tiers: BlendTiers? = nil) throws {
        func mean(_ a: [Double]) -> Double { a.isEmpty ? 0 : a.reduce(0, +) / Double(a.count) }
        func median(_ a: [Double]) -> Double {
            let s = a.sorted()
            return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
        }
        // Each sample's time over its own full prefill's, then the median: robust to load on shared cores.
        func ratio(_ m: Mode) -> Double { median(zip(m.seconds, modes[0].seconds).map { $1 > 0 ? $0 / $1 : 0 }) }
        let rows: [JSONValue] = modes.map { m in
            .object([
                ("mode", .string(m.name)), ("ratio", m.ratio.map(JSONValue.double) ?? .null),
                ("mean_kl", .double(mean(m.kl))), ("median_kl", .double(median(m.kl))),
                ("greedy_agreement", .double(mean(m.agreement))),
                ("exact_match", .double(mean(m.agreement.map { $0 == 1 ? 1 : 0 }))),
                ("f1", .double(mean(m.f1))),
                ("prefill_seconds", .double(median(m.seconds))), ("prefill_ratio", .double(ratio(m))),
                ("recomputed_tokens", .double(mean(m.computed.map(Double.init)))),
                ("context_tokens", .double(mean(m.context.map(Double.init)))),
            ] + (m.name == "blend-tiered" ? tiers.map { t in [
                ("loaded_from_host", .int(t.loadedFromHost)), ("loaded_from_disk", .int(t.loadedFromDisk)),
                ("recomputed_chunks", .int(t.recomputedChunks)), ("raised_budgets", .int(t.raisedBudgets)), ("fetched_kv_equal", .bool(t.mismatchedChunks == 0)),
                ("max_logit_difference_vs_blend", .double(Double(t.maxLogitDifference))),
                ("host_bytes_per_second", .double(t.tiered.measuredTiers.host.bytesPerSecond)),
                ("disk_bytes_per_second", .double(t.diskBandwidth ?? t.tiered.measuredTiers.disk.bytesPerSecond)),
                ("disk_bandwidth", .string(t.diskBandwidth == nil ? "measured" : "given")),
            ] } ?? [] : []))
        }
        var out = "samples \(samples)\n"
        out += "mode          ratio  mean_kl  median_kl  top1  agree  exact    f1  prefill_s  x_full  recomputed  context\n"
        for m in modes {
            let r = m.ratio.map { String(format: "%5.2f", $0) } ?? "    -"
            out += m.name.padding(toLength: 12, withPad: " ", startingAt: 0)
            out += " " + r + String(format: "  %7.4f  %9.4f  %4.2f  %5.2f  %5.2f  %4.2f  %9.3f  %6.2f  %10.1f  %7.1f\n",
                          mean(m.kl), median(m.kl), mean(m.top1), mean(m.agreement), mean(m.agreement.map { $0 == 1 ? 1 : 0 }),
                          mean(m.f1), median(m.seconds), ratio(m),
                          mean(m.computed.map(Double.init)), mean(m.context.map(Double.init)))
        }
        if json {
            // The table still goes to stderr, with the top-1 agreement the JSON does not carry.
            note(out)
            try reportOutput.emit(command: "blend", object: .object([("samples", .int(samples)), ("runs", .array(rows))]))
        } else {
            FileHandle.standardOutput.write(Data(out.utf8))
        }
    }
}
