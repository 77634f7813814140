import ArgumentParser
import KVPrediction

/// `--leading-tokens` / `--trailing-tokens`: how much of a prompt the text features read, shared by
/// every command that trains a text model. Both are checked against 0...65536, naming the flag.
struct PromptWindowOptions: ParsableArguments {
    @Option(name: .customLong("leading-tokens"), help: "Words and symbols read from the start of a prompt.")
    var leadingTokens = FeatureHashingConfig().leadingTokens
    @Option(name: .customLong("trailing-tokens"), help: "Words and symbols read from the end of a long prompt.")
    var trailingTokens = FeatureHashingConfig().trailingTokens

    func validate() throws {
        guard (0...65_536).contains(leadingTokens) else { throw ValidationError("--leading-tokens must be in 0...65536") }
        guard (0...65_536).contains(trailingTokens) else { throw ValidationError("--trailing-tokens must be in 0...65536") }
    }

    /// Sets the window of `hashing` from the flags.
    func apply(to hashing: inout FeatureHashingConfig) {
        hashing.leadingTokens = leadingTokens
        hashing.trailingTokens = trailingTokens
    }
}
