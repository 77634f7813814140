/// Why the reference engine refused a request. Invalid input leaves the engine and the pool unchanged.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    /// A token id is not in the vocabulary.
    case tokenOutOfRange(UInt32, vocabulary: Int)
    /// The request would run past the model's context length.
    case contextOverflow(tokens: Int, limit: Int)
    /// The block table is too short for the positions being computed, or names a block outside the pool.
    case badBlockTable(String)
    /// Nothing to compute.
    case emptyInput
    /// The pool cannot hold this request even after evicting everything unreferenced.
    case poolExhausted(needed: Int, available: Int)
    /// The cache manager rejected a call (its error, as text).
    case cache(String)
    /// The model file could not be loaded.
    case model(GGUFError)
    /// The model computed a NaN or infinite logit (its weights hold non-finite values): nothing
    /// sampled from it would mean anything. `position` is the token position whose logits were bad.
    case nonFiniteLogits(position: Int)
    /// A blended prefill (chunk reuse with selective recompute) was asked for positions, spans or check
    /// layers that cannot be right.
    case invalidBlend(String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(t, v): "token id \(t) is outside the vocabulary of \(v)"
        case let .contextOverflow(t, l): "\(t) tokens exceed the context length \(l)"
        case let .badBlockTable(why): "bad block table: \(why)"
        case .emptyInput: "no tokens to compute"
        case let .poolExhausted(n, a): "KV pool exhausted: \(n) blocks needed, \(a) available"
        case let .cache(why): "cache manager: \(why)"
        case let .model(e): e.description
        case let .nonFiniteLogits(p): "the model computed a NaN or infinite logit at position \(p) (non-finite weights?)"
        case let .invalidBlend(why): "invalid blended prefill: \(why)"
        }
    }
}
