#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan
import KVTestSupport
@testable import KVTiers
import Testing

/// A load or store the caller stops waiting for: the manager's last outside reference can go while the
/// engine still holds copies of it. The pooled job keeps the manager alive until its last copy is
/// reported (as a queued closure capturing it would), then lets it go; a job resting in the pool does not.
struct TransferJobLifetimeTests {
    /// The engine's copies, kept until the test reports them. Guarded by the tiers' pthread lock, which
    /// ThreadSanitizer sees (it does not model `Mutex`'s futex, and reported its accesses as a race).
    final class Engine: @unchecked Sendable {
        private let lock = ConditionLock()
        private var pending: [DeviceCopyRequest] = []
        func add(_ r: DeviceCopyRequest) { lock.withLock { pending.append(r) } }
        func take() -> [DeviceCopyRequest] { lock.withLock { defer { pending = [] }; return pending } }
    }

    static func manager(_ engine: Engine) throws -> KVTierManager {
        var config = TierConfig(layout: smallLayout, hostBlocks: 4)
        config.workers = 1
        config.calibrateAtStart = false
        config.lockHostMemory = false
        config.layerGroups = 2
        let device = ServerCopyBackend(layout: smallLayout, capacityBlocks: 4) { r in engine.add(r) }
        return try KVTierManager(config: config, device: device)
    }

    /// Waits until the engine holds `n` copies (the workers hand them out asynchronously).
    static func copies(_ engine: Engine, _ n: Int) -> [DeviceCopyRequest] {
        var got: [DeviceCopyRequest] = []
        for _ in 0 ..< 2000 where got.count < n {
            got += engine.take()
            if got.count < n { usleep(1000) }
        }
        return got
    }

    /// Waits (bounded) until `gone` is nil.
    static func waitGone(_ gone: () -> KVTierManager?) -> Bool {
        for _ in 0 ..< 2000 where gone() != nil { usleep(1000) }
        return gone() == nil
    }

    @Test func aStoreKeepsTheManagerUntilItsLastCopy() throws {
        let engine = Engine()
        weak var gone: KVTierManager?
        var store: TransferHandle
        do {
            let tiers = try Self.manager(engine)
            gone = tiers
            store = try tiers.store(blocks: [0, 1], keys: [BlockKey(lo: 1, hi: 9), BlockKey(lo: 2, hi: 9)], firstParent: nil)
        }
        // Two blocks x two layer groups asked for; the caller's reference is gone, the manager is not.
        let asked = Self.copies(engine, 4)
        #expect(asked.count == 4)
        #expect(gone != nil)
        for r in asked.dropLast() { r.complete(success: true) }
        #expect(gone != nil)
        asked.last!.complete(success: true)
        store.wait()
        #expect(store.failedBlocks.isEmpty)
        #expect(Self.waitGone { gone })   // the job is back in the pool without its reference
    }

    @Test func aLoadKeepsTheManagerUntilItsLastCopy() throws {
        let engine = Engine()
        weak var gone: KVTierManager?
        let keys = [BlockKey(lo: 1, hi: 9), BlockKey(lo: 2, hi: 9)]
        var load: TransferHandle
        do {
            let tiers = try Self.manager(engine)
            gone = tiers
            let store = try tiers.store(blocks: [0, 1], keys: keys, firstParent: nil)
            for r in Self.copies(engine, 4) { r.complete(success: true) }
            store.wait()
            load = try tiers.load(keys: keys, first: 0, into: [2, 3])
        }
        let asked = Self.copies(engine, 4)
        #expect(asked.count == 4)
        #expect(gone != nil)
        for r in asked { r.complete(success: true) }
        load.wait()
        #expect(load.loadedPrefixBlocks == 2)
        #expect(Self.waitGone { gone })
    }
}
