import CMsgpack
import KVCache

/// One reusable msgpack output buffer with msgpack-c's packer over it: what the event encoders write
/// through, so that no byte of msgpack is hand-written outside the shapes msgpack-c has no call for.
///
/// `clear` keeps the buffer's capacity: once the first messages have grown it, writing allocates
/// nothing. Each call is O(bytes written). Not thread-safe: one caller.
final class MsgpackWriter {
    private let buffer: UnsafeMutablePointer<msgpack_sbuffer>
    let packer: UnsafeMutablePointer<msgpack_packer>

    init() {
        // `keys` hands the keys to C as (low, high) pairs of 64-bit words.
        precondition(MemoryLayout<BlockKey>.offset(of: \BlockKey.lo) == 0 && MemoryLayout<BlockKey>.offset(of: \BlockKey.hi) == 8
                     && MemoryLayout<BlockKey>.stride == 16, "BlockKey is not (lo, hi)")
        buffer = .allocate(capacity: 1)
        msgpack_sbuffer_init(buffer)
        packer = .allocate(capacity: 1)
        msgpack_packer_init(packer, UnsafeMutableRawPointer(buffer), msgpack_sbuffer_write)
    }

    deinit {
        msgpack_sbuffer_destroy(buffer)
        buffer.deallocate()
        packer.deallocate()
    }

    /// Forgets what was written (the capacity stays).
    func clear() { msgpack_sbuffer_clear(buffer) }

    /// What was written since the last `clear` (valid until the next write).
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: buffer.pointee.data, count: buffer.pointee.size)
    }

    /// Appends `raw` as it is (a header msgpack-c has no call for).
    func raw(_ raw: UnsafeRawBufferPointer) {
        _ = msgpack_sbuffer_write(buffer, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
    }

    func string(_ s: StaticString) {
        msgpack_pack_str(packer, s.utf8CodeUnitCount)
        msgpack_pack_str_body(packer, s.utf8Start, s.utf8CodeUnitCount)
    }

    func string(_ s: String) {
        var s = s
        s.withUTF8 { u in
            msgpack_pack_str(packer, u.count)
            msgpack_pack_str_body(packer, u.baseAddress, u.count)
        }
    }

    /// `k` as `bin 16`: high 64 bits first, both halves big-endian (docs/BLOCK_KEYS.md's hex as bytes).
    func key(_ k: BlockKey) { _ = kvcache_pack_hash128(packer, k.lo, k.hi) }

    /// `keys` as an array of `bin 16`, packed in bulk (msgpack-c's packer with an inlined sink). O(keys).
    func keys(_ keys: some Collection<BlockKey>) {
        if keys.withContiguousStorageIfAvailable({ self.keys($0) }) == nil {
            Array(keys).withUnsafeBufferPointer { self.keys($0) }
        }
    }

    func keys(_ keys: UnsafeBufferPointer<BlockKey>) {
        let rc = keys.withMemoryRebound(to: UInt64.self) { kvcache_pack_hash128_array(buffer, $0.baseAddress, keys.count) }
        precondition(rc == 0, "out of memory encoding \(keys.count) block hashes")
    }

    /// `values` as an array of unsigned integers, packed in bulk. O(values).
    func uint32s(_ values: UnsafeBufferPointer<UInt32>) {
        let rc = kvcache_pack_uint32_array(buffer, values.baseAddress, values.count)
        precondition(rc == 0, "out of memory encoding \(values.count) token ids")
    }
}
