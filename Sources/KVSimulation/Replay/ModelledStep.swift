import KVPlan

/// The modelled engine's `KVEngine`: executing a plan means pricing it. The plan's host-link copies
/// (swap-outs, swap-ins, prefix loads, `kvBytesPerBlock` each block) and its prefills and decodes go
/// into `work`, and `RooflineCostModel` turns that into the step's modelled seconds. Moves no bytes.
/// O(plan), allocates nothing: `work` is reused step after step.
public struct ModelledStep: KVEngine {
    public let costModel: RooflineCostModel
    /// Bytes of one KV block (all layers, all tensor-parallel GPUs).
    public let kvBytesPerBlock: Double
    /// The last executed plan's work (the event loop advances its decodes to price repeated steps).
    public private(set) var work = StepWork()
    public let retention: ConversationRetention?

    public init(costModel: RooflineCostModel, kvBytesPerBlock: Double, retention: ConversationRetention? = nil) {
        self.costModel = costModel
        self.kvBytesPerBlock = kvBytesPerBlock
        self.retention = retention
    }

    /// Returns the modelled seconds of `plan`'s step.
    public mutating func execute(_ plan: StepPlan) -> Double {
        work.reset()
        for p in plan.prefills { work.addPrefill(tokens: p.tokens, contextBefore: p.contextBefore) }
        for s in plan.swapOuts { work.hostTransferBytes += Double(s.blocks.count) * kvBytesPerBlock }
        for s in plan.swapIns { work.hostTransferBytes += Double(s.blocks.count) * kvBytesPerBlock }
        if let retention {
            work.hostTransferBytes += Double(retention.drainStepHostBlocks()) * kvBytesPerBlock
        } else {
            for l in plan.prefixLoads { work.hostTransferBytes += Double(l.blocks.count) * kvBytesPerBlock }
        }
        for d in plan.decodes { work.addDecode(context: d.context) }
        return costModel.stepSeconds(work)
    }
}
