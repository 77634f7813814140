import CKVCache
import KVCache
import KVMetrics

// The cache's metrics for a C or Python server's /metrics endpoint. See kvcache.h for the contract.

/// kvcache_metrics_text: `length` is always set to the exposition's length in bytes (without the NUL),
/// then the text and a NUL are copied when `capacity` holds `length + 1` bytes (`BUFFER_TOO_SMALL` and
/// nothing written otherwise). The exposition is built from the cache's cumulative counters at each call,
/// so two calls with nothing in between give the same text. O(metrics); allocates (not a hot call).
@_cdecl("kvcache_metrics_text")
public func kvcacheMetricsTextImpl(_ cache: OpaquePointer?, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                                   _ length: UnsafeMutablePointer<Int>?) -> kvcache_status {
    withHandle(cache, "kvcache_metrics_text") { (h) throws(CAPIError) in
        let length = try required(length, "length")
        let out = try outputBuffer(out, capacity: capacity, "out")
        let metrics = KVMetrics()
        metrics.update(h.manager.stats)
        var text: [UInt8] = []
        metrics.emit(into: &text)
        length.pointee = text.count
        try requireRoom(text.count + 1, capacity: capacity, "out")
        guard let out else { return }
        text.withUnsafeBytes { t in
            UnsafeMutableRawPointer(out).copyMemory(from: t.baseAddress!, byteCount: t.count)
        }
        out[text.count] = 0
    }
}
