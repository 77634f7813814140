import CKVCache
import Glibc
import KVCache
import KVCacheC
import KVCacheConfigLibrary  // linked for the functions of kvcache_config_library.h
import Testing

/// kvcache_create_from_env and kvcache_create_from_file: the settings reach the cache (capacity, block
/// size, policy), variables override the file, and a bad key fails the call with the key named and
/// nothing opened; without the configuration library (KVCACHE_CONFIG_LIBRARY naming a missing file) every
/// configuration call fails with KVCACHE_ERR_CONFIG_LIBRARY and opens nothing. The configuration library's
/// code is linked into the test process (`ConfigLibrary.useLinked`) rather than opened from
/// libkvcache_config.so. Serialized: the tests set the process environment. (No Foundation here: its String
/// overloads would change `contains("")` for the whole test module.)
@Suite(.serialized)
struct ConfigCABITests {
    static let variables = ["KVCACHE_CAPACITY_BLOCKS", "KVCACHE_BLOCK_TOKENS", "KVCACHE_POLICY", "KVCACHE_CONFIG_FILE",
                            "KVCACHE_TIERS_HOST_BLOCKS", "KVCACHE_RECOMPUTE_SECONDS_PER_TOKEN", "KVCACHE_CONFIG_LIBRARY",
                            "KVCACHE_EVENTS_ENABLED"]

    init() {
        // The header's declarations of the functions KVCacheConfigLibrary defines (a `@_cdecl` function taken
        // as `@convention(c)` in Swift would be emitted a second time under its C name).
        ConfigLibrary.useLinked(ConfigLibrary(load: kvcache_config_library_load, eventsOpen: kvcache_config_library_events_open,
                                              eventsPublish: kvcache_config_library_events_publish,
                                              eventsClose: kvcache_config_library_events_close))
    }

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

    @Test func missingConfigurationLibraryIsTypedAndOpensNothing() throws {
        let sentinel = OpaquePointer(bitPattern: 0xDEAD)
        let status = Int32(KVCACHE_ERR_CONFIG_LIBRARY.rawValue)
        try Self.withEnvironment(["KVCACHE_CAPACITY_BLOCKS": "8", "KVCACHE_CONFIG_LIBRARY": "/nonexistent/libkvcache_config.so.1"]) {
            var out = sentinel
            #expect(kvcache_create_from_env(&out) == status && out == sentinel)
            #expect(lastError.hasPrefix("kvcache_create_from_env: libkvcache_config.so is needed"), "\(lastError)")
            #expect(lastError.contains("KVCACHE_CONFIG_LIBRARY") && lastError.contains("/nonexistent/libkvcache_config.so.1"),
                    "\(lastError)")
            #expect(kvcache_tiers_create_from_config(nil, nil, nil, nil, &out) == status && out == sentinel)
            #expect(String(cString: kvcache_status_name(status)) == "KVCACHE_ERR_CONFIG_LIBRARY")
        }
        // Found again (here: linked in), the same call succeeds.
        try Self.withEnvironment(["KVCACHE_CAPACITY_BLOCKS": "8"]) {
            var out: OpaquePointer?
            #expect(kvcache_create_from_env(&out) == 0)
            _ = kvcache_destroy(try #require(out))
        }
    }

    /// events.enabled makes the cache opened from the settings record its events (a publisher drains them).
    @Test func eventsEnabledRecordsEvents() throws {
        for enabled in [false, true] {
            try Self.withEnvironment(["KVCACHE_CAPACITY_BLOCKS": "8", "KVCACHE_BLOCK_TOKENS": "4",
                                      "KVCACHE_EVENTS_ENABLED": enabled ? "true" : "false"]) {
                var out: OpaquePointer?
                #expect(kvcache_create_from_env(&out) == 0)
                let cache = try #require(out)
                defer { _ = kvcache_destroy(cache) }
                _ = Self.shape(cache, blockTokens: 4)
                #expect(kvcache_commit(cache, 1, 5) == 0)
                var events = [kvcache_event](repeating: kvcache_event(), count: 8)
                var keys = [kvcache_key](repeating: kvcache_key(), count: 8)
                var eventCount = 0, keyCount = 0
                #expect(kvcache_drain_events(cache, &events, 8, &eventCount, &keys, 8, &keyCount) == 0)
                #expect((eventCount == 1 && keyCount == 1) == enabled, "\(eventCount) events, \(keyCount) keys")
            }
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
