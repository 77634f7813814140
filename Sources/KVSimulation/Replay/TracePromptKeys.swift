import KVCache

/// Turns a trace request's prefix information into the cache's block keys.
///
/// - With hash ids (Mooncake, ShareGPT history): a hash id names a whole prefix up to and including
///   its block, so cache block `k` (of `blockTokens`) gets the key mixed from the hash id that covers
///   it and `k`. Only full cache blocks inside the prompt get keys. `hashBlockTokens` must be a
///   multiple of `blockTokens` for sharing to be exact; otherwise blocks straddling two ids are keyed by
///   the later id (shared only when both ids agree).
/// - Without (Azure, Vidur, BurstGPT): keys unique to the request, so its blocks are cached like a
///   real engine's (a preempted request that comes back hits its own surviving blocks) but never shared
///   with other requests.
///
/// O(prompt blocks); allocates the returned array.
public enum TracePromptKeys {
    public static func keys(for request: TraceRequest, index: Int, blockTokens: Int) -> [BlockKey] {
        let blocks = request.inputTokens / blockTokens
        var keys: [BlockKey] = []
        keys.reserveCapacity(blocks)
        if !request.hashIDs.isEmpty && request.hashBlockTokens > 0 {
            for k in 0..<blocks {
                let lastToken = (k + 1) * blockTokens - 1
                let h = lastToken / request.hashBlockTokens
                guard h < request.hashIDs.count else { break }
                keys.append(mix(request.hashIDs[h], UInt64(k), salt: 0x5eed_0001))
            }
        } else {
            let own = UInt64(index) | (1 << 62)
            for k in 0..<blocks { keys.append(mix(own, UInt64(k), salt: 0x5eed_0002)) }
        }
        return keys
    }

    /// A 128-bit key from two words (SplitMix64 finalizers); never the zero key.
    static func mix(_ a: UInt64, _ b: UInt64, salt: UInt64) -> BlockKey {
        func fmix(_ x: UInt64) -> UInt64 {
            var z = x &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let lo = fmix(a ^ fmix(b ^ salt))
        let hi = fmix(lo ^ a &+ salt) | 1
        return BlockKey(lo: lo, hi: hi)
    }
}
