import CKVCache
import KVCache
import Testing

/// Every refused call through the C header returns its typed status, says why in
/// `kvcache_last_error`, and leaves the cache (and the caller's out-parameters) as they were.
struct ErrorPathTests {
    static let B = 4

    /// A cache with: 1 prefilled and decoding, 2 forked from 1 with a pending copy, 3 added only.
    func populated(capacity: Int = 16, events: Bool = true) throws -> CCache {
        let c = try CCache(blockTokens: Self.B, capacity: capacity, events: events)
        #expect(c.add(1, Array(0 ..< 10)) == 0)
        #expect(c.lookup(1).0 == 0)
        #expect(c.allocate(1, 10).0 == 0)
        #expect(c.commit(1, 10) == 0)
        #expect(c.fork(1, 2) == 0)
        #expect(c.append(2, [77]) == 0)
        #expect(c.allocate(2, 1).0 == 0)  // copy-on-write of the shared partial block: one pending copy
        #expect(c.add(3, Array(100 ..< 105)) == 0)
        #expect(c.validate() == 0)
        return c
    }

    /// Runs `call`, expects `status`, a message naming `function`, and no visible change.
    func refused(_ c: CCache, _ status: kvcache_status_code, _ function: String, _ needle: String = "",
                 sourceLocation: SourceLocation = #_sourceLocation, _ call: () -> kvcache_status) {
        let ids: [Int64] = [1, 2, 3, 4]
        let before = c.snapshot(ids)
        #expect(call() == status.code, "\(function)", sourceLocation: sourceLocation)
        #expect(lastError.hasPrefix(function + ": "), "\(lastError)", sourceLocation: sourceLocation)
        // An empty needle matches (Foundation's String.contains, visible here through KVConfig, says no).
        #expect(needle.isEmpty || lastError.contains(needle), "\(lastError)", sourceLocation: sourceLocation)
        #expect(c.snapshot(ids) == before, "\(function) changed state", sourceLocation: sourceLocation)
        #expect(c.validate() == 0, sourceLocation: sourceLocation)
    }

    @Test func nullHandleIsReportedByEveryFunction() {
        var i: Int64 = 0, n = 0, m = 0
        var hit = kvcache_prefix_hit(), alloc = kvcache_allocation(), stats = kvcache_stats()
        let token: [UInt32] = [1]
        let calls: [(String, () -> kvcache_status)] = [
            ("kvcache_destroy", { kvcache_destroy(nil) }),
            ("kvcache_add_sequence", { kvcache_add_sequence(nil, 1, token, 1, nil, nil, nil, 0) }),
            ("kvcache_add_sequence_keys", { kvcache_add_sequence_keys(nil, 1, nil, 0, 4) }),
            ("kvcache_lookup", { kvcache_lookup(nil, 1, &hit) }),
            ("kvcache_match_length", { kvcache_match_length(nil, nil, 0, &n) }),
            ("kvcache_allocate", { kvcache_allocate(nil, 1, 1, 0, &alloc) }),
            ("kvcache_commit", { kvcache_commit(nil, 1, 1) }),
            ("kvcache_append_tokens", { kvcache_append_tokens(nil, 1, token, 1) }),
            ("kvcache_append_count", { kvcache_append_count(nil, 1, 1) }),
            ("kvcache_free_sequence", { kvcache_free_sequence(nil, 1) }),
            ("kvcache_fork", { kvcache_fork(nil, 1, 2) }),
            ("kvcache_block_table", { kvcache_block_table(nil, 1, nil, 0, &n) }),
            ("kvcache_prompt_keys", { kvcache_prompt_keys(nil, 1, nil, 0, &n) }),
            ("kvcache_computed_tokens", { kvcache_computed_tokens(nil, 1, &i) }),
            ("kvcache_token_count", { kvcache_token_count(nil, 1, &i) }),
            ("kvcache_drain_copies", { kvcache_drain_copies(nil, nil, 0, &n) }),
            ("kvcache_drain_events", { kvcache_drain_events(nil, nil, 0, &n, nil, 0, &m) }),
            ("kvcache_get_stats", { kvcache_get_stats(nil, &stats) }),
            ("kvcache_block_tokens", { kvcache_block_tokens(nil, &i) }),
            ("kvcache_free_block_count", { kvcache_free_block_count(nil, &i) }),
            ("kvcache_sequence_count", { kvcache_sequence_count(nil, &i) }),
            ("kvcache_reset", { kvcache_reset(nil) }),
            ("kvcache_validate", { kvcache_validate(nil) }),
        ]
        for (name, call) in calls {
            #expect(call() == KVCACHE_ERR_NULL_HANDLE.code, "\(name)")
            #expect(lastError == "\(name): the handle is NULL")
        }
    }

