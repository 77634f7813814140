import KVPlan

/// The modelled engine's `KVEngine`: executing a plan means pricing it. The plan's host-link copies
/// (swap-outs, swap-ins, prefix loads, `kvBytesPerBlock` each block) and its prefills and decodes go
/// into `work`, with the copies a tier below the pool reports for the step (`StepHostCopies`), and
/// `RooflineCostModel` turns that into the step's modelled seconds. Moves no bytes. O(plan),
/// allocates nothing: `work` is reused step after step.
public struct ModelledStep: KVEngine {
    public let costModel: RooflineCostModel
    /// Bytes of one KV block (all layers, all tensor-parallel GPUs).
    public let kvBytesPerBlock: Double
    /// The last executed plan's work (the event loop advances its decodes to price repeated steps).
    public private(set) var work = StepWork()
    /// Host-link copies made outside the plan's lists, charged to the step that drains them.
    public let copies: (any StepHostCopies)?

    public init(costModel: RooflineCostModel, kvBytesPerBlock: Double, copies: (any StepHostCopies)? = nil) {
        self.costModel = costModel
        self.kvBytesPerBlock = kvBytesPerBlock
        self.copies = copies
    }

    /// Returns the modelled seconds of `plan`'s step.
    public mutating func execute(_ plan: StepPlan) -> Double {
        work.reset()
        for p in plan.prefills { work.addPrefill(tokens: p.tokens, contextBefore: p.contextBefore) }
        for s in plan.swapOuts { work.hostTransferBytes += Double(s.blocks.count) * kvBytesPerBlock }
        for s in plan.swapIns { work.hostTransferBytes += Double(s.blocks.count) * kvBytesPerBlock }
        if copies?.reportsPrefixLoads != true {
            for l in plan.prefixLoads { work.hostTransferBytes += Double(l.blocks.count) * kvBytesPerBlock }
        }
        if let copies { work.hostTransferBytes += Double(copies.drainStepHostBlocks()) * kvBytesPerBlock }
        for d in plan.decodes { work.addDecode(context: d.context) }
        return costModel.stepSeconds(work)
    }
}

/// Copies over the host link that a tier below the device pool made for a step outside the plan's
/// lists: the `HostPrefixTier`'s write-backs of evicted blocks, a `ConversationRetention`'s host loads
/// and moves to the host. `ModelledStep` charges them to the step it executes.
public protocol StepHostCopies: AnyObject {
    /// Blocks copied since the last call.
    func drainStepHostBlocks() -> Int
    /// True when the plan's prefix loads come from this source, which counts the ones that cross the
    /// host link in `drainStepHostBlocks` (a retention's GPU chunks move nothing); the step then does
    /// not price them from the plan.
    var reportsPrefixLoads: Bool { get }
}
