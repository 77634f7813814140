import CKernels

/// The threads that share a decode step's matrix products: the calling thread plus `threads - 1`
/// workers of a C `KVWorkerPool`, which spin for a moment between products (a step runs about two
/// hundred of them, tens of microseconds each, where waking a sleeping thread would cost as much) and
/// sleep when idle. Parts are claimed as threads come free, so a late thread slows nobody down.
/// One caller at a time: a `ForwardWorkspace` owns one.
final class DecodeWorkers: @unchecked Sendable {
    // Sendable: the C pool synchronizes its own threads; its one caller at a time is the owning workspace.
    /// Participants, the caller included.
    let threads: Int
    private let pool: OpaquePointer

    /// Starts `threads - 1` workers; nil when `threads < 2` or a thread cannot be started.
    init?(threads: Int) {
        guard threads >= 2, let pool = kv_pool_create(Int32(min(threads, 256))) else { return nil }
        self.pool = pool
        self.threads = Int(kv_pool_threads(pool))
    }

    deinit { kv_pool_destroy(pool) }

    /// Calls `body(part, parts)` once for every `part < parts`, concurrently on this thread and the
    /// workers (each claims the next part when free), and returns when all have returned. No allocation.
    func run(parts: Int, _ body: @Sendable (_ part: Int, _ parts: Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var task = body
            withUnsafeMutablePointer(to: &task) { context in
                kv_pool_run(pool, Int32(clamping: parts), { context, part, parts in
                    context!.assumingMemoryBound(to: (@Sendable (Int, Int) -> Void).self).pointee(Int(part), Int(parts))
                }, context)
            }
        }
    }
}