    @Test func nullPointersAreReported() throws {
        let c = try populated()
        var n = 0
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_lookup", "out is NULL") { kvcache_lookup(c.handle, 3, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_allocate") { kvcache_allocate(c.handle, 3, 1, 0, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_add_sequence", "tokens is NULL") {
            kvcache_add_sequence(c.handle, 4, nil, 3, nil, nil, nil, 0)
        }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_add_sequence", "items is NULL") {
            [UInt32](repeating: 1, count: 8).withUnsafeBufferPointer { kvcache_add_sequence(c.handle, 4, $0.baseAddress, 8, nil, nil, nil, 1) }
        }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_add_sequence_keys") { kvcache_add_sequence_keys(c.handle, 4, nil, 2, 8) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_append_tokens") { kvcache_append_tokens(c.handle, 1, nil, 1) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_match_length") { kvcache_match_length(c.handle, nil, 0, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_block_table", "length is NULL") { kvcache_block_table(c.handle, 1, nil, 0, nil) }
        n = -9
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_block_table", "out is NULL") { kvcache_block_table(c.handle, 1, nil, 8, &n) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_drain_events", "keys is NULL") {
            var e = kvcache_event(), m = -9
            return kvcache_drain_events(c.handle, &e, 1, &n, nil, 4, &m)
        }
        #expect(n == -9, "a refused call wrote its length")
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_computed_tokens") { kvcache_computed_tokens(c.handle, 1, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_token_count") { kvcache_token_count(c.handle, 1, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_drain_copies", "out is NULL") { kvcache_drain_copies(c.handle, nil, 4, &n) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_drain_copies", "count is NULL") { kvcache_drain_copies(c.handle, nil, 0, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_drain_events", "key_count") { kvcache_drain_events(c.handle, nil, 0, &n, nil, 0, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_get_stats") { kvcache_get_stats(c.handle, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_block_tokens") { kvcache_block_tokens(c.handle, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_free_block_count") { kvcache_free_block_count(c.handle, nil) }
        refused(c, KVCACHE_ERR_NULL_POINTER, "kvcache_sequence_count") { kvcache_sequence_count(c.handle, nil) }
        #expect(kvcache_config_init(nil) == KVCACHE_ERR_NULL_POINTER.code)
    }

    @Test func createRejectsBadConfigsAndLeavesOutAlone() {
        var base = kvcache_config()
        #expect(kvcache_config_init(&base) == 0)
        #expect(base.block_tokens == 16 && base.enable_prefix_caching && !base.record_events && base.key_namespace == nil)
        #expect(base.recompute_seconds_per_token == 0 && base.recompute_seconds_per_context_pair == 0)
        base.capacity_blocks = 8
        let sentinel = OpaquePointer(bitPattern: 0xDEAD)
        func create(_ edit: (inout kvcache_config) -> Void) -> (kvcache_status, OpaquePointer?) {
            var c = base
            edit(&c)
            var out = sentinel
            let s = kvcache_create(&c, &out)
            if s == 0, let out { _ = kvcache_destroy(out) }
            return (s, out)
        }
        #expect(create { _ in }.0 == 0)
        let bad: [(String, (inout kvcache_config) -> Void)] = [
            ("blockTokens", { $0.block_tokens = 0 }), ("blockTokens", { $0.block_tokens = 1025 }),
            ("blockTokens", { $0.block_tokens = .min }), ("capacity", { $0.capacity_blocks = 0 }),
            ("capacity", { $0.capacity_blocks = -5 }), ("capacity", { $0.capacity_blocks = Int64(Int32.max) + 1 }),
            ("eviction_policy", { $0.eviction_policy = 7 }), ("eviction_policy", { $0.eviction_policy = -1 }),
            ("recompute costs", { $0.recompute_seconds_per_token = -1 }),
            ("recompute costs", { $0.recompute_seconds_per_context_pair = .nan }),
            ("pgdsf", { $0.eviction_policy = Int32(truncatingIfNeeded: KVCACHE_EVICTION_PGDSF.rawValue) }),
            ("pgdsf-probation", { $0.eviction_policy = Int32(truncatingIfNeeded: KVCACHE_EVICTION_PGDSF_PROBATION.rawValue) }),
        ]
        for (needle, edit) in bad {
            let (status, out) = create(edit)
            #expect(status == KVCACHE_ERR_INVALID_ARGUMENT.code && out == sentinel)
            #expect(lastError.hasPrefix("kvcache_create: invalid argument") && lastError.contains(needle), "\(lastError)")
        }
        let invalidUTF8: [CChar] = [0x41, -1, 0x42, 0]  // "A\xffB"
        invalidUTF8.withUnsafeBufferPointer { p in
            #expect(create { $0.key_namespace = p.baseAddress }.0 == KVCACHE_ERR_INVALID_ARGUMENT.code)
            #expect(lastError == "kvcache_create: invalid argument: config.key_namespace is not UTF-8")
        }
        var out = sentinel
        #expect(kvcache_create(nil, &out) == KVCACHE_ERR_NULL_POINTER.code && out == sentinel)
        #expect(kvcache_create(&base, nil) == KVCACHE_ERR_NULL_POINTER.code)
    }

    @Test func sequenceCallsRefuseBadArguments() throws {
        let c = try populated()
        refused(c, KVCACHE_ERR_DUPLICATE_SEQUENCE, "kvcache_add_sequence", "seq#1 already exists") { c.add(1, [1, 2, 3]) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence", "empty prompt") { c.add(4, []) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence", "larger than the address space") {
            kvcache_add_sequence(c.handle, 4, [1], -1, nil, nil, nil, 0)  // size_t SIZE_MAX
        }
        let invalidUTF8: [CChar] = [-62, 0]  // a lone lead byte
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence", "lora is not UTF-8") {
            invalidUTF8.withUnsafeBufferPointer { kvcache_add_sequence(c.handle, 4, [1, 2], 2, "salt", $0.baseAddress, nil, 0) }
        }
        for (start, length) in [(-1, 2), (0, 0), (6, 3), (Int64.max, 1), (1, Int64.max), (Int64.max, Int64.max)] {
            var item = kvcache_multimodal_item(hash: kvcache_key(lo: 9, hi: 9), start: start, length: length)
            refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence", "outside the prompt") {
                [UInt32](repeating: 5, count: 8).withUnsafeBufferPointer { kvcache_add_sequence(c.handle, 4, $0.baseAddress, 8, nil, nil, &item, 1) }
            }
        }
        let key = BlockKey(lo: 1, hi: 2)
        refused(c, KVCACHE_ERR_DUPLICATE_SEQUENCE, "kvcache_add_sequence_keys") { c.addKeys(3, [key], promptTokens: 8) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence_keys", "zero key") { c.addKeys(4, [key, .zero], promptTokens: 8) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence_keys") { c.addKeys(4, [key, key], promptTokens: 7) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence_keys") { c.addKeys(4, [], promptTokens: 0) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_add_sequence_keys") { c.addKeys(4, [key], promptTokens: .max) }

        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_lookup", "unknown sequence seq#9") { c.lookup(9).0 }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_lookup", "after allocate") { c.lookup(1).0 }

        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_allocate") { c.allocate(9, 1).0 }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_allocate", "negative") { c.allocate(3, -1).0 }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_allocate", "negative") { c.allocate(3, 1, lookahead: -1).0 }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_allocate", "not computed") { c.allocate(3, 6).0 }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_allocate", "not computed") { c.allocate(3, .max).0 }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_allocate", "too large") { c.allocate(3, 5, lookahead: .max).0 }

        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_commit") { c.commit(9, 1) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_commit", "negative") { c.commit(1, -3) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_commit", "exceed") { c.commit(1, 1) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_commit", "exceed") { c.commit(2, .max) }

        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_append_tokens") { c.append(9, [1]) }
        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_append_count") { c.appendCount(9, 1) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_append_count", "negative") { c.appendCount(1, -1) }
        refused(c, KVCACHE_ERR_INVALID_ARGUMENT, "kvcache_append_count", "at most") { c.appendCount(1, .max) }

        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_free_sequence") { c.free(9) }
        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_fork") { c.fork(9, 10) }
        refused(c, KVCACHE_ERR_DUPLICATE_SEQUENCE, "kvcache_fork") { c.fork(1, 3) }
        refused(c, KVCACHE_ERR_UNKNOWN_SEQUENCE, "kvcache_block_table") {
            var n = 0
            return kvcache_block_table(c.handle, 9, nil, 0, &n)
        }
        refused(c, KVCACHE_ERR_BLOCKS_IN_USE, "kvcache_reset", "still in use") { c.reset() }
    }

    @Test func insufficientBlocksReportsNeededAndAvailable() throws {
        let c = try populated(capacity: 8)
        #expect(c.add(4, Array(200 ..< 240)) == 0)
        #expect(c.lookup(4).0 == 0)
        let free = c.freeBlockCount
        var result = kvcache_allocation()
        refused(c, KVCACHE_ERR_INSUFFICIENT_BLOCKS, "kvcache_allocate", "need 11 blocks, \(free) available") {
            let (s, a) = c.allocate(4, 40, lookahead: 2)
            result = a
            return s
        }
        #expect(result.needed_blocks == 11 && result.available_blocks == free && result.new_blocks == 0)
    }

    @Test func shortBuffersReportTheLengthAndConsumeNothing() throws {
        let c = try populated()
        var length = 0
        var table = [BlockID](repeating: -7, count: 2)
        refused(c, KVCACHE_ERR_BUFFER_TOO_SMALL, "kvcache_block_table", "out holds 2 but 3 are needed") {
            table.withUnsafeMutableBufferPointer { kvcache_block_table(c.handle, 1, $0.baseAddress, 2, &length) }
        }
        #expect(length == 3 && table == [-7, -7])

        var count = 0
        refused(c, KVCACHE_ERR_BUFFER_TOO_SMALL, "kvcache_drain_copies") { kvcache_drain_copies(c.handle, nil, 0, &count) }
        #expect(count == 1)
        let copies = c.drainCopies()
        #expect(copies.count == 1 && c.pendingCopies == 0)
        #expect(c.blockTable(2)!.last == copies[0].dst && c.blockTable(1)!.last == copies[0].src)

        // Events: 1 published two full blocks; the key buffer is one short, then big enough.
        var nEvents = 0, nKeys = 0
        var events = [kvcache_event](repeating: kvcache_event(), count: 4)
        var keys = [kvcache_key](repeating: kvcache_key(), count: 1)
        refused(c, KVCACHE_ERR_BUFFER_TOO_SMALL, "kvcache_drain_events", "keys holds 1 but 2 are needed") {
            events.withUnsafeMutableBufferPointer { e in
                keys.withUnsafeMutableBufferPointer { k in
                    kvcache_drain_events(c.handle, e.baseAddress, 4, &nEvents, k.baseAddress, 1, &nKeys)
                }
            }
        }
        #expect(nEvents == 1 && nKeys == 2 && keys[0].lo == 0 && keys[0].hi == 0)
        let drained = c.drainEvents()
        guard case .blockStored(let stored, nil, Self.B, .device, _)? = drained.first, drained.count == 1 else {
            Issue.record("expected one stored event, got \(drained)")
            return
        }
        #expect(stored.count == 2)
        #expect(c.drainEvents().isEmpty)
    }

    @Test func statusNamesAndVersion() {
        #expect(kvcache_version() == UInt32(KVCACHE_VERSION_MAJOR * 10000 + KVCACHE_VERSION_MINOR * 100 + KVCACHE_VERSION_PATCH))
        let names = (0 ... 14).map { String(cString: kvcache_status_name(kvcache_status($0))) }
        #expect(names.first == "KVCACHE_OK" && names[4] == "KVCACHE_ERR_UNKNOWN_SEQUENCE" && names[13] == "KVCACHE_ERR_INVARIANT_VIOLATION"
                && names[14] == "KVCACHE_ERR_OUT_OF_MEMORY")
        #expect(Set(names).count == names.count && names.allSatisfy { $0.hasPrefix("KVCACHE_") && !$0.contains("UNKNOWN_STATUS") })
        #expect(String(cString: kvcache_status_name(15)) == "KVCACHE_ERR_TIER_SYSTEM")
        #expect(String(cString: kvcache_status_name(16)) == "KVCACHE_ERR_CONFIG_LIBRARY")
        #expect(String(cString: kvcache_status_name(17)) == "KVCACHE_STATUS_UNKNOWN")
        #expect(String(cString: kvcache_status_name(-1)) == "KVCACHE_STATUS_UNKNOWN")
        // The header's tiers are the facade's.
        #expect(Tier.allCases.map { Int32($0.rawValue) } == [KVCACHE_TIER_DEVICE, KVCACHE_TIER_HOST, KVCACHE_TIER_DISK, KVCACHE_TIER_REMOTE].map { Int32(truncatingIfNeeded: $0.rawValue) })
    }

    @Test func lastErrorIsPerThread() async throws {
        #expect(kvcache_free_sequence(nil, 1) == KVCACHE_ERR_NULL_HANDLE.code)
        let mine = lastError
        let other = await Task.detached { () -> String in
            let c = try? CCache(capacity: 4)
            _ = c.map { kvcache_fork($0.handle, 5, 6) }
            return lastError
        }.value
        #expect(other == "kvcache_fork: unknown sequence seq#5")
        #expect(mine == "kvcache_free_sequence: the handle is NULL")
    }
}
