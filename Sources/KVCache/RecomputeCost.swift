/// The modelled time to recompute KV that is not cached, as two marginal prefill costs: every token
/// pays `secondsPerToken` (the linear layers), and every query-key pair causal attention visits pays
/// `secondsPerContextPair`. A block of `t` tokens after `c` cached tokens visits `t x (c + (t + 1) / 2)`
/// pairs, so a block deeper in a prefix costs more: this is what makes PGDSF prefix-aware.
///
/// The defaults are the compute-bound marginals of Llama-3-8B (bf16) on one H100 at the roofline
/// model's efficiencies (60% of peak for GEMMs, 40% for attention): 2 x 8.03e9 FLOPs per token over
/// 593 TFLOP/s, and 4 x 32 layers x 4,096 FLOPs per pair over 396 TFLOP/s. `KVSimulation`'s
/// `RooflineCostModel.recomputeCost` derives both for any model and GPU. Only their ratio changes
/// PGDSF's eviction order; their scale sets the unit of its priorities (seconds).
public struct RecomputeCost: Sendable, Equatable {
    /// Seconds per recomputed token (linear layers), >= 0.
    public let secondsPerToken: Double
    /// Seconds per (recomputed token x token it attends to), >= 0.
    public let secondsPerContextPair: Double

    /// Llama-3-8B on one H100 (see the type's comment).
    public static let `default` = RecomputeCost(uncheckedSecondsPerToken: 2.706e-5, secondsPerContextPair: 1.325e-9)

    /// Throws `invalidArgument` if either cost is negative, NaN or infinite.
    public init(secondsPerToken: Double, secondsPerContextPair: Double) throws(KVCacheError) {
        guard secondsPerToken.isFinite, secondsPerToken >= 0,
              secondsPerContextPair.isFinite, secondsPerContextPair >= 0 else {
            throw .invalidArgument("recompute costs must be finite and >= 0, got \(secondsPerToken) s/token, \(secondsPerContextPair) s/pair")
        }
        self.init(uncheckedSecondsPerToken: secondsPerToken, secondsPerContextPair: secondsPerContextPair)
    }

    private init(uncheckedSecondsPerToken: Double, secondsPerContextPair: Double) {
        secondsPerToken = uncheckedSecondsPerToken
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
