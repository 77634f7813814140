#if canImport(Glibc)
import Glibc
#endif
import Testing
import KVCache
import KVTestSupport
import KVPlan
@testable import KVTiers

/// Runs `body(i)` on `n` threads at once and waits for all of them.
func runConcurrently(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Box: @unchecked Sendable { let body: @Sendable (Int) -> Void; let i: Int; init(_ b: @escaping @Sendable (Int) -> Void, _ i: Int) { body = b; self.i = i } }
    var threads: [pthread_t] = []
    for i in 0 ..< n {
        var t = pthread_t()
        let box = Unmanaged.passRetained(Box(body, i)).toOpaque()
        let rc = pthread_create(&t, nil, { p in
            let b = Unmanaged<Box>.fromOpaque(p!).takeRetainedValue()
            b.body(b.i)
            return nil
        }, box)
        precondition(rc == 0)
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
}

@Suite("Transfer engine concurrency")
struct TransferConcurrencyTests {
    let layout = try! KVGeometry(layers: 4, kvHeads: 2, headDim: 16, dtype: .bf16, blockTokens: 4)

    func fill(_ mem: HostDeviceMemory, block: BlockID, key: BlockKey) {
        _ = mem.withBlock(block) { KeyPayload.fill($0, key: key) }
    }

    func holds(_ mem: HostDeviceMemory, block: BlockID, key: BlockKey, range: Range<Int>? = nil) -> Bool {
        var expected = [UInt8](repeating: 0, count: layout.bytesPerBlock)
        expected.withUnsafeMutableBytes { KeyPayload.fill($0, key: key) }
        let r = range ?? 0 ..< layout.bytesPerBlock
        return mem.withBlock(block) { dev in expected[r].elementsEqual(dev[r]) } ?? false
    }

    @Test func workerPoolRunsEveryJobAndHonoursDeadlines() throws {
        let engine = try TransferWorkers(workers: 3)
        let done = Countdown(1000)
        final class Tally: @unchecked Sendable { let lock = ConditionLock(); var ran = 0; var expired = 0 }
        let tally = Tally()
        runConcurrently(4) { t in
            for i in 0 ..< 250 {
                let deadline: UInt64 = i % 10 == 0 ? 1 : .max   // 1 ns after boot: long past
                engine.submit(i % 2 == 0 ? .high : .low, deadlineNanos: deadline) { expired in
                    tally.lock.withLock { if expired { tally.expired += 1 } else { tally.ran += 1 } }
                    _ = done.arrive(true)
                }
            }
        }
        engine.waitForTransfers()
        #expect(tally.lock.withLock { tally.ran } == 900)
        #expect(tally.lock.withLock { tally.expired } == 100)
        engine.shutdown()
        engine.submit(.high) { expired in tally.lock.withLock { tally.expired += expired ? 1 : 0 } }
        #expect(tally.lock.withLock { tally.expired } == 101, "a job after shutdown runs inline as expired")
    }

    /// Several threads evict, store, look up and load at once on disjoint device blocks; every loaded
    /// byte must be right and the index must stay consistent. Run under `--sanitize=thread`.
    @Test func concurrentEvictionsAndLoads() throws {
        let dir = TempDirectory()
        let threads = 4, perThread = 8
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: threads * perThread * 2)
        var cfg = TierConfig(layout: layout, hostBlocks: 24,
                             disk: DiskStoreConfig(directory: dir.path, capacityBytes: 64 << 20, layout: layout))
        cfg.workers = 3
        cfg.spillWatermark = 0.5
        cfg.lockHostMemory = false
        cfg.recordEvents = true
        let tiers = try KVTierManager(config: cfg, device: mem)
        final class Failures: @unchecked Sendable { let lock = ConditionLock(); var count = 0; var loaded = 0 }
        let failures = Failures()
        runConcurrently(threads) { t in
            let base = BlockID(t * perThread * 2)
            for round in 0 ..< 6 {
                let keys = (0 ..< perThread).map { testKey(t * 100 + $0 + round % 3 * 10, salt: 77) }
                // "Compute" into the first half of this thread's blocks, store, then evict them.
                for (i, k) in keys.enumerated() {
                    self.fill(mem, block: base + BlockID(i), key: k)
                    tiers.noteStored(block: base + BlockID(i), key: k)
                }
                for (i, k) in keys.enumerated() { tiers.willEvict(block: base + BlockID(i), key: k) }
                tiers.waitForEvictionCopies()
                // Load them back into the other half.
                let plan = tiers.lookup(keys: keys, deviceBlocks: 0)
                let into = (0 ..< plan.loadBlocks).map { base + BlockID(perThread + $0) }
                guard let h = try? tiers.load(plan, keys: keys, into: into) else { continue }
                h.wait()
                for i in 0 ..< h.loadedPrefixBlocks where !self.holds(mem, block: into[i], key: keys[i]) {
                    failures.lock.withLock { failures.count += 1 }
                }
                failures.lock.withLock { failures.loaded += h.loadedPrefixBlocks }
                for (i, k) in keys.prefix(h.loadedPrefixBlocks).enumerated() { tiers.willEvict(block: into[i], key: k) }
                tiers.waitForEvictionCopies()
                _ = tiers.prefetch(keys: keys, deadlineNanos: KVClock.monotonicNanos() + 50_000_000)
            }
        }
        tiers.waitForTransfers()
        #expect(failures.lock.withLock { failures.count } == 0)
        #expect(failures.lock.withLock { failures.loaded } > 0)
        try tiers.validate()
        let s = tiers.statistics
        #expect(s.host.storedBlocks > 0 && s.host.loadedBlocks > 0)
        var events: [KVEvent] = []
        tiers.drainEvents(into: &events)
        #expect(!events.isEmpty)
    }

    /// The engine performs the copies on its own thread (as a CUDA copy stream would) and completes them
    /// later; the manager waits per layer group. Group g's bytes are in place once `wait(layerGroup: g)`
    /// returns, while later groups may still be in flight.
    @Test func engineBackendCompletesPerLayerGroup() throws {
        let stand = try HostDeviceMemory(layout: layout, capacityBlocks: 8)
        let copyStream = try TransferWorkers(workers: 1)
        let backend = ServerCopyBackend(layout: layout, capacityBlocks: 8) { req in
            copyStream.submit(.high) { _ in
                switch req.direction {
                case .deviceToHost: stand.copyToHost(block: req.block, range: req.range, host: req.host) { req.complete(success: $0) }
                case .hostToDevice: stand.copyFromHost(block: req.block, range: req.range, host: req.host) { req.complete(success: $0) }
                }
            }
        }
        var cfg = TierConfig(layout: layout, hostBlocks: 8)
        cfg.layerGroups = 4
        cfg.lockHostMemory = false
        let tiers = try KVTierManager(config: cfg, device: backend)
        let keys = (0 ..< 3).map { testKey($0, salt: 5) }
        for (i, k) in keys.enumerated() {
            fill(stand, block: BlockID(i), key: k)
            tiers.noteStored(block: BlockID(i), key: k)
            tiers.willEvict(block: BlockID(i), key: k)
        }
        tiers.waitForEvictionCopies()
        let plan = tiers.lookup(keys: keys, deviceBlocks: 0)
        #expect(plan.locations == [.host, .host, .host])
        let h = try tiers.load(plan, keys: keys, into: [5, 6, 7])
        for g in 0 ..< 4 {
            h.wait(layerGroup: g)
            let r = layout.byteRange(layers: tiers.groupRanges[g])
            for i in 0 ..< 3 { #expect(holds(stand, block: BlockID(5 + i), key: keys[i], range: r)) }
        }
        h.wait()
        #expect(h.isComplete && h.loadedPrefixBlocks == 3 && h.failedBlocks.isEmpty)
        #expect(tiers.location(of: keys[0]) == .device)
        // Out-of-range device blocks are refused before anything starts.
        #expect(throws: TierError.self) { _ = try tiers.load(plan, keys: keys, into: [5, 6, 99]) }
        try tiers.validate()
        copyStream.shutdown()
    }

    @Test func prefetchHonoursItsDeadlineAndCorruptDiskBlocksFailTheLoad() throws {
        let dir = TempDirectory()
        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 8)
        var cfg = TierConfig(layout: layout, hostBlocks: 2,
                             disk: DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 20, layout: layout))
        cfg.lockHostMemory = false
        cfg.workers = 1
        let tiers = try KVTierManager(config: cfg, device: mem)
        let keys = (0 ..< 4).map { testKey($0, salt: 6) }
        for (i, k) in keys.enumerated() {
            fill(mem, block: BlockID(i), key: k)
            tiers.noteStored(block: BlockID(i), key: k)
            tiers.willEvict(block: BlockID(i), key: k)
            tiers.waitForEvictionCopies()
        }
        // Host holds the last two; the first two were pushed down to disk.
        #expect(tiers.location(of: keys[0]) == .disk && tiers.location(of: keys[3]) == .host)
        let late = tiers.prefetch(keys: [keys[0]], deadlineNanos: 1)
        late.wait()
        #expect(late.failedBlocks == [0])
        #expect(tiers.location(of: keys[0]) == .disk)
        let onTime = tiers.prefetch(keys: [keys[0]], deadlineNanos: KVClock.monotonicNanos() + 10_000_000_000)
        onTime.wait()
        #expect(onTime.failedBlocks.isEmpty && tiers.location(of: keys[0]) == .host)
        // Damage keys[1] on disk: the load plan still names it, the load fails there, and only the
        // prefix before it counts.
        tiers.waitForTransfers()
        for seg in segmentFiles(dir.path) { for off in recordOffsets(seg) { flipByte(seg, at: off + DiskRecordFormat.headerSize + 3) } }
        let plan = tiers.lookup(keys: keys, deviceBlocks: 0)
        #expect(plan.locations.first == .host)
        let h = try tiers.load(plan, keys: keys, into: Array((4 ..< 4 + BlockID(plan.loadBlocks))))
        h.wait()
        #expect(h.loadedPrefixBlocks == 1)
        #expect(tiers.statistics.disk.failedLoads >= 1)
        try tiers.validate()
    }

    @Test func admissionRefusesTiersSlowerThanRecompute() throws {
        let dir = TempDirectory()
        let big = KVGeometry.llama3_8B(dtype: .fp16)
        #expect(big.bytesPerBlock == 2 << 20)
        // Llama-3-8B prefill on an H100: 2 x 8.03e9 FLOPs per token at 989 TFLOP/s and 50% utilisation.
        let perToken = try RecomputeCost(secondsPerToken: 2 * 8.03e9 / (989e12 * 0.5), secondsPerContextPair: 0)
        var adm = LoadOrRecompute(recompute: perToken,
                                  host: .init(latencySeconds: 5e-6, bytesPerSecond: 25e9),
                                  disk: .init(latencySeconds: 100e-6, bytesPerSecond: 1.6e9))
        // 16 tokens x 32 us = 0.52 ms to recompute; host 2 MiB at 25 GB/s = 0.09 ms; disk ~1.5 ms.
        #expect(adm.worthLoading(tier: .host, layout: big))
        #expect(!adm.worthLoading(tier: .disk, layout: big))
        adm.observe(tier: .disk, bytes: 2 << 20, nanos: 100_000)   // a much faster disk shows up
        for _ in 0 ..< 30 { adm.observe(tier: .disk, bytes: 2 << 20, nanos: 100_000) }
        #expect(adm.worthLoading(tier: .disk, layout: big))
        #expect(!adm.worthLoading(tier: .remote, layout: big), "a tier without a row is never loaded from")

        let mem = try HostDeviceMemory(layout: layout, capacityBlocks: 4)
        var cfg = TierConfig(layout: layout, hostBlocks: 1,
                             disk: DiskStoreConfig(directory: dir.path, capacityBytes: 1 << 20, layout: layout))
        cfg.lockHostMemory = false
        // Recompute is nearly free.
        cfg.admission = LoadOrRecompute(recompute: try RecomputeCost(secondsPerToken: 1e-9, secondsPerContextPair: 0))
        let tiers = try KVTierManager(config: cfg, device: mem)
        let k = testKey(1)
        fill(mem, block: 0, key: k)
        tiers.noteStored(block: 0, key: k)
        tiers.willEvict(block: 0, key: k)
        tiers.waitForTransfers()
        #expect(tiers.location(of: k) == nil, "nothing is stored where loading would not pay")
        #expect(tiers.statistics.hostAdmitted == false && tiers.statistics.diskAdmitted == false)
    }

    @Test func loadOrRecomputePricesTheBlockAtItsDepth() throws {
        let big = KVGeometry.llama3_8B(dtype: .fp16)
        // Linear layers nearly free, attention dear: only the context term can make a load pay.
        let cost = try RecomputeCost(secondsPerToken: 1e-9, secondsPerContextPair: 1e-8)
        let rule = LoadOrRecompute(recompute: cost, host: .init(latencySeconds: 5e-6, bytesPerSecond: 10e9))
        let load = rule.loadSeconds(tier: .host, bytes: big.bytesPerBlock)
        #expect(rule.recomputeSeconds(layout: big, depth: 0)! < load)
        #expect(!rule.worthLoading(tier: .host, layout: big, depth: 0))
        #expect(rule.recomputeSeconds(layout: big, depth: 100)! > load)
        #expect(rule.worthLoading(tier: .host, layout: big, depth: 100))
        #expect(LoadOrRecompute().worthLoading(tier: .host, layout: big), "no cost: every tier with a row")
    }
}
