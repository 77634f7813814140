// capi-bench: the same serving cycle through the Swift facade and through the C ABI (kvcache.h,
// linked in-process), to measure what the boundary costs. One cycle is one request of a 256-token
// prompt whose first 240 tokens are cached: add_sequence, then (timed as "serve") lookup, allocate
// + commit of the uncached tokens, 16 decode steps (append one token, allocate, commit), the block
// table into a buffer, drain_copies, free. Rounds alternate between the two paths; medians of the
// per-round means (and the fastest round, less disturbed by other processes) are printed as one
// JSON object.
//
//   swift build -c release --product capi-bench && .build/release/capi-bench
import CKVCache
import KVCache

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let promptTokens = 256, decodeSteps = 16, blockTokens = 16
let rounds = 31, cyclesPerRound = 2000
let prompt: [UInt32] = (0 ..< promptTokens).map { UInt32($0 * 7919 % 128_000) }
let callsPerServe = 3 + 3 * decodeSteps + 3

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

func check(_ status: kvcache_status, _ line: Int = #line) {
    guard status != 0 else { return }
    fatalError("line \(line): \(String(cString: kvcache_status_name(status))): \(String(cString: kvcache_last_error()))")
}

/// Seconds spent in add_sequence and in the rest of the cycle, over `cycles` cycles.
struct Split { var add = 0.0; var serve = 0.0 }

final class SwiftPath {
    let m: KVCacheManager
    var next: Int64 = 0
    var table = [BlockID](repeating: 0, count: 64)
    var copies = [(src: BlockID, dst: BlockID)](repeating: (0, 0), count: 8)
    init() throws { m = try KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: 4096)) }

    func run(_ cycles: Int) throws -> Split {
        var split = Split()
        try prompt.withUnsafeBufferPointer { p in
            for _ in 0 ..< cycles {
                let id = SequenceID(next)
                next += 1
                let t0 = now()
                try m.addSequence(id, prompt: p)
                let t1 = now()
                let hit = try m.lookup(id)
                _ = try m.allocate(id, newTokens: promptTokens - hit.cachedTokens)
                try m.commit(id, computedTokens: promptTokens - hit.cachedTokens)
                for t in 0 ..< decodeSteps {
                    var token = UInt32(t)
                    try withUnsafePointer(to: &token) { (tp) throws(KVCacheError) in
                        try m.append(id, tokens: UnsafeBufferPointer(start: tp, count: 1))
                    }
                    _ = try m.allocate(id, newTokens: 1)
                    try m.commit(id, computedTokens: 1)
                }
                let blocks = try m.blockTable(id)
                table.withUnsafeMutableBufferPointer { out in
                    blocks.withUnsafeBufferPointer { out.baseAddress!.update(from: $0.baseAddress!, count: $0.count) }
                }
                var i = 0
                m.drainCopies { src, dst in copies[i] = (src, dst); i += 1 }
                try m.free(id)
                let t2 = now()
                split.add += t1 - t0
                split.serve += t2 - t1
            }
        }
        return split
    }
}

final class CPath {
    let handle: OpaquePointer
    var next: Int64 = 0
    var table = [Int32](repeating: 0, count: 64)
    var copies = [kvcache_block_copy](repeating: kvcache_block_copy(), count: 8)
    init() {
        var config = kvcache_config()
        check(kvcache_config_init(&config))
        config.block_tokens = Int64(blockTokens)
        config.capacity_blocks = 4096
        var out: OpaquePointer?
        check(kvcache_create(&config, &out))
        handle = out!
    }
    deinit { _ = kvcache_destroy(handle) }

    func run(_ cycles: Int) -> Split {
        var split = Split()
        var hit = kvcache_prefix_hit(), alloc = kvcache_allocation(), n = 0
        prompt.withUnsafeBufferPointer { p in
            table.withUnsafeMutableBufferPointer { tb in
                copies.withUnsafeMutableBufferPointer { cp in
                    for _ in 0 ..< cycles {
                        let id = next
                        next += 1
                        let t0 = now()
                        check(kvcache_add_sequence(handle, id, p.baseAddress, p.count, nil, nil, nil, 0))
                        let t1 = now()
                        check(kvcache_lookup(handle, id, &hit))
                        let todo = Int64(promptTokens) - hit.cached_tokens
                        check(kvcache_allocate(handle, id, todo, 0, &alloc))
                        check(kvcache_commit(handle, id, todo))
                        for t in 0 ..< decodeSteps {
                            var token = UInt32(t)
                            check(kvcache_append_tokens(handle, id, &token, 1))
                            check(kvcache_allocate(handle, id, 1, 0, &alloc))
                            check(kvcache_commit(handle, id, 1))
                        }
                        check(kvcache_block_table(handle, id, tb.baseAddress, tb.count, &n))
                        check(kvcache_drain_copies(handle, cp.baseAddress, cp.count, &n))
                        check(kvcache_free_sequence(handle, id))
                        let t2 = now()
                        split.add += t1 - t0
                        split.serve += t2 - t1
                    }
                }
            }
        }
        return split
    }
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

let swiftPath = try SwiftPath(), cPath = CPath()
_ = try swiftPath.run(cyclesPerRound)  // warm-up: caches the prompt, sizes every buffer
_ = cPath.run(cyclesPerRound)
var swiftSplits: [Split] = [], cSplits: [Split] = []
for _ in 0 ..< rounds {
    swiftSplits.append(try swiftPath.run(cyclesPerRound))
    cSplits.append(cPath.run(cyclesPerRound))
}
/// Nanoseconds per cycle of one part, by `pick` (median or min) over the rounds.
func ns(_ s: [Split], _ pick: ([Double]) -> Double, _ part: (Split) -> Double) -> Int {
    Int((pick(s.map(part)) / Double(cyclesPerRound) * 1e9).rounded())
}
func perCall(_ c: Int, _ s: Int) -> Double { (Double(c - s) / Double(callsPerServe) * 10).rounded() / 10 }
let fastest = { (xs: [Double]) in xs.min()! }
let swiftServe = ns(swiftSplits, median) { $0.serve }, cServe = ns(cSplits, median) { $0.serve }
let swiftServeMin = ns(swiftSplits, fastest) { $0.serve }, cServeMin = ns(cSplits, fastest) { $0.serve }
print("""
{"cycles_per_round": \(cyclesPerRound), "rounds": \(rounds), "calls_per_serve": \(callsPerServe), \
"swift_serve_ns": \(swiftServe), "c_serve_ns": \(cServe), "overhead_ns_per_call": \(perCall(cServe, swiftServe)), \
"swift_serve_ns_min": \(swiftServeMin), "c_serve_ns_min": \(cServeMin), \
"overhead_ns_per_call_min": \(perCall(cServeMin, swiftServeMin)), \
"swift_add_sequence_ns": \(ns(swiftSplits, median) { $0.add }), "c_add_sequence_ns": \(ns(cSplits, median) { $0.add })}
""")
