import Foundation
import KVCache
import KVChunks
import KVPlan

/// Chunk reuse at any position on the reference model: caches chunks' KV in a `ChunkStore` (each computed
/// after a given prefix, with Cache-Craft's attention statistics) and executes `ChunkPrefillPlan`s, copying
/// each reused span into the prompt's pool, re-rotating its keys (PIE) and recomputing the selected tokens
/// over the mixed KV (CacheBlend).
///
/// The store's blocks index `storePool` (token t of a variant in block `t / blockTokens` of its block list).
/// A plan's `.highDeviation` budget is spent over the whole prompt: every non-exact reused token is a
/// candidate at the check layers of `checkLayers`, and the top ones by K/V deviation (`metric`) are kept,
/// with `gradualGrowth` times more kept at each earlier check (gradual filtering). Other selections name
/// their positions in the plan and are computed through every layer.
///
/// Single-threaded (BLAS uses the cores inside a call). Cost of `execute`: the span copies,
/// O(reused tokens x layers x kvWidth), plus `forwardSelected`. Failures throw `EngineError` (a store error
/// as `.invalidBlend`); the prompt's pool may then hold partial KV, which the next prefill overwrites.
public final class ChunkBlender {
    public let model: LlamaModel
    public var store: ChunkStore
    public let storePool: PagedKVPool
    public let rotator: RopeRotator
    /// CacheBlend's check layers, strictly ascending: layer 1 alone is its plain HKVD; the default, layers
    /// 1 and 2, filters gradually.
    public var checkLayers: [Int] = [1, 2]
    /// How many times more candidates each earlier check layer keeps than the next.
    public var gradualGrowth: Double = 2
    public var metric: DeviationCheck.Metric = .keyValue
    private let workspace = ForwardWorkspace()
    private var scratch: PagedKVPool?

    /// - Throws: `.cache` for a non-positive capacity or block size.
    public init(model: LlamaModel, capacityBlocks: Int, blockTokens: Int = 16, maxVariantsPerChunk: Int = 4) throws(EngineError) {
        guard capacityBlocks >= 1, blockTokens >= 1 else { throw .cache("capacity and block size must be positive") }
        self.model = model
        do { store = try ChunkStore(capacityBlocks: capacityBlocks, blockTokens: blockTokens, maxVariantsPerChunk: maxVariantsPerChunk) } catch {
            throw .cache(error.description)
        }
        storePool = PagedKVPool(config: model.config, blockTokens: blockTokens, capacityBlocks: capacityBlocks)
        let c = model.config
        do {
            rotator = RopeRotator(spec: try RopeSpec(base: Double(c.ropeBase), dims: c.ropeDims, headDim: c.headDim, layout: .adjacentPairs))
        } catch { throw .cache("\(error)") }
    }

    /// Computes `tokens`' KV right after `prefix` (at positions `prefix.count...`), as a cache would have
    /// kept it from an earlier request, and stores it as the variant of `key` computed after `context`
    /// (the prefix's key), with the share of each token's attention that went to prefix positions
    /// `statisticsFrom ..< prefix.count` (Cache-Craft's statistics). An existing variant of the same key and
    /// context is returned as it is. O(model x (prefix + tokens)).
    @discardableResult
    public func cache(_ key: ChunkKey, tokens: [UInt32], after prefix: [UInt32], context: BlockKey,
                      statisticsFrom: Int = 0) throws(EngineError) -> ChunkVariantID {
        guard !tokens.isEmpty, !prefix.isEmpty else { throw .emptyInput }
        guard (0 ..< prefix.count).contains(statisticsFrom) else { throw .invalidBlend("statistics start \(statisticsFrom) outside the prefix") }
        if let id = store.lookup(key, context: context), store.variant(id)?.context == context { return id }
        let p = prefix.count, total = p + tokens.count
        let bt = storePool.blockTokens
        let blocks = (total + bt - 1) / bt
        if scratch == nil || scratch!.capacityBlocks < blocks {
            scratch = PagedKVPool(config: model.config, blockTokens: bt, capacityBlocks: max(blocks, 2 * (scratch?.capacityBlocks ?? 0)))
        }
        let pool = scratch!
        let table = (0 ..< Int32(blocks)).map { BlockID($0) }
        _ = try model.forward(tokens: prefix, startPosition: 0, blockTable: table, pool: pool, workspace: workspace)
        let result = try model.forwardSelected(prompt: prefix + tokens, positions: Array(p ..< total),
                                               candidates: Array(repeating: false, count: tokens.count),
                                               recordOutside: statisticsFrom ..< p, blockTable: table, pool: pool, workspace: workspace)
        let id: ChunkVariantID, list: [BlockID]
        do {
            (id, list) = try store.insert(key, tokens: tokens.count, computedAt: p, context: context, tokenImpact: result.outsideAttention)
        } catch { throw .invalidBlend(error.description) }
        storePool.copyRows(from: pool, sourceTable: table, sourceStart: p, to: list, targetStart: 0, count: tokens.count)
        return id
    }

