import KVCache
import KVTiers

/// The tiers' `LoadOrRecompute` rule for the modelled host tier, with both sides priced by
/// `RooflineCostModel` instead of measured bandwidths.
///
/// - Load: the step time of a step that only moves one block's KV bytes over the host link
///   (`blockTokens x kvBytesPerToken` at the hardware's host bandwidth x the host-link efficiency),
///   exactly as the modelled engine charges a load. It is the rule's host row: those bytes in that time.
/// - Recompute: the marginal prefill time of one more block's tokens in a prefill chunk of
///   `referenceChunkTokens` tokens starting at context 0 (the scheduler's token budget: the chunk size
///   a long prompt is computed in), given to the rule as a per-token cost. Context 0 leaves out attention
///   over earlier tokens, the cheapest recompute a block can have, so the rule errs on the side of not
///   loading.
///
/// Llama-3-8B on H100 with an 8192-token chunk: a 2 MiB block loads in 41 us, its 16 tokens recompute
/// in 0.61 ms.
/// O(1).
public struct HostTierAdmission: Sendable, Equatable {
    public let loadSecondsPerBlock: Double
    public let recomputeSecondsPerBlock: Double
    /// The rule with the modelled costs in it.
    public let rule: LoadOrRecompute
    private let blockBytes: Int
    private let blockTokens: Int

    public init(costModel: RooflineCostModel, blockTokens: Int, referenceChunkTokens: Int) {
        var load = StepWork()
        load.hostTransferBytes = costModel.kvBytes(tokens: blockTokens)
        loadSecondsPerBlock = costModel.stepSeconds(load)
        let base = max(1, referenceChunkTokens - blockTokens)
        var a = StepWork()
        var b = StepWork()
        a.addPrefill(tokens: base, contextBefore: 0)
        b.addPrefill(tokens: base + blockTokens, contextBefore: 0)
        recomputeSecondsPerBlock = costModel.stepSeconds(b) - costModel.stepSeconds(a)
        blockBytes = Int(load.hostTransferBytes)
        self.blockTokens = blockTokens
        let perToken = recomputeSecondsPerBlock / Double(max(1, blockTokens))
        let seconds = max(loadSecondsPerBlock, .leastNonzeroMagnitude)
        let host = LoadOrRecompute.Link(latencySeconds: 0, bytesPerSecond: Double(blockBytes) / seconds)
        rule = LoadOrRecompute(recompute: try? RecomputeCost(secondsPerToken: perToken, secondsPerContextPair: 0),
                               host: host)
    }

    /// True when a load is expected to be faster than recomputing the block (the rule at depth 0).
    public var loadsPay: Bool {
        rule.recompute != nil
            && rule.worthLoading(tier: .host, bytes: blockBytes, tokens: blockTokens, contextBefore: 0)
    }
}
