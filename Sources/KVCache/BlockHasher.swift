import CXXHash

/// Computes chained, salted block keys with XXH3-128 (libxxhash).
///
/// Specification (docs/BLOCK_KEYS.md has the byte layout and test vectors):
/// - The chain starts at a *root key* = XXH3_128("kvcache-root-v1" 0x00 namespace 0x00 lora 0x00 salt),
///   the three strings UTF-8 encoded. Model/namespace, LoRA adapter and the tenant's cache salt enter the
///   chain here, so every later key depends on them: tenants with different salts never share a block.
/// - Block i's key = XXH3_128(parent.lo, parent.hi as 2 x UInt64 little-endian ‖ the block's token ids as
///   UInt32 little-endian ‖ one 24-byte record per multimodal item overlapping the block:
///   item hash lo, item hash hi, offset of the block's first token relative to the item's first token as
///   Int64, all little-endian), seed 0. The parent of block 0 is the root key.
/// - No random seed anywhere: keys are the same in every process and on every machine.
///
/// Only full blocks get keys. Cost: one XXH3-128 over 16 + 4 x blockTokens bytes per block, no heap
/// allocation at any block size: inputs of up to `oneShotBytes` are assembled in a stack buffer and
/// hashed in one call; longer ones (blocks of 253 tokens and more) stream the parent, the token array in
/// place and the multimodal records through an XXH3 state kept on the stack (the same digest).
public struct BlockHasher: Sendable {
    public let blockTokens: Int

    public init(blockTokens: Int) {
        precondition(blockTokens >= 1 && blockTokens <= 1024, "blockTokens must be in 1...1024")
        self.blockTokens = blockTokens
    }

    /// The key that starts every chain for this namespace, adapter and salt.
    public static func rootKey(namespace: String = "", lora: String = "", salt: String = "") -> BlockKey {
        // Assembled in a stack buffer: adding a sequence allocates nothing here.
        let size = 15 + namespace.utf8.count + lora.utf8.count + salt.utf8.count + 3
        return withUnsafeTemporaryAllocation(byteCount: size, alignment: 1) { buf in
            var offset = 0
            func put(_ text: String, separator: Bool) {
                if separator { buf[offset] = 0; offset += 1 }
                for byte in text.utf8 { buf[offset] = byte; offset += 1 }
            }
            put("kvcache-root-v1", separator: false)
            put(namespace, separator: true)
            put(lora, separator: true)
            put(salt, separator: true)
            return hash128(UnsafeRawBufferPointer(buf))
        }
    }

    /// The key of one full block. O(blockTokens), no allocation.
    /// - Precondition: `tokens.count == blockTokens`.
    @inlinable
    public func key(parent: BlockKey, tokens: UnsafeBufferPointer<UInt32>,
                    multimodal: UnsafeBufferPointer<MultimodalExtra> = .init(start: nil, count: 0)) -> BlockKey {
        precondition(tokens.count == blockTokens, "only full blocks have keys")
        let size = 16 + 4 * blockTokens + 24 * multimodal.count
        guard size <= Self.oneShotBytes else {
            return Self.streamedKey(parent: parent, tokens: tokens, multimodal: multimodal)
        }
        return withUnsafeTemporaryAllocation(byteCount: size, alignment: 8) { buf in
            buf.storeBytes(of: parent.lo.littleEndian, toByteOffset: 0, as: UInt64.self)
            buf.storeBytes(of: parent.hi.littleEndian, toByteOffset: 8, as: UInt64.self)
            var offset = 16
            #if _endian(little)
            // Little-endian host: the token array's bytes already are the specified encoding.
            UnsafeMutableRawBufferPointer(rebasing: buf[offset ..< offset + 4 * blockTokens])
                .copyMemory(from: UnsafeRawBufferPointer(tokens))
            offset += 4 * blockTokens
            #else
            for t in tokens {
                buf.storeBytes(of: t.littleEndian, toByteOffset: offset, as: UInt32.self)
                offset += 4
            }
            #endif
            for m in multimodal {
                buf.storeBytes(of: m.hash.lo.littleEndian, toByteOffset: offset, as: UInt64.self)
                buf.storeBytes(of: m.hash.hi.littleEndian, toByteOffset: offset + 8, as: UInt64.self)
                buf.storeBytes(of: m.offset.littleEndian, toByteOffset: offset + 16, as: Int64.self)
                offset += 24
            }
            return Self.hash128(UnsafeRawBufferPointer(buf))
        }
    }

    /// Inputs up to this many bytes are hashed in one call from a stack buffer (the standard library
    /// keeps temporary allocations of up to 1 KiB on the stack and moves larger ones to the heap).
    @usableFromInline static var oneShotBytes: Int { 1024 }

    /// Bytes reserved on the stack for an `XXH3_state_t` (576 in libxxhash 0.8), plus room to align
    /// it to the 64 bytes its accumulators are declared with.
    @usableFromInline static var stateBytes: Int { 640 }

