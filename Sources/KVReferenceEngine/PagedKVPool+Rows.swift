import KVCache
import KVChunks

extension PagedKVPool {
    /// Copies the K and V of `count` consecutive token positions, every layer, from `source` (positions
    /// `sourceStart...` through `sourceTable`) to this pool (positions `targetStart...` through
    /// `targetTable`), turning the keys by `rotateBy` positions with `rotator` on the way (PIE: a chunk's
    /// cached KV placed at a new position). Pools of different block sizes work; the copy goes by runs of
    /// rows that stay inside one block on both sides. O(count x layers x kvWidth), no allocation.
    /// - Precondition: both pools have this geometry's layers, KV heads and head dim, and the tables cover
    ///   the positions with valid blocks (callers check these, as `forward` does).
    public func copyRows(from source: PagedKVPool, sourceTable: [BlockID], sourceStart: Int,
                         to targetTable: [BlockID], targetStart: Int, count: Int,
                         rotateBy delta: Int = 0, rotator: RopeRotator? = nil) {
        precondition(source.layers == layers && source.kvHeads == kvHeads && source.headDim == headDim, "pool shapes differ")
        precondition(delta == 0 || rotator != nil, "rotating keys needs a rotator")
        let kvW = kvHeads * headDim
        let sbt = source.blockTokens, tbt = blockTokens
        var done = 0
        while done < count {
            let s = sourceStart + done, t = targetStart + done
            let run = min(count - done, sbt - s % sbt, tbt - t % tbt)
            let sb = sourceTable[s / sbt], tb = targetTable[t / tbt]
            for l in 0 ..< layers {
                let k = pointer(block: tb, layer: l, value: false) + (t % tbt) * kvW
                k.update(from: source.pointer(block: sb, layer: l, value: false) + (s % sbt) * kvW, count: run * kvW)
                (pointer(block: tb, layer: l, value: true) + (t % tbt) * kvW)
                    .update(from: source.pointer(block: sb, layer: l, value: true) + (s % sbt) * kvW, count: run * kvW)
                if delta != 0 { rotator!.rotate(k, count: run * kvHeads, stride: headDim, by: delta) }
            }
            done += run
        }
    }
}
