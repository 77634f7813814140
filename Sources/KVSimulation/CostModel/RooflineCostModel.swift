import KVCache
import KVScheduler

/// Prices an engine step from a model and a GPU with a roofline: a step takes the longer of its
/// compute time and its memory time, plus tensor-parallel communication and a fixed step overhead.
///
/// - Compute: `2 x activeParameters` FLOPs per token through the weights (the prefill part is
///   compute-bound) plus the attention term `4 x attentionLayers x d x pairs`, where `pairs` counts the
///   query-key pairs causal attention visits (quadratic in context for prefill, linear for decode).
/// - Memory: the weights are read once per step; decode reads every running sequence's KV; prefill
///   reads its earlier context's KV and writes its new KV; Mamba layers read and write their fixed
///   state per sequence. Decode is bandwidth-bound.
/// - Tensor parallel: FLOPs, weights and KV split over `tensorParallel` GPUs; two ring all-reduces of
///   the hidden state per layer cross the GPU interconnect.
///
/// Every figure it returns is a modelled time (seconds), not a measurement.
public struct RooflineCostModel: Sendable {
    /// How far real kernels fall short of the datasheet. Defaults, and where they come from:
    /// - `linearFlops` 0.60: dense GEMMs in large prefill batches reach 55-70% of bf16 peak on
    ///   A100/H100 (vLLM and Sarathi-Serve prefill profiles);
    /// - `attentionFlops` 0.40: FlashAttention-2 reaches 35-50% of peak on H100;
    /// - `memoryBandwidth` 0.80: decode GEMV and paged-attention kernels stream at 75-85% of HBM peak;
    /// - `hostLink` 0.80 and `interconnect` 0.70: achieved over datasheet PCIe/NVLink for large copies;
    /// - `stepOverheadSeconds` 0.5 ms: scheduling, sampling and launch cost per step with CUDA graphs;
    /// - `allReduceLatencySeconds` 8 us: per all-reduce on NVLink.
    public struct Efficiency: Sendable, Equatable {
        public var linearFlops: Double = 0.60
        public var attentionFlops: Double = 0.40
        public var memoryBandwidth: Double = 0.80
        public var hostLink: Double = 0.80
        public var interconnect: Double = 0.70
        public var stepOverheadSeconds: Double = 0.0005
        public var allReduceLatencySeconds: Double = 8e-6
        public init() {}
    }

    public let model: ModelSpec
    public let hardware: HardwareSpec
    public let efficiency: Efficiency

    public init(model: ModelSpec, hardware: HardwareSpec, efficiency: Efficiency = Efficiency()) {
        self.model = model
        self.hardware = hardware
        self.efficiency = efficiency
    }

    /// GPU memory left for the KV cache after the weights, at `utilization` of HBM (vLLM's
    /// `gpu_memory_utilization`, 0.9), over all tensor-parallel GPUs. Activations are not modelled.
    public func kvBytesAvailable(utilization: Double = 0.9) -> Double {
        max(0, hardware.memoryBytes * utilization * Double(model.tensorParallel) - model.weightBytes)
    }

    /// Modelled seconds to recompute one prompt token, as part of a `chunk`-token prefill after
    /// `contextBefore` cached tokens: what a lower tier's load must beat (`LoadOrRecompute`). O(1).
    public func prefillSecondsPerToken(chunk: Int = 512, contextBefore: Int = 0) -> Double {
        var work = StepWork()
        work.addPrefill(tokens: chunk, contextBefore: contextBefore)
        return stepSeconds(work) / Double(chunk)
    }

