/// The token budget of a step that carries decodes, under stall-free batching (Sarathi-Serve): decodes
/// plus prefill chunks stay near the GPU's balance point, where the step is still bound by memory
/// reads, so the prefill tokens ride along almost free instead of one long compute-bound prefill step
/// stalling every decode.
///
/// A step's memory time grows with the KV its decodes read, so the balance point moves up with their
/// context: the budget is `baseTokens` (the weights' read alone) plus `tokensPerContextToken` for every
/// context token the decodes read. `RooflineCostModel.stallFreeBudget` derives both from a model and a
/// GPU.
public struct StallFreeBudget: Sendable, Equatable {
    /// Tokens a step may carry when its decodes read no KV.
    public var baseTokens: Int
    /// Extra tokens per context token read by the step's decodes.
    public var tokensPerContextToken: Double

    public init(baseTokens: Int, tokensPerContextToken: Double = 0) {
        self.baseTokens = baseTokens
        self.tokensPerContextToken = tokensPerContextToken
    }

    /// Tokens (decodes plus prefill) a step may carry when its decodes read `decodeContextTokens`. O(1).
    @inlinable
    public func tokens(decodeContextTokens: Int) -> Int {
        baseTokens + Int(tokensPerContextToken * Double(decodeContextTokens))
    }
}
