import KVCache
import KVData

/// Turns a trace request's prefix information into the cache's block keys: the one mapping of both
/// replay modes (sequential and timed), documented in `docs/BLOCK_KEYS.md` ("Keys from traces").
///
/// - With hash ids (Mooncake, ShareGPT history): a hash id names a whole prefix up to and including
///   its block, so cache block `k` (of `blockTokens`) gets the key mixed from the hash id that covers
///   its last token and `k`. `hashBlockTokens` must be a multiple of `blockTokens` for sharing to be
///   exact; otherwise blocks straddling two ids are keyed by the later id (shared only when both ids
///   agree). Only full cache blocks get keys, unless `partialLastBlock` (the sequential replay, whose
///   blocks are the trace's own: a partial last block is cached under its hash id, as the trace says).
/// - Without (Azure, Vidur, BurstGPT): keys unique to the request (its `index`), so its blocks are
///   cached like a real engine's (a preempted request that comes back hits its own surviving blocks)
///   but never shared with other requests.
///
/// Keys are `StableHash.mix` of the id, the block index and a salt, never the zero key.
/// O(prompt blocks); `append` allocates only when `keys` grows.
public enum TracePromptKeys {
    /// The keys of `request`'s prompt blocks (see the type's documentation).
    public static func keys(for request: TraceRequest, index: Int, blockTokens: Int) -> [BlockKey] {
        var keys: [BlockKey] = []
        keys.reserveCapacity(request.inputTokens / blockTokens)
        append(for: request, index: index, blockTokens: blockTokens, to: &keys)
        return keys
    }

    /// Appends the keys of `request`'s prompt blocks to `keys`.
    public static func append(for request: TraceRequest, index: Int, blockTokens: Int, partialLastBlock: Bool = false,
                              to keys: inout [BlockKey]) {
        let blocks = partialLastBlock ? (request.inputTokens + blockTokens - 1) / blockTokens
                                      : request.inputTokens / blockTokens
        if !request.hashIDs.isEmpty && request.hashBlockTokens > 0 {
            for k in 0..<blocks {
                let lastToken = min((k + 1) * blockTokens, request.inputTokens) - 1
                let h = lastToken / request.hashBlockTokens
                guard h < request.hashIDs.count else { break }
                keys.append(mix(request.hashIDs[h], UInt64(k), salt: 0x5eed_0001))
            }
        } else {
            let own = UInt64(index) | (1 << 62)
            for k in 0..<blocks { keys.append(mix(own, UInt64(k), salt: 0x5eed_0002)) }
        }
    }

    /// A 128-bit key from two words; never the zero key.
    static func mix(_ a: UInt64, _ b: UInt64, salt: UInt64) -> BlockKey {
        let lo = StableHash.mix(a ^ StableHash.mix(b ^ salt))
        let hi = StableHash.mix(lo ^ a &+ salt) | 1
        return BlockKey(lo: lo, hi: hi)
    }
}
