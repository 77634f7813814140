import CKVCache
import Glibc
import KVCache
import Testing

/// kvcache_create_from_env and kvcache_create_from_file: the settings reach the cache (capacity, block
/// size, policy), variables override the file, and a bad key fails the call with the key named and
/// nothing opened. Serialized: the tests set the process environment. (No Foundation here: its String
/// overloads would change `contains("")` for the whole test module.)
@Suite(.serialized)
struct ConfigCABITests {
    static let variables = ["KVCACHE_CAPACITY_BLOCKS", "KVCACHE_BLOCK_TOKENS", "KVCACHE_POLICY", "KVCACHE_CONFIG_FILE",
                            "KVCACHE_TIERS_HOST_BLOCKS", "KVCACHE_RECOMPUTE_SECONDS_PER_TOKEN"]

    /// Runs `body` with exactly `env` among `variables` set, restoring none of them (all unset after).
    static func withEnvironment(_ env: [String: String], _ body: () throws -> Void) rethrows {
        for v in variables { unsetenv(v) }
        for (k, v) in env { setenv(k, v, 1) }
        defer { for v in variables { unsetenv(v) } }
        try body()
    }

    /// Capacity (from stats) and whether a prompt of `blockTokens` + 1 tokens has one full block.
    static func shape(_ cache: OpaquePointer, blockTokens: Int) -> Int64 {
        var stats = kvcache_stats()
        #expect(kvcache_get_stats(cache, &stats) == 0)
        let prompt = (0 ..< blockTokens + 1).map { UInt32($0) }
        #expect(kvcache_add_sequence(cache, 1, prompt, prompt.count, nil, nil, nil, 0) == 0)
        var a = kvcache_allocation()
        #expect(kvcache_allocate(cache, 1, Int64(prompt.count), 0, &a) == 0)
        #expect(a.new_blocks == 2)  // one full block and one partial: the block size is blockTokens
        return stats.capacity_blocks
    }

    /// A YAML file holding `text` in a new temporary folder; the caller calls `remove` on both.
    static func file(_ text: String) throws -> (path: String, folder: String) {
        var template = Array("/tmp/kvcache-capi-XXXXXX".utf8CString)
        let folder = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }.map { String(cString: $0) })
        let path = folder + "/kvcache.yaml"
        let f = try #require(fopen(path, "w"))
        #expect(fputs(text, f) >= 0)
        fclose(f)
        return (path, folder)
    }

    static func remove(_ file: (path: String, folder: String)) {
        unlink(file.path)
        rmdir(file.folder)
    }

    @Test func fromEnvironment() throws {
        try Self.withEnvironment(["KVCACHE_CAPACITY_BLOCKS": "48", "KVCACHE_BLOCK_TOKENS": "8", "KVCACHE_POLICY": "probation"]) {
            var out: OpaquePointer?
            #expect(kvcache_create_from_env(&out) == 0)
            let cache = try #require(out)
            defer { _ = kvcache_destroy(cache) }
            #expect(Self.shape(cache, blockTokens: 8) == 48)
        }
    }

    @Test func fromFileWithVariablesOverriding() throws {
        let file = try Self.file("capacity_blocks: 40\nblock_tokens: 4\npolicy: marking\n")
        defer { Self.remove(file) }
        let path = file.path
        try Self.withEnvironment([:]) {
            var out: OpaquePointer?
            #expect(kvcache_create_from_file(path, &out) == 0)
            let cache = try #require(out)
            #expect(Self.shape(cache, blockTokens: 4) == 40)
            _ = kvcache_destroy(cache)
        }
        try Self.withEnvironment(["KVCACHE_CAPACITY_BLOCKS": "24"]) {
            var out: OpaquePointer?
            #expect(kvcache_create_from_file(path, &out) == 0)
            let cache = try #require(out)
            #expect(Self.shape(cache, blockTokens: 4) == 24)
            _ = kvcache_destroy(cache)
        }
        // KVCACHE_CONFIG_FILE names the file for kvcache_create_from_env.
        try Self.withEnvironment(["KVCACHE_CONFIG_FILE": path, "KVCACHE_BLOCK_TOKENS": "2"]) {
            var out: OpaquePointer?
            #expect(kvcache_create_from_env(&out) == 0)
            let cache = try #require(out)
            #expect(Self.shape(cache, blockTokens: 2) == 40)
            _ = kvcache_destroy(cache)
        }
    }

    @Test func badSettingsOpenNothingAndNameTheKey() throws {
        let sentinel = OpaquePointer(bitPattern: 0xDEAD)
        let cases: [([String: String], String)] = [
            ([:], "capacity_blocks (KVCACHE_CAPACITY_BLOCKS) is required"),
            (["KVCACHE_CAPACITY_BLOCKS": "-1"], "capacity_blocks (KVCACHE_CAPACITY_BLOCKS): must be in"),
            (["KVCACHE_CAPACITY_BLOCKS": "8", "KVCACHE_POLICY": "pgdsf"], "policy (KVCACHE_POLICY): pgdsf prices"),
            (["KVCACHE_CAPACITY_BLOCKS": "8", "KVCACHE_TIERS_HOST_BLOCKS": "x"], "tiers.host_blocks (KVCACHE_TIERS_HOST_BLOCKS)"),
            (["KVCACHE_CAPACITY_BLOCKS": "8", "KVCACHE_CONFIG_FILE": "/nonexistent/kvcache.yaml"], "/nonexistent/kvcache.yaml: no such file"),
        ]
        for (env, says) in cases {
            try Self.withEnvironment(env) {
                var out = sentinel
                #expect(kvcache_create_from_env(&out) == KVCACHE_ERR_INVALID_ARGUMENT.code && out == sentinel)
                #expect(lastError.hasPrefix("kvcache_create_from_env: invalid argument: ") && lastError.contains(says), "\(lastError)")
            }
        }
        try Self.withEnvironment(["KVCACHE_CAPACITY_BLOCKS": "8"]) {
            var out = sentinel
            #expect(kvcache_create_from_file(nil, &out) == KVCACHE_ERR_NULL_POINTER.code && out == sentinel)
            #expect(kvcache_create_from_file("/nonexistent.yaml", nil) == KVCACHE_ERR_NULL_POINTER.code)
            #expect(kvcache_create_from_env(nil) == KVCACHE_ERR_NULL_POINTER.code)
            let invalidUTF8: [CChar] = [0x41, -1, 0]
            #expect(kvcache_create_from_file(invalidUTF8, &out) == KVCACHE_ERR_INVALID_ARGUMENT.code && out == sentinel)
        }
    }
}
