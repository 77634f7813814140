import CKVCache
import KVCache
import KVRuntime

/// What a `kvcache_t *` points to: the facade plus the buffers the boundary keeps between calls,
/// and the tiers attached below it (`kvcache_tiers_attach`), which it keeps alive. Created by
/// `kvcache_create` (retained once), released by `kvcache_destroy`, which detaches the tiers.
/// Single-threaded, like the manager it wraps.
final class CacheHandle {
    let manager: KVCacheManager
    /// Events drained from the manager but not yet handed to the caller (its buffers were too
    /// short); keeps its capacity, so a steady event stream allocates nothing here.
    var stagedEvents: [KVEvent] = []
    /// The attached tiers and the tier leg of a prompt over them; nil when none are attached.
    var attached: (tiers: TierHandle, planner: PrefixPlanner)?

    init(_ manager: KVCacheManager) { self.manager = manager }

    deinit { detachTiers() }
}

/// Whether a live handle of the ABI is of class `H`: its first word, a native Swift object's metadata
/// pointer, is `H`'s (the handle classes are final). Tells a `kvcache_t` passed where a
/// `kvcache_tiers_t` or a `kvcache_hybrid_t` is expected (and the other way round) apart; a destroyed
/// handle or a pointer to something else is not detected (the header says so). O(1): one load.
@inline(__always)
func isHandle<H: AnyObject>(_ pointer: OpaquePointer, of: H.Type) -> Bool {
    UnsafeRawPointer(pointer).load(as: UnsafeRawPointer.self) == unsafeBitCast(H.self as AnyObject.Type, to: UnsafeRawPointer.self)
}

/// A handle of class `H`, or `.wrongHandle`.
@inline(__always)
func checkHandle<H: AnyObject>(_ pointer: OpaquePointer, _ type: H.Type) throws(CAPIError) {
    guard isHandle(pointer, of: type) else { throw .wrongHandle }
}

/// Lends the handle object behind an opaque pointer (any handle class of the ABI) to `body` without
/// retaining it: the C caller's reference (from its create call) keeps it alive for the whole call.
/// A live handle of another class is refused (`.wrongHandle`). O(1).
@inline(__always)
func borrow<H: AnyObject>(_ pointer: OpaquePointer, _ body: (H) throws(CAPIError) -> Void) throws(CAPIError) {
    try checkHandle(pointer, H.self)
    // `_withUnsafeGuaranteedRef` rethrows untyped errors; carry the typed one out as a value.
    let result = Unmanaged<H>.fromOpaque(UnsafeRawPointer(pointer))._withUnsafeGuaranteedRef { h in
        do throws(CAPIError) {
            try body(h)
            return Result<Void, CAPIError>.success(())
        } catch {
            return .failure(error)
        }
    }
    try result.get()
}

/// Runs one C ABI call on the handle: a NULL handle and every thrown error become a status (and the
/// thread's last error); nothing crosses the boundary as a Swift error. O(1) around `body`.
@inline(__always)
func withHandle(_ pointer: OpaquePointer?, _ function: StaticString,
                _ body: (CacheHandle) throws(CAPIError) -> Void) -> kvcache_status {
    withHandle(pointer, function, as: CacheHandle.self, body)
}

/// `withHandle` for any handle class of the ABI.
@inline(__always)
func withHandle<H: AnyObject>(_ pointer: OpaquePointer?, _ function: StaticString, as: H.Type,
                              _ body: (H) throws(CAPIError) -> Void) -> kvcache_status {
    guard let pointer else { return fail(.nullHandle, function) }
    do {
        try borrow(pointer, body)
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// Records a failure and returns its status.
func fail(_ error: CAPIError, _ function: StaticString) -> kvcache_status {
    LastError.record(error, in: function)
    return error.status
}

/// A required out-parameter or input pointer.
@inline(__always)
func required<T>(_ pointer: UnsafeMutablePointer<T>?, _ name: StaticString) throws(CAPIError) -> UnsafeMutablePointer<T> {
    guard let pointer else { throw .nullPointer(name) }
    return pointer
}

/// A required input pointer.
@inline(__always)
func required<T>(_ pointer: UnsafePointer<T>?, _ name: StaticString) throws(CAPIError) -> UnsafePointer<T> {
    guard let pointer else { throw .nullPointer(name) }
    return pointer
}

/// A caller's input array of `count` elements; `pointer` may be NULL only when `count` is 0.
@inline(__always)
func inputBuffer<T>(_ pointer: UnsafePointer<T>?, _ count: Int, _ name: StaticString) throws(CAPIError) -> UnsafeBufferPointer<T> {
    guard count >= 0 else { throw .invalidArgument("a length is larger than the address space") }  // a size_t above Int.max
    guard count == 0 || pointer != nil else { throw .nullPointer(name) }
    return UnsafeBufferPointer(start: count == 0 ? nil : pointer, count: count)
}

/// A caller's output buffer of `capacity` elements; `pointer` may be NULL only when `capacity` is 0.
/// Checked before anything is written, so a bad buffer leaves every out-parameter alone.
@inline(__always)
func outputBuffer<T>(_ pointer: UnsafeMutablePointer<T>?, capacity: Int,
                     _ name: StaticString) throws(CAPIError) -> UnsafeMutablePointer<T>? {
    guard capacity >= 0 else { throw .invalidArgument("a capacity is larger than the address space") }
    guard capacity == 0 || pointer != nil else { throw .nullPointer(name) }
    return pointer
}

/// Throws `.bufferTooSmall` when the caller's buffer, named, cannot hold `needed` elements.
@inline(__always)
func requireRoom(_ needed: Int, capacity: Int, _ name: StaticString) throws(CAPIError) {
    guard needed <= capacity else { throw .bufferTooSmall(name, needed: needed, capacity: capacity) }
}

/// A NUL-terminated UTF-8 argument; NULL is "". Allocates for strings over 15 bytes.
func utf8String(_ pointer: UnsafePointer<CChar>?, _ name: StaticString) throws(CAPIError) -> String {
    guard let pointer else { return "" }
    guard let s = String(validatingCString: pointer) else { throw .notUTF8(name) }
    return s
}
