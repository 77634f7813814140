import CKVCache
import KVCache
import KVPlan
import KVTiers
import Synchronization

/// What a `kvcache_tiers_t *` points to: a `KVTierManager`, the engine's copy callbacks behind a
/// `ServerCopyBackend` (or the library's `HostDeviceMemory` stand-in), the copies handed to the engine
/// and not reported yet (by token), the loads and stores not completed yet (by id), and the buffers the
/// boundary reuses between calls.
///
/// Thread-safety: `copies` has its own lock (copy callbacks and `kvcache_tiers_copy_done` run on any
/// thread); everything else is used by one caller thread at a time, as the header requires.
final class TierHandle {
    let manager: KVTierManager
    /// The stand-in device pool when the caller registered no callbacks.
    let standIn: HostDeviceMemory?
    let copies: PendingCopies
    /// Loads and stores not completed yet, by the id handed out.
    var transfers: [UInt64: TransferHandle] = [:]
    var nextTransferID: UInt64 = 1
    /// Keys and blocks of the current call, copied from the caller (capacity kept).
    var keys: [BlockKey] = []
    var blocks: [BlockID] = []
    /// The last lookup's plan (its locations' storage reused).
    var plan = TierLookup()
    /// Events taken from the manager and not handed to the caller yet (its buffers were too short).
    var stagedEvents: [TierEvent] = []
    /// Whether a cache has these tiers attached (`kvcache_tiers_attach`): one cache at most, since the
    /// cache's block ids are the manager's device blocks.
    var isAttached = false

    init(manager: KVTierManager, standIn: HostDeviceMemory?, copies: PendingCopies) {
        self.manager = manager
        self.standIn = standIn
        self.copies = copies
    }

    deinit { manager.close() }

    /// Copies a caller's key array into `keys`. O(n); no allocation once `keys` has grown.
    func loadKeys(_ buffer: UnsafeBufferPointer<kvcache_key>) {
        keys.removeAll(keepingCapacity: true)
        for k in buffer { keys.append(BlockKey(lo: k.lo, hi: k.hi)) }
    }
}

/// The engine copies handed out through the callbacks and not reported yet: token -> the request to
/// complete. Tokens count up from 1 and are never reused. Thread-safe (one mutex); O(1) per copy.
final class PendingCopies: Sendable {
    private struct State: ~Copyable {
        var pending: [UInt64: DeviceCopyRequest] = [:]
        var next: UInt64 = 1
    }
    private let state: Mutex<State>

    /// Room for `expected` copies pending at once before the table grows (the copies of every device
    /// block and layer group the host tier can take, say): no allocation per copy below that.
    init(expected: Int) {
        var s = State()
        s.pending.reserveCapacity(expected)
        state = Mutex(s)
    }

    /// Keeps `request` and returns its token.
    func add(_ request: DeviceCopyRequest) -> UInt64 {
        state.withLock { s in
            let t = s.next
            s.next += 1
            s.pending[t] = request
            return t
        }
    }

    /// Completes and forgets the copy of `token`; false when it is not pending.
    func complete(_ token: UInt64, ok: Bool) -> Bool {
        guard let r = state.withLock({ s in s.pending.removeValue(forKey: token) }) else { return false }
        r.complete(success: ok)
        return true
    }
}

/// The caller's copy callbacks and their context, carried to the transfer threads.
struct CopyCallbacks: @unchecked Sendable {
    // Sendable: the context pointer is the caller's; the header makes the callbacks thread-safe.
    let toHost: kvcache_tier_copy_fn
    let toDevice: kvcache_tier_copy_fn
    let context: UnsafeMutableRawPointer?

    /// Hands one copy to the engine with its token.
    func submit(_ r: DeviceCopyRequest, _ copies: PendingCopies) {
        let token = copies.add(r)
        let fn = r.direction == .deviceToHost ? toHost : toDevice
        fn(context, r.block, r.range.lowerBound, r.range.count, r.host.pointer, token)
    }
}

/// Runs one tier call on the handle (`withHandle(_:_:as:_:)`).
@inline(__always)
func withTiers(_ pointer: OpaquePointer?, _ function: StaticString,
               _ body: (TierHandle) throws(CAPIError) -> Void) -> kvcache_status {
    withHandle(pointer, function, as: TierHandle.self, body)
}

/// Runs a tier manager call, turning its typed error into the boundary's.
@inline(__always)
func liftTier<R>(_ call: () throws(TierError) -> R) throws(CAPIError) -> R {
    do { return try call() } catch { throw .tier(error) }
}