    /// What one executed plan did.
    public struct Outcome: Sendable {
        /// The next-token logits at the end of the prompt.
        public var logits: [Float]
        /// Reused tokens recomputed through the last layer.
        public var recomputedTokens: Int
        /// Prompt tokens computed through the last layer (fresh and recomputed).
        public var computedTokens: Int
    }

    /// Runs `plan` for `prompt` into `pool` through `blockTable`: the plan's prefix must already be there;
    /// reused spans are copied from the store and re-rotated, then the fresh ranges and the selected tokens
    /// are computed. The plan stays acquired (the caller releases it). `source` names another store and
    /// the pool its blocks index (a `TieredChunkStore`'s, whose chunks come back from host and disk); by
    /// default the blender's own.
    public func execute(_ plan: ChunkPrefillPlan, prompt: [UInt32], pool: PagedKVPool, blockTable: [BlockID],
                        source: (store: ChunkStore, pool: PagedKVPool)? = nil) throws(EngineError) -> Outcome {
        let (sourceStore, sourcePool) = source ?? (store, storePool)
        guard plan.promptTokens == prompt.count else { throw .invalidBlend("plan of \(plan.promptTokens) tokens for a prompt of \(prompt.count)") }
        guard !plan.fresh.isEmpty, plan.fresh.last!.upperBound == prompt.count else {
            throw .invalidBlend("the prompt must end with fresh tokens (the question)")
        }
        let bt = pool.blockTokens
        guard blockTable.count * bt >= prompt.count, blockTable.allSatisfy(pool.contains) else {
            throw .badBlockTable("the table does not cover \(prompt.count) positions of the pool")
        }
        var positions: [Int] = [], candidates: [Bool] = []
        var budget = 0, candidateCount = 0
        var marks = [UInt8](repeating: 0, count: prompt.count)   // 1 fresh, 2 candidate, 3 selected by the plan
        for f in plan.fresh { for p in f { marks[p] = 1 } }
        for span in plan.reused {
            let blocks: [BlockID]
            do { blocks = try sourceStore.blocks(of: span.variant) } catch { throw .invalidBlend(error.description) }
            pool.copyRows(from: sourcePool, sourceTable: blocks, sourceStart: 0, to: blockTable, targetStart: span.target.lowerBound,
                          count: span.target.count, rotateBy: span.rotateBy, rotator: rotator)
            if case .highDeviation = plan.selection, !span.exact {
                for p in span.target { marks[p] = 2 }
                budget += span.recomputeBudget
                candidateCount += span.target.count
            }
        }
        for p in plan.recompute { marks[p] = 3 }
        // All candidates kept is a full recompute of them; none kept is full reuse.
        let narrow = budget > 0 && budget < candidateCount
        for p in 0 ..< prompt.count where marks[p] == 1 || marks[p] == 3 || (marks[p] == 2 && budget > 0) {
            positions.append(p)
            candidates.append(marks[p] == 2 && narrow)
        }
        var check: DeviationCheck? = nil
        if narrow {
            let layers = checkLayers.filter { $0 < model.config.layers }
            guard !layers.isEmpty else { throw .invalidBlend("no check layer below \(model.config.layers)") }
            let keep = layers.indices.map { i in
                min(candidateCount, Int((Double(budget) * pow(gradualGrowth, Double(layers.count - 1 - i))).rounded(.up)))
            }
            check = DeviationCheck(layers: layers, keep: keep, metric: metric)
        }
        let result = try model.forwardSelected(prompt: prompt, positions: positions, candidates: candidates, check: check,
                                               blockTable: blockTable, pool: pool, workspace: workspace)
        let recomputed = result.computed.filter { marks[$0] >= 2 }.count
        return Outcome(logits: result.logits, recomputedTokens: recomputed, computedTokens: result.computed.count)
    }
}