    /// The same key as the one-shot path, streamed: parent, tokens in place, then each multimodal
    /// record, through an XXH3 state on the stack. O(blockTokens), no allocation.
    @usableFromInline
    static func streamedKey(parent: BlockKey, tokens: UnsafeBufferPointer<UInt32>,
                            multimodal: UnsafeBufferPointer<MultimodalExtra>) -> BlockKey {
        precondition(kv_xxh3_state_size() <= stateBytes, "libxxhash's XXH3 state outgrew the stack reserve")
        return withUnsafeTemporaryAllocation(byteCount: stateBytes + 64, alignment: 16) { raw in
            let address = (UInt(bitPattern: raw.baseAddress!) + 63) & ~UInt(63)
            let state = OpaquePointer(bitPattern: address)!
            XXH3_128bits_reset(state)
            withUnsafeTemporaryAllocation(byteCount: 24, alignment: 8) { record in
                record.storeBytes(of: parent.lo.littleEndian, toByteOffset: 0, as: UInt64.self)
                record.storeBytes(of: parent.hi.littleEndian, toByteOffset: 8, as: UInt64.self)
                XXH3_128bits_update(state, record.baseAddress, 16)
                #if _endian(little)
                XXH3_128bits_update(state, UnsafeRawPointer(tokens.baseAddress), 4 * tokens.count)
                #else
                for t in tokens {
                    record.storeBytes(of: t.littleEndian, toByteOffset: 0, as: UInt32.self)
                    XXH3_128bits_update(state, record.baseAddress, 4)
                }
                #endif
                for m in multimodal {
                    record.storeBytes(of: m.hash.lo.littleEndian, toByteOffset: 0, as: UInt64.self)
                    record.storeBytes(of: m.hash.hi.littleEndian, toByteOffset: 8, as: UInt64.self)
                    record.storeBytes(of: m.offset.littleEndian, toByteOffset: 16, as: Int64.self)
                    XXH3_128bits_update(state, record.baseAddress, 24)
                }
            }
            let h = XXH3_128bits_digest(state)
            return BlockKey(lo: h.low64, hi: h.high64)
        }
    }

    /// Keys of every full block of `tokens`, appended to `keys` and chained from `parent`. The first
    /// full block of `tokens` is block number `firstBlock` of its sequence (this places multimodal
    /// items, given as token spans from the sequence start). O(tokens); allocates nothing beyond
    /// growing `keys`.
    public func appendKeys(of tokens: UnsafeBufferPointer<UInt32>, firstBlock: Int = 0, parent: BlockKey,
                           multimodal items: [MultimodalItem] = [], to keys: inout [BlockKey]) {
        var parent = parent
        let full = tokens.count / blockTokens
        keys.reserveCapacity(keys.count + full)
        for b in 0 ..< full {
            let slice = UnsafeBufferPointer(rebasing: tokens[b * blockTokens ..< (b + 1) * blockTokens])
            let start = (firstBlock + b) * blockTokens
            let overlapping = items.isEmpty ? 0 : items.reduce(0) {
                $0 + ($1.start < start + blockTokens && $1.start + $1.length > start ? 1 : 0)
            }
            let k: BlockKey
            if overlapping == 0 {
                k = key(parent: parent, tokens: slice)
            } else {
                k = withUnsafeTemporaryAllocation(of: MultimodalExtra.self, capacity: overlapping) { extras in
                    var n = 0
                    for item in items where item.start < start + blockTokens && item.start + item.length > start {
                        extras.initializeElement(at: n, to: MultimodalExtra(hash: item.hash,
                                                                             offset: Int64(start - item.start)))
                        n += 1
                    }
                    defer { extras.deinitialize() }
                    return key(parent: parent, tokens: slice, multimodal: UnsafeBufferPointer(extras))
                }
            }
            keys.append(k)
            parent = k
        }
    }

    /// XXH3_128bits with seed 0 over `bytes`.
    @usableFromInline
    static func hash128(_ bytes: UnsafeRawBufferPointer) -> BlockKey {
        let h = XXH3_128bits(bytes.baseAddress, bytes.count)
        return BlockKey(lo: h.low64, hi: h.high64)
    }
}

/// A multimodal input (image, audio clip) whose placeholder tokens occupy `length` positions from
/// `start` in the prompt; `hash` identifies its content.
public struct MultimodalItem: Hashable, Sendable {
    public var hash: BlockKey
    public var start: Int
    public var length: Int
    public init(hash: BlockKey, start: Int, length: Int) {
        self.hash = hash; self.start = start; self.length = length
    }
}

/// The per-block record of a multimodal item: its content hash and the block's offset into it.
public struct MultimodalExtra: Hashable, Sendable {
    public var hash: BlockKey
    public var offset: Int64
    public init(hash: BlockKey, offset: Int64) { self.hash = hash; self.offset = offset }
}
