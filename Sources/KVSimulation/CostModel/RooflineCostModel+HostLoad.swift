extension RooflineCostModel {
    /// Modelled seconds per token to load KV from host memory: the slope of a host-link copy on
    /// `stepSeconds` (the fixed step overhead left out). O(1).
    public var hostLoadSecondsPerToken: Double {
        let probe = 1 << 16
        var one = StepWork(), two = StepWork()
        one.hostTransferBytes = kvBytes(tokens: probe)
        two.hostTransferBytes = kvBytes(tokens: 2 * probe)
        return (stepSeconds(two) - stepSeconds(one)) / Double(probe)
    }
}
