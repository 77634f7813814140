import Foundation
import KVData

/// The trace shipped inside the tool: the first 1,000 requests of the Mooncake FAST'25 synthetic
/// trace (Apache-2.0), used when a command is given no `--trace`.
enum EmbeddedTrace {
    static let label = "embedded:mooncake-synthetic-1000.jsonl"

    /// Reads it with `hashBlockTokens` tokens per hash id. Throws `CLIError` if the bundle lacks it.
    static func load(hashBlockTokens: Int = 512, skipBadLines: Bool = false) throws -> LoadedTrace {
        guard let url = Bundle.module.url(forResource: "mooncake-synthetic-1000", withExtension: "jsonl") else {
            throw CLIError("the embedded default trace is missing from the resource bundle")
        }
        do {
            return try Mooncake.read(ByteSource(path: url.path), blockTokens: hashBlockTokens, skipBadLines: skipBadLines)
        } catch { throw CLIError(error.description) }
    }
}
