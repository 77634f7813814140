import ArgumentParser
import Foundation
import KVCache
import KVData
import KVReferenceEngine

/// `kvcache kv-dump`: computes a prompt's real KV with the reference engine and writes its blocks, one
/// file per block, plus a manifest describing the layout (input for the tier and codec benchmarks).
struct KVDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kv-dump",
        abstract: "Write the real KV blocks of a prompt (SmolLM2-135M) to a directory, with a manifest.")

    @Option(help: "Path to the GGUF model file.") var model: String?
    @Option(name: .customLong("prompt-file"), help: "Text file whose contents are the prompt (- reads standard input; at most 16 MiB).") var promptFile: String
    @Option(help: "Output directory (created if needed).") var out: String
    @Flag(help: "Wrap the prompt in the ChatML template as a user turn.") var chat = false
    @Option(help: "Element type of the written blocks: f16 or f32.") var dtype: String = "f16"
    @Option(name: .customLong("block-tokens"), help: "Tokens per KV block.") var blockTokens = 16
    @Option(name: .customLong("max-tokens"), help: "Use at most this many prompt tokens.") var maxTokens = 4096
    @Option(help: "OpenBLAS threads (default: all cores).") var threads: Int?
    @OptionGroup(title: "Report") var reportOutput: ReportOptions
    var json: Bool { reportOutput.machine }

    func validate() throws {
        typealias Limits = GenerateCommand.Limits
        guard KVDump.DType(rawValue: dtype) != nil else { throw ValidationError("--dtype must be f16 or f32") }
        guard Limits.blockTokens.contains(blockTokens) else { throw ValidationError("--block-tokens must be in \(Limits.blockTokens)") }
        guard (1 ... Limits.maxTokens.upperBound).contains(maxTokens) else {
            throw ValidationError("--max-tokens must be in 1...\(Limits.maxTokens.upperBound)")
        }
        guard threads.map(Limits.threads.contains) ?? true else { throw ValidationError("--threads must be in \(Limits.threads)") }
        guard !out.isEmpty else { throw ValidationError("--out must name a folder") }
    }

    /// The prompt file's bytes: a regular file (opened by `RegularFile`, so a FIFO, device or folder is
    /// refused before anything blocks) or standard input (`-`), at most 16 MiB.
    func readPrompt() throws -> Data {
        let maxPromptBytes = 16 << 20
        let file: UnsafeMutablePointer<FILE>
        if promptFile == "-" {
            guard let input = fdopen(dup(STDIN_FILENO), "rb") else {
                throw CLIError("cannot read standard input: \(String(cString: strerror(errno)))")
            }
            file = input
        } else {
            do { file = try RegularFile.open(promptFile).file } catch { throw CLIError("\(error)") }
        }
        defer { fclose(file) }
        var bytes = [UInt8](repeating: 0, count: maxPromptBytes + 1)
        let count = fread(&bytes, 1, bytes.count, file)
        if count < bytes.count, ferror(file) != 0 {
            throw CLIError("cannot read prompt file \(promptFile): \(String(cString: strerror(errno)))")
        }
        guard count <= maxPromptBytes else { throw CLIError("prompt file \(promptFile) is larger than 16 MiB") }
        return Data(bytes[..<count])
    }

    func run() throws {
        guard let path = ModelLocator.resolve(explicit: model, roots: [FileManager.default.currentDirectoryPath]) else {
            throw CLIError("no model: pass --model PATH or set \(ModelLocator.environmentVariable)")
        }
        let data = try readPrompt()
        // The output folder first, so a bad --out fails before the model runs.
        do { try OutputFolder.create(out) } catch { throw CLIError(error.description) }
        if let threads { BLASThreads.set(threads) }
        let loaded: LoadedModel
        do { loaded = try LoadedModel(path: path) } catch { throw CLIError(error.description) }
        let text = String(decoding: data, as: UTF8.self)
        var ids = loaded.tokenizer.encode(chat ? ChatTemplate.render(user: text) : text)
        guard !ids.isEmpty else { throw CLIError("the prompt file has no tokens") }
        if ids.count > maxTokens { ids.removeLast(ids.count - maxTokens) }
        guard ids.count <= loaded.model.config.contextLength else {
            throw CLIError("the prompt has \(ids.count) tokens, more than the model's context of "
                           + "\(loaded.model.config.contextLength) (use --max-tokens)")
        }
        let blocks = (ids.count + blockTokens - 1) / blockTokens
        let manifest: KVDump.Manifest
        do {
            let engine = try ReferenceEngine(model: loaded.model, tokenizer: loaded.tokenizer,
                                             blockTokens: blockTokens, capacityBlocks: blocks)
            let id = engine.makeSequenceID()
            let clock = ContinuousClock()
            let t0 = clock.now
            try engine.start(id, prompt: ids)
            note(String(format: "computed %d tokens in %.2f s", ids.count, (clock.now - t0).engineSeconds))
            let table = try engine.cache.blockTable(id)
            manifest = try KVDump.write(pool: engine.pool, blockTable: table, tokens: ids.count,
                                        model: (path as NSString).lastPathComponent,
                                        dtype: KVDump.DType(rawValue: dtype)!, to: URL(fileURLWithPath: out))
        } catch let error as EngineError {
            throw CLIError(error.description)
        } catch let error as DataError {
            // Names the folder or file already: "PATH: cannot write: reason".
            throw CLIError(error.description)
        } catch {
            throw CLIError("cannot write \(out): \(readableReason(error))")
        }
        note("wrote \(manifest.blocks.count) blocks of \(manifest.bytesPerBlock) bytes (\(dtype)) and manifest.json to \(out)")
        if json {
            try reportOutput.emit(Report(command: "kv-dump", header: NoReportHeader(), runs: [manifest]))
        }
    }
}

/// One readable clause for a Foundation file error: the POSIX reason underneath it when there is one
/// ("No such file or directory"), never the NSError dump.
private func readableReason(_ error: Error) -> String {
    let e = error as NSError
    if let posix = e.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(posix.code)))
    }
    if e.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(e.code))) }
    return e.domain == NSCocoaErrorDomain ? "file system error \(e.code)" : "\(error)"
}
