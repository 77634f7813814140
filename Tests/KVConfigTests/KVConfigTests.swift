import Foundation
import KVCache
import KVPlan
import KVTiers
import Testing
@testable import KVConfig

/// Settings from `KVCACHE_*` variables and YAML files: each source alone, their precedence, and every
/// kind of bad value refused with the key named.
struct KVConfigTests {
    /// A YAML file with `text` in a fresh temporary folder, removed by the caller's `defer`.
    static func file(_ text: String) throws -> (path: String, folder: URL) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvconfig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent("kvcache.yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, folder)
    }

    @Test func environmentAlone() throws {
        let s = try KVSettingsLoader.load(environment: [
            "KVCACHE_CAPACITY_BLOCKS": "4096", "KVCACHE_BLOCK_TOKENS": "32", "KVCACHE_POLICY": "pgdsf-probation",
            "KVCACHE_FIRST_USE_WEIGHT": "0.5", "KVCACHE_RECOMPUTE_SECONDS_PER_TOKEN": "2.706e-5",
            "KVCACHE_RECOMPUTE_SECONDS_PER_CONTEXT_PAIR": "1.325e-9", "KVCACHE_NAMESPACE": "llama3",
            "KVCACHE_PREFIX_CACHING": "off", "KVCACHE_TIERS_HOST_BLOCKS": "8192",
            "KVCACHE_TIERS_DISK_PATH": "/var/cache/kv", "KVCACHE_TIERS_DISK_BYTES": "1073741824",
            "KVCACHE_EVENTS_ENABLED": "yes", "KVCACHE_EVENTS_ENDPOINT": "ipc:///tmp/kv.sock",
            "OTHER_CAPACITY_BLOCKS": "1",
        ])
        #expect(s.cache.capacityBlocks == 4096 && s.cache.blockTokens == 32 && s.cache.namespace == "llama3")
        #expect(s.cache.policy == .pgdsfProbation && s.cache.policyParameters.firstUseWeight == 0.5)
        #expect(s.cache.recomputeCost == (try RecomputeCost(secondsPerToken: 2.706e-5, secondsPerContextPair: 1.325e-9)))
        #expect(!s.cache.prefixCaching && !s.cache.recordEvents)
        #expect(s.tiers.hostBlocks == 8192 && s.tiers.diskPath == "/var/cache/kv" && s.tiers.diskBytes == 1 << 30)
        #expect(s.events.enabled && s.events.endpoint == "ipc:///tmp/kv.sock" && s.events.replayEndpoint == nil)
        let manager = try s.cache.makeManager()
        #expect(manager.capacityBlocks == 4096 && manager.index.policy.name == "pgdsf-probation")
    }

    @Test func fileAloneAndDefaults() throws {
        let (path, folder) = try Self.file("""
            # the device pool
            capacity_blocks: 1000
            policy: probation
            protection: 2.5
            tiers:
              host_blocks: 64
              workers: 4
            events:
              replay_endpoint: tcp://*:5558
              topic: kv
            """)
        defer { try? FileManager.default.removeItem(at: folder) }
        let s = try KVSettingsLoader.load(file: path, environment: [:])
        #expect(s.cache.capacityBlocks == 1000 && s.cache.policy == .probation && s.cache.policyParameters.protection == 2.5)
        #expect(s.cache.blockTokens == 16 && s.cache.prefixCaching && s.cache.recomputeCost == nil)  // defaults
        #expect(s.tiers.hostBlocks == 64 && s.tiers.workers == 4 && s.tiers.diskPath == nil && s.tiers.spillWatermark == 0.9)
        #expect(s.events.replayEndpoint == "tcp://*:5558" && s.events.topic == "kv" && s.events.endpoint == "tcp://*:5557")
        #expect(!s.events.enabled)
        #expect(try s.cache.makeManager().index.policy.name == "probation")
    }

