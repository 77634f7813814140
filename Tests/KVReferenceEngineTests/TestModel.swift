import Foundation
import Testing
@testable import KVReferenceEngine

/// The real SmolLM2-135M model for tests, loaded once per test process.
///
/// Found through `$KVCACHE_MODEL`, else `<package root>/../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf`
/// (the package root found from this file's path). Tests that need it are skipped, with that message,
/// when it is absent, except under CI, where they fail.
enum TestModel {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    static let path: String? = {
        guard let p = ModelLocator.resolve(roots: [packageRoot]) else { return nil }
        return FileManager.default.fileExists(atPath: p) ? p : nil
    }()

    /// Whether model tests run: when the model is present, and always under CI (`CI` set), where a
    /// missing model must fail the tests rather than skip them.
    static var isAvailable: Bool { path != nil || ProcessInfo.processInfo.environment["CI"] != nil }

    static let missingMessage: Comment =
        "model not found: set KVCACHE_MODEL or place \(ModelLocator.fileName) in ../shared/models"

    struct Loaded: @unchecked Sendable {
        let file: GGUFFile
        let tokenizer: BPETokenizer
        let model: LlamaModel
    }

    /// Loading dequantizes about 0.5 GB once; later calls return the same instance.
    static let loaded: Loaded? = {
        guard let path else {
            Issue.record("\(missingMessage)")
            return nil
        }
        do {
            let file = try GGUFFile(path: path)
            return Loaded(file: file, tokenizer: try BPETokenizer(gguf: file), model: try LlamaModel(gguf: file))
        } catch {
            Issue.record("model at \(path) failed to load: \(error)")
            return nil
        }
    }()

    /// The loaded model, or a recorded failure.
    static func require() throws -> Loaded {
        try #require(loaded, "model failed to load")
    }
}

/// The JSON fixtures beside this file, produced by tools/fixtures/make_reference_engine_fixtures.py.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    struct TokenizerCase: Decodable { let text: String; let ids: [UInt32] }
    struct TokenizerFile: Decodable { let cases: [TokenizerCase] }
    struct TopEntry: Decodable { let id: Int; let logit: Float }
    struct PromptCase: Decodable { let prompt: String; let ids: [UInt32]; let top5: [TopEntry] }
    struct LogitsFile: Decodable { let prompts: [PromptCase] }

    static func load<T: Decodable>(_ name: String, as type: T.Type) throws -> T {
        let data = try Data(contentsOf: directory.appendingPathComponent(name))
        return try JSONDecoder().decode(T.self, from: data)
    }
}
