/// The modelled time to recompute KV that is not cached, as two marginal prefill costs: every token
/// pays `secondsPerToken` (the linear layers), and every query-key pair causal attention visits pays
/// `secondsPerContextPair`. A block of `t` tokens after `c` cached tokens visits `t x (c + (t + 1) / 2)`
/// pairs, so a block deeper in a prefix costs more: this is what makes PGDSF prefix-aware.
///
/// The core knows no model, so it has no default: the caller that knows the model and the GPU supplies
/// both marginals (`KVSimulation`'s `RooflineCostModel.recomputeCost` derives them for any preset; for
/// Llama-3-8B on one H100 they are 2.706e-5 s per token and 1.325e-9 s per pair). Only their ratio
/// changes PGDSF's eviction order; their scale sets the unit of its priorities (seconds).
public struct RecomputeCost: Sendable, Equatable {
    /// Seconds per recomputed token (linear layers), >= 0.
    public let secondsPerToken: Double
    /// Seconds per (recomputed token x token it attends to), >= 0.
    public let secondsPerContextPair: Double

    /// Throws `invalidArgument` if either cost is negative, NaN or infinite.
    public init(secondsPerToken: Double, secondsPerContextPair: Double) throws(KVCacheError) {
        guard secondsPerToken.isFinite, secondsPerToken >= 0,
              secondsPerContextPair.isFinite, secondsPerContextPair >= 0 else {
            throw .invalidArgument("recompute costs must be finite and >= 0, got \(secondsPerToken) s/token, \(secondsPerContextPair) s/pair")
        }
        self.secondsPerToken = secondsPerToken
        self.secondsPerContextPair = secondsPerContextPair
    }

    /// Modelled seconds to recompute `tokens` tokens that follow `contextBefore` cached tokens. O(1).
    @inlinable
    public func seconds(tokens: Int, contextBefore: Int) -> Double {
        let t = Double(max(0, tokens))
        let pairs = t * (Double(max(0, contextBefore)) + (t + 1) / 2)
        return secondsPerToken * t + secondsPerContextPair * pairs
    }

    /// Modelled seconds to recompute a whole prefix of `tokens` tokens: what a prefix hit of that
    /// length saves. Equals the sum of `seconds` over the prefix's blocks. O(1).
    @inlinable
    public func prefixSeconds(tokens: Int) -> Double { seconds(tokens: tokens, contextBefore: 0) }
}