    @Test func environmentOverridesTheFileWhichOverridesDefaults() throws {
        let (path, folder) = try Self.file("capacity_blocks: 1000\nblock_tokens: 8\ntiers:\n  host_blocks: 64\n")
        defer { try? FileManager.default.removeItem(at: folder) }
        let env = ["KVCACHE_CAPACITY_BLOCKS": "2000", "KVCACHE_TIERS_WORKERS": "3", "KVCACHE_CONFIG_FILE": path]
        let s = try KVSettingsLoader.load(file: path, environment: env)
        #expect(s.cache.capacityBlocks == 2000)   // variable over file
        #expect(s.cache.blockTokens == 8)         // file over default
        #expect(s.tiers.hostBlocks == 64 && s.tiers.workers == 3 && s.tiers.layerGroups == 1)
        // KVCACHE_CONFIG_FILE names the file for the environment's loader.
        #expect(try KVSettingsLoader.fromEnvironment(env) == s)
        #expect(try KVSettingsLoader.fromEnvironment(["KVCACHE_CAPACITY_BLOCKS": "5"]).cache.capacityBlocks == 5)
    }

    /// Each bad value fails the load with its own key named (and no settings built).
    @Test(arguments: [
        ("KVCACHE_BLOCK_TOKENS", "0", "block_tokens"), ("KVCACHE_BLOCK_TOKENS", "16x", "block_tokens"),
        ("KVCACHE_CAPACITY_BLOCKS", "-5", "capacity_blocks"), ("KVCACHE_CAPACITY_BLOCKS", "1.5", "capacity_blocks"),
        ("KVCACHE_CAPACITY_BLOCKS", "99999999999", "capacity_blocks"), ("KVCACHE_POLICY", "arc", "policy"),
        ("KVCACHE_POLICY", "pgdsf", "policy"), ("KVCACHE_FIRST_USE_WEIGHT", "1.5", "first_use_weight"),
        ("KVCACHE_FIRST_USE_WEIGHT", "nan", "first_use_weight"), ("KVCACHE_PROTECTION", "-1", "protection"),
        ("KVCACHE_HORIZON_FACTOR", "0", "horizon_factor"), ("KVCACHE_PREFIX_CACHING", "maybe", "prefix_caching"),
        ("KVCACHE_RECOMPUTE_SECONDS_PER_TOKEN", "-1e-5", "recompute_seconds_per_token"),
        ("KVCACHE_TIERS_HOST_BLOCKS", "-3", "tiers.host_blocks"), ("KVCACHE_TIERS_DISK_BYTES", "100", "tiers.disk_path"),
        ("KVCACHE_TIERS_DISK_PATH", "/tmp/kv", "tiers.disk_bytes"), ("KVCACHE_TIERS_WORKERS", "0", "tiers.workers"),
        ("KVCACHE_TIERS_SPILL_WATERMARK", "1.01", "tiers.spill_watermark"),
        ("KVCACHE_EVENTS_ENDPOINT", "http://x", "events.endpoint"),
        ("KVCACHE_EVENTS_REPLAY_ENDPOINT", "tcp://*:5557", "events.replay_endpoint"),
        ("KVCACHE_EVENTS_HWM", "0", "events.hwm"), ("KVCACHE_EVENTS_BUFFER_STEPS", "lots", "events.buffer_steps"),
        ("KVCACHE_EVENTS_DATA_PARALLEL_RANK", "-1", "events.data_parallel_rank"),
        ("KVCACHE_LAYOUT_DTYPE_BYTES", "3", "layout.dtype_bytes"), ("KVCACHE_LAYOUT_LAYERS", "-2", "layout.layers"),
        ("KVCACHE_TIERS_NUMA_NODE", "-1", "tiers.numa_node"), ("KVCACHE_TIERS_WRITE_POLICY", "sometimes", "tiers.write_policy"),
        ("KVCACHE_TIERS_WRITE_POLICY", "after_hits:0", "tiers.write_policy"), ("KVCACHE_TIERS_COMPRESS", "zstd", "tiers.compress"),
    ])
    func badValueNamesItsKey(variable: String, value: String, key: String) throws {
        var env = ["KVCACHE_CAPACITY_BLOCKS": "64"]
        env[variable] = value
        let error = #expect(throws: KVConfigError.self) { try KVSettingsLoader.load(environment: env) }
        #expect(error?.key == key, "\(String(describing: error))")
        let expectedVariable = KVConfigKey.all.first { $0.name == key }?.variable ?? ""
        #expect(error?.description.contains("configuration key \(key) (\(expectedVariable))") == true)
    }

