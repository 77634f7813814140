/// The eviction and admission policies of the hybrid prefix cache.
///
/// `vllm+`, `sglang+` and `marconi-sim` reproduce the Marconi simulator (MLSys'25, its own behaviours
/// included, see the README's "Hybrid models" section); `marconi` is Marconi's admission and utility
/// with those defects fixed (freed bytes counted from the victim, the MLP parent term, the tree never
/// left over capacity); `adaptive` is the library's policy (`HybridCache.AdaptiveSettings`, re-tuned by
/// `HybridAlphaTuner`), the only one with the engine contract (`HybridCache.plan`).
public enum HybridPolicy: String, Sendable, CaseIterable {
    /// 32-token block nodes with a checkpoint each, LRU over leaf blocks.
    case vllmPlus = "vllm+"
    /// Marconi's tree and admission, LRU over leaves.
    case sglangPlus = "sglang+"
    /// Marconi as the reference simulator runs it.
    case marconiSim = "marconi-sim"
    /// Marconi with the simulator's defects fixed.
    case marconi
    /// Marconi's utility plus recurrence: branch checkpoints admitted when the branch recurs, superseded
    /// checkpoints dropped, hits served in the utility, its weights re-tuned online on shadow caches.
    case adaptive

    /// Whether the policy tunes alpha once, Marconi's way (`adaptive` re-tunes in windows instead).
    public var tunesAlpha: Bool { self == .marconiSim || self == .marconi }
}