    /// The marginal prefill costs of this model on this GPU, for cost-aware eviction (PGDSF) and for
    /// pricing prefix hits: per token, the linear layers' FLOPs (`2 x activeParameters`); per
    /// query-key pair, the attention FLOPs (`4 x attentionLayers x d`), each at its compute
    /// efficiency and split over the tensor-parallel GPUs. These are the compute-bound slopes of
    /// `stepSeconds` for a large prefill (a recompute is one); the fixed step overhead and the weight
    /// read are shared by the whole batch and left out. O(1).
    public var recomputeCost: RecomputeCost {
        let tp = Double(model.tensorParallel)
        let perToken = 2 * model.activeParameters / (hardware.peakFlops * tp * efficiency.linearFlops)
        let perPair = 4 * Double(model.attentionLayers) * Double(model.attentionWidth)
            / (hardware.peakFlops * tp * efficiency.attentionFlops)
        // Both are finite and > 0 for any preset (positive FLOPs and peaks); a spec with a zero peak
        // would price recomputation as free rather than trap.
        let finite = { (x: Double) in x.isFinite && x >= 0 ? x : 0 }
        // Valid by construction: both arguments are finite and >= 0.
        return try! RecomputeCost(secondsPerToken: finite(perToken), secondsPerContextPair: finite(perPair))
    }

    /// The modelled duration of `work` in seconds; 0 for an empty step. O(1).
    public func stepSeconds(_ work: StepWork) -> Double {
        if work.isEmpty { return 0 }
        let tp = Double(model.tensorParallel)
        let d = Double(model.attentionWidth)
        let attnLayers = Double(model.attentionLayers)
        let kvPerToken = Double(model.kvBytesPerToken)
        let tokens = Double(work.batchedTokens)

        let linearFlops = 2 * model.activeParameters * tokens
        let attentionFlops = 4 * attnLayers * d * (work.prefillAttentionPairs + Double(work.decodeContextTokens))
        let computeSeconds = linearFlops / (hardware.peakFlops * tp * efficiency.linearFlops)
            + attentionFlops / (hardware.peakFlops * tp * efficiency.attentionFlops)

        var bytes = work.batchedTokens > 0 ? model.weightBytes : 0
        bytes += kvPerToken * Double(work.decodeContextTokens + work.prefillContextTokens + work.batchedTokens)
        bytes += 2 * model.stateBytesPerSequence * Double(work.sequences)
        let memorySeconds = bytes / (hardware.memoryBandwidth * tp * efficiency.memoryBandwidth)

        var commSeconds = 0.0
        if model.tensorParallel > 1 && work.batchedTokens > 0 {
            let perAllReduce = tokens * Double(model.hiddenSize * model.bytesPerElement) * 2 * (tp - 1) / tp
            let count = 2 * Double(model.layers)
            commSeconds = count * (perAllReduce / (hardware.interconnectBandwidth * efficiency.interconnect)
                                   + efficiency.allReduceLatencySeconds)
        }
        let transferSeconds = work.hostTransferBytes / (hardware.hostLinkBandwidth * tp * efficiency.hostLink)
        let gpuSeconds = work.batchedTokens > 0 ? max(computeSeconds, memorySeconds) + commSeconds + efficiency.stepOverheadSeconds : 0
        return gpuSeconds + transferSeconds
    }

    /// The stall-free budget of a mixed step on this model and GPU (`SchedulerConfig.stallFree`): the
    /// fewest tokens at which the linear layers' compute time catches up with reading the weights
    /// (rounded up to a multiple of `multiple`; about 220 tokens for a bf16 model on H100, 120 on A100),
    /// plus, per context token the decodes read, the tokens whose compute fits in that KV read's time
    /// less its attention compute. Below the budget a step is bound by memory and extra prefill tokens
    /// cost almost nothing. O(1).
    public func stallFreeBudget(multiple: Int = 1) -> StallFreeBudget {
        let compute = recomputeCost   // seconds per token through the weights, per query-key pair
        let bandwidth = hardware.memoryBandwidth * Double(model.tensorParallel) * efficiency.memoryBandwidth
        let tokens = max(1, Int((model.weightBytes / bandwidth / compute.secondsPerToken).rounded(.up)))
        let m = max(1, multiple)
        let readSeconds = Double(model.kvBytesPerToken) / bandwidth
        return StallFreeBudget(baseTokens: (tokens + m - 1) / m * m,
                               tokensPerContextToken: max(0, readSeconds - compute.secondsPerContextPair)
                                   / compute.secondsPerToken)
    }

    /// KV bytes of `tokens` tokens.
    public func kvBytes(tokens: Int) -> Double { Double(tokens) * Double(model.kvBytesPerToken) }
}