    @Test func missingCapacityAndBadFiles() throws {
        #expect(throws: KVConfigError.missing(key: "capacity_blocks", variable: "KVCACHE_CAPACITY_BLOCKS")) {
            try KVSettingsLoader.load(environment: ["KVCACHE_BLOCK_TOKENS": "8"])
        }
        let (list, folder) = try Self.file("- 1\n- 2\n")
        defer { try? FileManager.default.removeItem(at: folder) }
        for path in [list, folder.path, folder.appendingPathComponent("absent.yaml").path] {
            let error = #expect(throws: KVConfigError.self) {
                try KVSettingsLoader.load(file: path, environment: ["KVCACHE_CAPACITY_BLOCKS": "8"])
            }
            guard case .file(let p, _) = error else { Issue.record("\(String(describing: error))"); continue }
            #expect(p == path)
        }
        // A bad value in the file is named like one in the environment.
        let (bad, folder2) = try Self.file("capacity_blocks: 10\ntiers:\n  host_blocks: many\n")
        defer { try? FileManager.default.removeItem(at: folder2) }
        #expect(throws: KVConfigError.invalidValue(key: "tiers.host_blocks", variable: "KVCACHE_TIERS_HOST_BLOCKS",
                                                   message: "must be an integer, got 'many'")) {
            try KVSettingsLoader.load(file: bad, environment: [:])
        }
        // A misspelt key, at the top or in a section, is named rather than ignored.
        for (text, key) in [("capacity_blocks: 10\npolcy: lru\n", "polcy"),
                            ("capacity_blocks: 10\ntiers:\n  host_block: 4\n", "tiers.host_block"),
                            ("capacity_blocks: 10\nevents:\n  endpoint:\n    deep: 1\n", "events.endpoint.deep")] {
            let (typo, folder4) = try Self.file(text)
            defer { try? FileManager.default.removeItem(at: folder4) }
            #expect(throws: KVConfigError.unknownKey(key: key, path: typo)) {
                try KVSettingsLoader.load(file: typo, environment: [:])
            }
        }
        // An empty file (comments only) holds no values: the environment decides.
        let (empty, folder3) = try Self.file("# nothing yet\n\n")
        defer { try? FileManager.default.removeItem(at: folder3) }
        #expect(try KVSettingsLoader.load(file: empty, environment: ["KVCACHE_CAPACITY_BLOCKS": "9"]).cache.capacityBlocks == 9)
    }

    /// Random settings split at random between the file and the environment (some keys in both, with
    /// different values) load back as the model says: the variable's value where there is one, else the file's.
    @Test(arguments: 1 ... 20)
    func randomSplitsLoadAsTheModelSays(seed: Int) throws {
        var rng = SplitMix64(seed: UInt64(seed))
        func pick<T>(_ xs: [T]) -> T { xs[Int(rng.next() % UInt64(xs.count))] }
        // Candidate values per key (all valid, and valid in any combination).
        let values: [(KVConfigKey, [String])] = [
            (.capacityBlocks, ["1", "64", "4096"]), (.blockTokens, ["1", "16", "1024"]), (.namespace, ["a", "model-b"]),
            (.prefixCaching, ["true", "false"]), (.recordEvents, ["true", "false"]),
            (.policy, ["lru", "fifo", "lfu", "probation", "marking"]), (.firstUseWeight, ["0", "0.25", "1"]),
            (.protection, ["0", "3", "7.5"]), (.horizonFactor, ["0.5", "4"]), (.hostBlocks, ["0", "128"]),
            (.workers, ["1", "8"]), (.layerGroups, ["1", "32"]), (.spillWatermark, ["0.5", "1"]),
            (.eventsEnabled, ["true", "false"]), (.endpoint, ["tcp://*:6000", "inproc://kv"]), (.topic, ["", "t"]),
            (.bufferSteps, ["1", "500"]), (.highWaterMark, ["10", "1000"]),
            (.layers, ["32", "64"]), (.kvHeads, ["1", "8"]), (.headDim, ["64", "128"]), (.dtypeBytes, ["1", "2", "4"]),
            (.dataParallelRank, ["0", "3"]), (.compress, ["true", "false"]),
            (.writePolicy, ["write_back", "write_through", "after_hits:2"]),
        ]
        var fileValues: [KVConfigKey: String] = [:], env: [String: String] = [:], expected: [KVConfigKey: String] = [:]
        for (key, options) in values {
            let inFile = rng.next() % 2 == 0, inEnv = rng.next() % 3 == 0
            if inFile { fileValues[key] = pick(options); expected[key] = fileValues[key] }
            if inEnv { env[key.variable] = pick(options); expected[key] = env[key.variable] }
        }
        if expected[.capacityBlocks] == nil { env[Key.capacityBlocks.variable] = "8"; expected[.capacityBlocks] = "8" }
        // A host tier needs the layout: the keys not drawn come from the environment then.
        if expected[.hostBlocks] == "128" {
            for (key, value) in [(Key.layers, "32"), (.kvHeads, "8"), (.headDim, "128")] where expected[key] == nil {
                env[key.variable] = value
                expected[key] = value
            }
        }
        // The file: top-level keys, then one mapping per section.
        var yaml = ""
        for (key, value) in fileValues where !key.name.contains(".") { yaml += "\(key.name): \"\(value)\"\n" }
        for section in ["layout", "tiers", "events"] {
            let inSection = fileValues.filter { $0.key.name.hasPrefix(section + ".") }
            if inSection.isEmpty { continue }
            yaml += "\(section):\n"
            for (key, value) in inSection { yaml += "  \(key.components[1]): \"\(value)\"\n" }
        }
        let (path, folder) = try Self.file(yaml)
        defer { try? FileManager.default.removeItem(at: folder) }
        let s = try KVSettingsLoader.load(file: path, environment: env)
        func want(_ key: KVConfigKey) -> String? { expected[key] }
        #expect(s.cache.capacityBlocks == Int(want(.capacityBlocks)!))
        #expect(s.cache.blockTokens == want(.blockTokens).map { Int($0)! } ?? 16)
        #expect(s.cache.namespace == want(.namespace) ?? "")
        #expect(s.cache.prefixCaching == want(.prefixCaching).map { $0 == "true" } ?? true)
        #expect(s.cache.recordEvents == want(.recordEvents).map { $0 == "true" } ?? false)
        #expect(s.cache.policy.rawValue == want(.policy) ?? "lru")
        #expect(s.cache.policyParameters == EvictionPolicyKind.Parameters(
            firstUseWeight: want(.firstUseWeight).map { Double($0)! } ?? 0.25,
            protection: want(.protection).map { Double($0)! } ?? 3, horizonFactor: want(.horizonFactor).map { Double($0)! } ?? 4))
        #expect(s.tiers.hostBlocks == want(.hostBlocks).map { Int($0)! } ?? 0)
        #expect(s.tiers.workers == want(.workers).map { Int($0)! } ?? 2)
        #expect(s.tiers.layerGroups == want(.layerGroups).map { Int($0)! } ?? 1)
        #expect(s.tiers.spillWatermark == want(.spillWatermark).map { Double($0)! } ?? 0.9)
        #expect(s.events.enabled == want(.eventsEnabled).map { $0 == "true" } ?? false)
        #expect(s.events.endpoint == want(.endpoint) ?? "tcp://*:5557")
        #expect(s.events.topic == want(.topic) ?? "")
        #expect(s.events.bufferSteps == want(.bufferSteps).map { Int($0)! } ?? 10_000)
        #expect(s.events.highWaterMark == want(.highWaterMark).map { Int($0)! } ?? 100_000)
        #expect(s.events.dataParallelRank == want(.dataParallelRank).map { Int($0)! } ?? 0)
        #expect(s.layout.layers == want(.layers).map { Int($0)! } ?? 0)
        #expect(s.layout.dtypeBytes == want(.dtypeBytes).map { Int($0)! } ?? 2)
        #expect(s.tiers.compress == want(.compress).map { $0 == "true" } ?? true)
        #expect(s.tiers.writePolicyName == want(.writePolicy) ?? "write_back")
        // The cache it describes opens, with the policy it names; the tiers' configuration is there
        // exactly when a tier is, with the geometry of the layout keys.
        #expect(try s.cache.makeManager().index.policy.name == s.cache.policy.rawValue)
        let tiers = try s.tierConfig()
        #expect((tiers != nil) == (s.tiers.hostBlocks > 0))
        if let tiers {
            #expect(tiers.layout.bytesPerBlock == 2 * s.layout.layers * s.layout.kvHeads * s.layout.headDim * s.layout.dtypeBytes
                    * s.cache.blockTokens)
            #expect(tiers.hostBlocks == 128 && tiers.layerGroups == s.tiers.layerGroups && tiers.writePolicy == s.tiers.writePolicy)
        }
    }
}

