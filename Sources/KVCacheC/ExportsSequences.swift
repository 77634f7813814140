import CKVCache
import KVCache

// The per-request calls of a scheduler step (see kvcache.h for the contract of each). Each one is a
// thin shim over the facade: check pointers and lengths, borrow the caller's buffers, call the
// facade, write the out-parameters. None allocates beyond what the facade itself does.

/// kvcache_add_sequence: borrows the caller's token ids; converts multimodal items (allocates
/// only when there are some). O(tokens).
@_cdecl("kvcache_add_sequence")
public func kvcacheAddSequenceImpl(_ cache: OpaquePointer?, _ id: Int64, _ tokens: UnsafePointer<UInt32>?,
                                   _ nTokens: Int, _ salt: UnsafePointer<CChar>?, _ lora: UnsafePointer<CChar>?,
                                   _ items: UnsafePointer<kvcache_multimodal_item>?, _ nItems: Int) -> kvcache_status {
    withHandle(cache, "kvcache_add_sequence") { (h) throws(CAPIError) in
        guard nTokens <= KVCacheManager.maxSequenceTokens else {   // a size_t above Int.max is negative here
            throw .invalidArgument("n_tokens is above KVCACHE_MAX_SEQUENCE_TOKENS")
        }
        let prompt = try inputBuffer(tokens, nTokens, "tokens")
        let spans = try inputBuffer(items, nItems, "items")
        let salt = try utf8String(salt, "salt")
        let lora = try utf8String(lora, "lora")
        var multimodal: [MultimodalItem] = []
        if !spans.isEmpty {
            multimodal.reserveCapacity(spans.count)
            for item in spans {
                multimodal.append(MultimodalItem(hash: BlockKey(item.hash), start: Int(item.start), length: Int(item.length)))
            }
        }
        try lift { () throws(KVCacheError) in
            try h.manager.addSequence(SequenceID(id), prompt: prompt, salt: salt, lora: lora, multimodal: multimodal)
        }
    }
}

/// kvcache_add_sequence_keys: borrows the caller's keys (same layout as `BlockKey`). O(keys).
@_cdecl("kvcache_add_sequence_keys")
public func kvcacheAddSequenceKeysImpl(_ cache: OpaquePointer?, _ id: Int64, _ keys: UnsafePointer<kvcache_key>?,
                                       _ nKeys: Int, _ promptTokens: Int64) -> kvcache_status {
    withHandle(cache, "kvcache_add_sequence_keys") { (h) throws(CAPIError) in
        // Refused before the keys are read, and without multiplying: n_keys may be any size_t.
        guard nKeys <= KVCacheManager.maxSequenceTokens / h.manager.config.blockTokens else {
            throw .invalidArgument("n_keys x block_tokens is above KVCACHE_MAX_SEQUENCE_TOKENS")
        }
        let keys = try inputBuffer(keys, nKeys, "keys")
        try BlockKey.borrowing(keys) { (k) throws(CAPIError) in
            try lift { () throws(KVCacheError) in
                try h.manager.addSequence(SequenceID(id), promptKeys: k, promptTokens: Int(promptTokens))
            }
        }
    }
}

/// kvcache_lookup. O(matched blocks).
@_cdecl("kvcache_lookup")
public func kvcacheLookupImpl(_ cache: OpaquePointer?, _ id: Int64,
                              _ out: UnsafeMutablePointer<kvcache_prefix_hit>?) -> kvcache_status {
    withHandle(cache, "kvcache_lookup") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        let hit = try lift { () throws(KVCacheError) in try h.manager.lookup(SequenceID(id)) }
        out.pointee = kvcache_prefix_hit(cached_blocks: Int64(hit.cachedBlocks), cached_tokens: Int64(hit.cachedTokens))
    }
}

/// kvcache_match_length. O(matched keys).
@_cdecl("kvcache_match_length")
public func kvcacheMatchLengthImpl(_ cache: OpaquePointer?, _ keys: UnsafePointer<kvcache_key>?, _ nKeys: Int,
                                   _ out: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(cache, "kvcache_match_length") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        let keys = try inputBuffer(keys, nKeys, "keys")
        out.pointee = BlockKey.borrowing(keys) { h.manager.matchLength($0) }
    }
}

