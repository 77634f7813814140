/// One request of a workload trace, as every trace reader produces it.
///
/// Lengths are in tokens of the model the trace was recorded for. Prefix sharing, when the trace
/// knows it, is given as a list of block hash ids: two requests whose lists agree up to index `i`
/// share their first `(i + 1) * hashBlockTokens` prompt tokens (Mooncake convention; the last id may
/// cover a partial block).
public struct TraceRequest: Sendable, Equatable {
    /// Arrival time in seconds from the start of the trace.
    public var arrival: Double
    /// Prompt length in tokens.
    public var inputTokens: Int
    /// True output length in tokens.
    public var outputTokens: Int
    /// Prefix block hash ids (empty when the trace has none).
    public var hashIDs: [UInt64]
    /// Tokens covered by one hash id (512 for Mooncake; 0 when `hashIDs` is empty).
    public var hashBlockTokens: Int
    /// The prompt text, when the trace has it (ShareGPT, CASTILLO).
    public var promptText: String?
    /// A conversation or session id, when the trace has one.
    public var session: String?
    /// The model the lengths were recorded with, when the trace says (CASTILLO, BurstGPT).
    public var model: String?

    public init(arrival: Double, inputTokens: Int, outputTokens: Int, hashIDs: [UInt64] = [],
                hashBlockTokens: Int = 0, promptText: String? = nil, session: String? = nil,
                model: String? = nil) {
        self.arrival = arrival
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
        self.hashIDs = hashIDs
        self.hashBlockTokens = hashBlockTokens
        self.promptText = promptText
        self.session = session
        self.model = model
    }
}
