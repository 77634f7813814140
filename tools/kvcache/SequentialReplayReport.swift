import KVData

/// The call-wide fields of `kvcache replay --json` in sequential mode (schema: docs/REPORT_SCHEMA.md).
struct SequentialReplayHeader: Encodable {
    var mode = "sequential"
    var trace: String
    var range: String
    var warmUp: Bool
    var badLines: Int
    var blockTokens: Int
    var cpuBlocks: Int
    var diskBlocks: Int
    var costModel: String
    var recomputeSPerToken: Double
    var recomputeSPerContextPair: Double
}

/// One policy at one capacity of a sequential replay. Hit tokens by tier: L1 the device pool, L2 host
/// memory, L3 disk (`hit_tokens` is their sum). `occupancy` samples the blocks each tier holds during
/// the replay (tiered runs only, about 100 samples; empty otherwise).
struct SequentialRunReport: Encodable {
    var policy: String
    var capacityBlocks: Int
    var requests: Int
    var inputTokens: Int
    var hitTokens: Int
    var shareOfBelady: ReportNumber
    var hitTokensL1: Int
    var hitTokensL2: Int
    var hitTokensL3: Int
    var tokenHitRate: Double
    var savedPrefillS: Double
    var savedPrefillModelled = true
    var evictedBlocks: Int
    var peakBlocks: Int
    var mismatchedBlocks: Int
    var wallS: Double
    var occupancy: [TierOccupancySample]
}

/// The blocks each tier holds after `request` requests of a run.
struct TierOccupancySample: Encodable {
    var request: Int
    var l1Blocks: Int
    var l2Blocks: Int
    var l3Blocks: Int
}

/// One request of a sequential run, a line of `--requests-out`.
struct SequentialRequestRecord: Encodable {
    var policy: String
    var capacityBlocks: Int
    var index: Int
    var inputTokens: Int
    var hitTokens: Int
}