/// kvcache_allocate: a refusal is reported through `out` and the status, with nothing changed.
/// O(new blocks x log cached).
@_cdecl("kvcache_allocate")
public func kvcacheAllocateImpl(_ cache: OpaquePointer?, _ id: Int64, _ newTokens: Int64, _ lookahead: Int64,
                                _ out: UnsafeMutablePointer<kvcache_allocation>?) -> kvcache_status {
    withHandle(cache, "kvcache_allocate") { (h) throws(CAPIError) in
        let out = try required(out, "out")
        let outcome = try lift { () throws(KVCacheError) in
            try h.manager.allocate(SequenceID(id), newTokens: Int(newTokens), lookahead: Int(lookahead))
        }
        switch outcome {
        case .allocated(let n):
            out.pointee = kvcache_allocation(new_blocks: Int64(n), needed_blocks: 0, available_blocks: 0)
        case .insufficientBlocks(let needed, let available):
            out.pointee = kvcache_allocation(new_blocks: 0, needed_blocks: Int64(needed), available_blocks: Int64(available))
            throw .cache(.insufficientBlocks(needed: needed, available: available))
        }
    }
}

/// kvcache_commit. O(new full blocks x log cached).
@_cdecl("kvcache_commit")
public func kvcacheCommitImpl(_ cache: OpaquePointer?, _ id: Int64, _ computedTokens: Int64) -> kvcache_status {
    withHandle(cache, "kvcache_commit") { (h) throws(CAPIError) in
        try lift { () throws(KVCacheError) in try h.manager.commit(SequenceID(id), computedTokens: Int(computedTokens)) }
    }
}

/// kvcache_append_tokens: borrows the caller's token ids. O(tokens).
@_cdecl("kvcache_append_tokens")
public func kvcacheAppendTokensImpl(_ cache: OpaquePointer?, _ id: Int64, _ tokens: UnsafePointer<UInt32>?,
                                    _ nTokens: Int) -> kvcache_status {
    withHandle(cache, "kvcache_append_tokens") { (h) throws(CAPIError) in
        let tokens = try inputBuffer(tokens, nTokens, "tokens")
        try lift { () throws(KVCacheError) in try h.manager.append(SequenceID(id), tokens: tokens) }
    }
}

/// kvcache_append_count. O(1).
@_cdecl("kvcache_append_count")
public func kvcacheAppendCountImpl(_ cache: OpaquePointer?, _ id: Int64, _ count: Int64) -> kvcache_status {
    withHandle(cache, "kvcache_append_count") { (h) throws(CAPIError) in
        try lift { () throws(KVCacheError) in try h.manager.append(SequenceID(id), count: Int(count)) }
    }
}

/// kvcache_free_sequence. O(blocks x log cached).
@_cdecl("kvcache_free_sequence")
public func kvcacheFreeSequenceImpl(_ cache: OpaquePointer?, _ id: Int64) -> kvcache_status {
    withHandle(cache, "kvcache_free_sequence") { (h) throws(CAPIError) in
        try lift { () throws(KVCacheError) in try h.manager.free(SequenceID(id)) }
    }
}

/// kvcache_fork. O(blocks).
@_cdecl("kvcache_fork")
public func kvcacheForkImpl(_ cache: OpaquePointer?, _ parent: Int64, _ child: Int64) -> kvcache_status {
    withHandle(cache, "kvcache_fork") { (h) throws(CAPIError) in
        try lift { () throws(KVCacheError) in try h.manager.fork(SequenceID(parent), into: SequenceID(child)) }
    }
}

extension BlockKey {
    init(_ key: kvcache_key) { self.init(lo: key.lo, hi: key.hi) }

    /// Lends the caller's C keys as `BlockKey`s without copying them: both are two `UInt64`s, low
    /// half first (a Swift struct of trivial stored properties is laid out in declaration order).
    @inline(__always)
    static func borrowing<R, E: Error>(_ keys: UnsafeBufferPointer<kvcache_key>,
                                       _ body: (UnsafeBufferPointer<BlockKey>) throws(E) -> R) throws(E) -> R {
        precondition(MemoryLayout<BlockKey>.size == MemoryLayout<kvcache_key>.size
            && MemoryLayout<BlockKey>.offset(of: \.hi) == 8, "BlockKey no longer matches kvcache_key")  // folded at compile time
        guard let base = keys.baseAddress else { return try body(UnsafeBufferPointer(start: nil, count: 0)) }
        return try UnsafeRawPointer(base).withMemoryRebound(to: BlockKey.self, capacity: keys.count) { (p) throws(E) -> R in
            try body(UnsafeBufferPointer(start: p, count: keys.count))
        }
    }
}
