import KVCache
import KVPlan

/// The reference engine as a `KVEngine`: it executes the step plans of a scheduler that drives its
/// cache manager (`Scheduler(config:cache: engine.cache)`), the same plans the modelled engine prices.
///
/// A request's prompt is registered with `plan(_:prompt:)` when it is submitted (as `.tokens(prompt)`);
/// `execute` then performs the manager's block copies, computes each prefill chunk and each decode
/// through the sequence's block table, and samples greedily where the plan samples. It does not commit:
/// the scheduler commits at `complete`, to which the returned tokens go as `tokenIDs`. Tiers are the
/// serving loop's: with `attachTiers` and `ServingLoop(..., tiers: ServingTiers(tiers:))` over the same
/// `KVTierManager`, prefix loads need nothing here (the loop's `TierPrefixSource` has put the bytes in
/// place before the step) and evicted blocks are copied down before `execute` writes them.
/// Cost: the model's per token; allocates the token slices it computes. A failed step leaves the
/// planned sequences' KV partly written and uncommitted: the caller abandons the run.
extension ReferenceEngine: KVEngine {
    /// Sampled tokens, in the order of `StepPlan.samplerCount`: sampling prefills, then decodes.
    public typealias StepOutcome = [UInt32]

    /// Registers the prompt of sequence `id`, which a scheduler will plan.
    public func plan(_ id: SequenceID, prompt: [UInt32]) { planned[id] = prompt }

    /// Forgets sequence `id` (finished or abandoned); returns its tokens, prompt then sampled.
    @discardableResult
    public func forget(_ id: SequenceID) -> [UInt32] { planned.removeValue(forKey: id) ?? [] }

    public func execute(_ plan: StepPlan) throws(EngineError) -> [UInt32] {
        performCopies()
        var sampled: [UInt32] = []
        sampled.reserveCapacity(plan.samplerCount)
        var sampler = Sampler.greedy
        for p in plan.prefills {
            guard let tokens = planned[p.id], p.contextBefore + p.tokens <= tokens.count else {
                throw .cache("\(p.id) is not planned with \(p.contextBefore + p.tokens) tokens")
            }
            var done = p.contextBefore
            while done < p.contextBefore + p.tokens {
                let end = min(p.contextBefore + p.tokens, done + prefillChunkTokens)
                try compute(p.id, tokens: Array(tokens[done ..< end]), startPosition: done, mode: .prefill, commit: false)
                done = end
            }
            if p.samples { sampled.append(sample(p.id, &sampler)) }
        }
        for d in plan.decodes {
            guard let tokens = planned[d.id], tokens.count == d.context + 1 else {
                throw .cache("\(d.id) is not planned with \(d.context + 1) tokens")
            }
            try compute(d.id, tokens: [tokens[d.context]], startPosition: d.context, mode: .decode, commit: false)
            sampled.append(sample(d.id, &sampler))
        }
        return sampled
    }

    /// Samples the next token of `id` from the last computed logits and appends it to its tokens.
    private func sample(_ id: SequenceID, _ sampler: inout Sampler) -> UInt32 {
        let token = lastLogits.withUnsafeBufferPointer { sampler.sample($0) }
        planned[id]!.append(token)
        return token
    }
}