/// The tier manager's configuration from one file: every tier key reaches `TierConfig`, the manager opens
/// from it, and the keys that contradict each other are named.
struct KVSettingsTierTests {
    @Test func oneFileBringsUpTheTiers() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvconfig-tiers-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let (path, fileFolder) = try KVConfigTests.file("""
            capacity_blocks: 64
            block_tokens: 16
            layout:
              layers: 4
              kv_heads: 2
              head_dim: 64
              dtype_bytes: 2
            tiers:
              host_blocks: 32
              disk_path: \(folder.path)
              disk_bytes: 4194304
              numa_node: 0
              lock_host_memory: false
              compress: false
              write_policy: after_hits:2
              layer_groups: 2
              workers: 3
              spill_watermark: 0.5
            events:
              enabled: true
            """)
        defer { try? FileManager.default.removeItem(at: fileFolder) }
        let s = try KVSettingsLoader.load(file: path, environment: [:])
        let c = try #require(try s.tierConfig())
        #expect(c.layout == (try KVGeometry(layers: 4, kvHeads: 2, headDim: 64, dtype: .fp16, blockTokens: 16)))
        #expect(c.layout.bytesPerBlock == 32_768)
        #expect(c.hostBlocks == 32 && c.hostPlacement == .node(0) && !c.lockHostMemory)
        #expect(c.disk?.directory == folder.path && c.disk?.capacityBytes == 4 << 20 && c.disk?.compress == false)
        #expect(c.disk?.maxBlockBytes == 32_768 && c.disk?.elementSize == 2)
        #expect(c.writePolicy == .writeAfterHits(2) && c.layerGroups == 2 && c.workers == 3 && c.spillWatermark == 0.5)
        // events.enabled keeps events in the pool and the tiers (the publisher drains them).
        #expect(c.recordEvents && s.cacheConfig.recordEvents && !s.cache.cacheConfig.recordEvents)
        // The manager opens from it (over the stand-in device pool) with the host tier it says.
        let device = try HostDeviceMemory(layout: c.layout, capacityBlocks: 64)
        let manager = try KVTierManager(config: c, device: device)
        #expect(manager.statistics.host.capacity == 32)
        manager.close()
        #expect(FileManager.default.fileExists(atPath: folder.path))
        // No tier configured: no tier configuration, and no layout needed.
        #expect(try KVSettingsLoader.load(environment: ["KVCACHE_CAPACITY_BLOCKS": "8"]).tierConfig() == nil)
    }

    /// A tier without the layout loads (the cache alone needs none) but builds no tier configuration.
    @Test func tiersWithoutTheLayoutNameTheKeyWhenBuilt() throws {
        let s = try KVSettingsLoader.load(environment: ["KVCACHE_CAPACITY_BLOCKS": "64", "KVCACHE_TIERS_HOST_BLOCKS": "8"])
        #expect(throws: KVConfigError.invalidValue(key: "layout.layers", variable: "KVCACHE_LAYOUT_LAYERS",
                                                   message: "is needed when a tier is configured (tiers.host_blocks or tiers.disk_path)")) {
            try s.tierConfig()
        }
    }

    @Test(arguments: [
        (["KVCACHE_TIERS_HOST_BLOCKS": "8", "KVCACHE_LAYOUT_LAYERS": "4", "KVCACHE_LAYOUT_HEAD_DIM": "64"], "layout.kv_heads"),
        (["KVCACHE_TIERS_DISK_PATH": "/tmp/kv", "KVCACHE_TIERS_DISK_BYTES": "1000", "KVCACHE_LAYOUT_LAYERS": "2",
          "KVCACHE_LAYOUT_KV_HEADS": "1", "KVCACHE_LAYOUT_HEAD_DIM": "8", "KVCACHE_TIERS_LAYER_GROUPS": "3"], "tiers.layer_groups"),
        (["KVCACHE_TIERS_HOST_BLOCKS": "8", "KVCACHE_LAYOUT_LAYERS": "65536", "KVCACHE_LAYOUT_KV_HEADS": "64",
          "KVCACHE_LAYOUT_HEAD_DIM": "256"], "layout.layers"),
        (["KVCACHE_TIERS_NUMA_NODE": "1", "KVCACHE_TIERS_NUMA_DEVICE": "0000:3b:00.0"], "tiers.numa_device"),
    ])
    func contradictionsNameTheirKey(env: [String: String], key: String) throws {
        let error = #expect(throws: KVConfigError.self) {
            try KVSettingsLoader.load(environment: env.merging(["KVCACHE_CAPACITY_BLOCKS": "64"]) { a, _ in a })
        }
        #expect(error?.key == key, "\(String(describing: error))")
    }
}

/// Errors stay on one line and short, whatever the value or the file holds.
struct KVConfigErrorTextTests {
    @Test func hostileValuesAndParserMessagesAreExcerpted() throws {
        let error = #expect(throws: KVConfigError.self) {
            try KVSettingsLoader.load(environment: ["KVCACHE_CAPACITY_BLOCKS": "1\n2\t" + String(repeating: "9", count: 500)])
        }
        let text = try #require(error).description
        #expect(!text.contains("\n") && !text.contains("\t") && text.count < 200, "\(text)")
        #expect(text.contains("got '1\\n2\\t999") && text.contains("...'"))
        let (path, folder) = try KVConfigTests.file("capacity_blocks: 8\nx: " + String(repeating: "{a: ", count: 5000))
        defer { try? FileManager.default.removeItem(at: folder) }
        let fileError = #expect(throws: KVConfigError.self) { try KVSettingsLoader.load(file: path, environment: [:]) }
        let fileText = try #require(fileError).description
        #expect(!fileText.contains("\n") && fileText.count < 400, "\(fileText)")
        #expect(KVConfigError.excerpt("a\u{1}b") == "a\\u{1}b")
    }
}
