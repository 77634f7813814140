import CKVCache
import Glibc
import KVCache
@testable import KVCacheC
@testable import KVCacheConfigLibrary
import KVConfig
import KVPlan
import KVTiers
import Testing

/// The settings libkvcache_config.so hands to libkvcache_c.so: for varied `KVSettings`, the pool's and
/// the tiers' configurations that libkvcache_c.so rebuilds from `kvcache_config_library_settings`
/// (`ResolvedSettings`, from the values `kvcache_config_library_load` encodes) must equal, stored property
/// by stored property (Mirror: a field added to either configuration is compared too), what
/// `settings.cacheConfig` and `settings.tierConfig()` build directly. A field the encoder drops or the
/// decoder ignores therefore fails here, and so does a field of `KVSettings` that the generator below does
/// not vary (every stored leaf of the samples must take two values or more), so a new key cannot slip
/// through untested; every field of the C struct must vary too.
struct ResolvedSettingsRoundTripTests {
    static let samples = 400

    /// Valid settings with every field drawn at random (ranges of docs/CONFIGURATION.md).
    static func randomSettings(_ rng: inout SplitMix64) -> KVSettings {
        func chance(_ p: Double = 0.5) -> Bool { Double.random(in: 0 ..< 1, using: &rng) < p }
        var cache = CacheSettings(capacityBlocks: Int.random(in: 1 ... 1 << 20, using: &rng))
        cache.blockTokens = Int.random(in: 1 ... 1024, using: &rng)
        cache.namespace = chance() ? "" : "model-\(Int.random(in: 0 ..< 1000, using: &rng))"
        cache.prefixCaching = chance()
        cache.recordEvents = chance()
        cache.policy = EvictionPolicyKind.allCases.randomElement(using: &rng)!
        cache.policyParameters = EvictionPolicyKind.Parameters(
            firstUseWeight: Double.random(in: 0 ... 1, using: &rng), protection: Double.random(in: 0 ... 1e6, using: &rng),
            horizonFactor: Double.random(in: 0.001 ... 1e6, using: &rng))
        if cache.policy.needsRecomputeCost || chance() {
            cache.recomputeCost = try! RecomputeCost(secondsPerToken: Double.random(in: 0 ... 1e-3, using: &rng),
                                                     secondsPerContextPair: Double.random(in: 0 ... 1e-9, using: &rng))
        }
        var layout = LayoutSettings()
        let tiered = chance(0.75)
        if tiered || chance() {  // a layout without a tier loads too
            layout.layers = Int.random(in: 1 ... 32, using: &rng)
            layout.kvHeads = Int.random(in: 1 ... 16, using: &rng)
            layout.headDim = [32, 64, 96, 128].randomElement(using: &rng)!
            layout.dtypeBytes = [1, 2, 4].randomElement(using: &rng)!
        }
        var tiers = TierSettings()
        if tiered {
            let host = chance(0.8), disk = !host || chance()
            if host { tiers.hostBlocks = Int.random(in: 1 ... 100_000, using: &rng) }
            if disk {
                tiers.diskPath = "/var/cache/kvcache-\(Int.random(in: 0 ..< 1000, using: &rng))"
                tiers.diskBytes = Int.random(in: 1 ... 1 << 40, using: &rng)
            }
            tiers.workers = Int.random(in: 1 ... 64, using: &rng)
            tiers.layerGroups = Int.random(in: 1 ... layout.layers, using: &rng)
            tiers.spillWatermark = Double.random(in: 0.01 ... 1, using: &rng)
            switch Int.random(in: 0 ..< 3, using: &rng) {
            case 0: tiers.numaNode = Int.random(in: 0 ... 4095, using: &rng)
            case 1: tiers.numaDevice = "0000:\(Int.random(in: 10 ..< 100, using: &rng)):00.0"
            default: break
            }
            tiers.lockHostMemory = chance()
            tiers.compress = chance()
            tiers.writePolicy = [.writeBack, .writeThrough,
                                 .writeAfterHits(Int.random(in: 1 ... 1_000_000, using: &rng))].randomElement(using: &rng)!
        }
        var events = EventSettings()
        events.enabled = chance()
        events.endpoint = "tcp://*:\(Int.random(in: 1024 ..< 65536, using: &rng))"
        events.replayEndpoint = chance() ? nil : "tcp://*:\(Int.random(in: 1024 ..< 65536, using: &rng))"
        events.topic = chance() ? "" : "kv@\(Int.random(in: 0 ..< 100, using: &rng))"
        events.bufferSteps = Int.random(in: 1 ... 100_000, using: &rng)
        events.highWaterMark = Int.random(in: 1 ... 1_000_000, using: &rng)
        events.dataParallelRank = Int.random(in: 0 ..< 64, using: &rng)
        return KVSettings(cache: cache, layout: layout, tiers: tiers, events: events)
    }

    /// Every stored leaf of `value` by its path ("tiers.disk.some.capacityBytes"), rendered with
    /// `String(reflecting:)`: enum payloads and optionals are descended into, a closure renders as
    /// "(Function)", a nil optional as "nil".
    static func leaves(_ value: Any, _ path: String = "") -> [String: String] {
        let mirror = Mirror(reflecting: value)
        guard !mirror.children.isEmpty else { return [path: String(reflecting: value)] }
        var out: [String: String] = [:]
        for (i, child) in mirror.children.enumerated() {
            out.merge(leaves(child.value, path + "." + (child.label ?? "\(i)"))) { a, _ in a }
        }
        return out
    }

    /// Paths of `samples` (leaves) that never took two different values. A nil optional is the leaf
    /// "nil" at the optional's path and a set one has leaves below it instead, so a path whose only value
    /// is "nil" varies when some sample lacks it (the optional was set there).
    static func constant(_ samples: [[String: String]]) -> [String] {
        var seen: [String: Set<String>] = [:], present: [String: Int] = [:]
        for sample in samples {
            for (path, value) in sample {
                seen[path, default: []].insert(value)
                present[path, default: 0] += 1
            }
        }
        return seen.filter { path, values in
            values.count < 2 && !(values == ["nil"] && present[path]! < samples.count)
        }.map(\.key).sorted()
    }

    /// The values `kvcache_config_library_load` would hand over for `settings` (its strings freed after
    /// `ResolvedSettings` copied them), and that struct's leaves.
    static func handOver(_ settings: KVSettings) throws -> (ResolvedSettings, [String: String]) {
        let c = try kvcache_config_library_settings(settings)
        defer { for s in [c.key_namespace, c.eviction_policy, c.dtype, c.numa_device, c.disk_directory] { free(s) } }
        let strings = [("key_namespace", c.key_namespace), ("eviction_policy", c.eviction_policy), ("dtype", c.dtype),
                       ("numa_device", c.numa_device), ("disk_directory", c.disk_directory)]
        var fields = leaves(c).filter { leaf in !strings.contains { leaf.key.hasPrefix(".\($0.0)") } }
        for (name, s) in strings { fields["." + name] = s.map { String(cString: $0) } ?? "NULL" }  // the text, not the address
        return (ResolvedSettings(c), fields)
    }

    /// The paths at which `got` and `want` differ (a leaf missing from either counts).
    static func differences(_ got: [String: String], _ want: [String: String]) -> [String] {
        Set(got.keys).union(want.keys).filter { got[$0] != want[$0] }.sorted()
    }

    @Test func decodedConfigurationsEqualTheDirectOnes() throws {
        var rng = SplitMix64(seed: 0x5E77_1265)
        var settingsLeaves: [[String: String]] = [], structLeaves: [[String: String]] = []
        var mismatches: [String] = [], invalid: [Int] = [], tiered = 0
        for i in 0 ..< Self.samples {
            let settings = Self.randomSettings(&rng)
            do { try settings.validate() } catch { invalid.append(i) }
            settingsLeaves.append(Self.leaves(settings))
            let (resolved, fields) = try Self.handOver(settings)
            structLeaves.append(fields)

            let pool = Self.differences(Self.leaves(try resolved.cacheConfig()), Self.leaves(settings.cacheConfig))
            if !pool.isEmpty { mismatches.append("sample \(i), pool: \(pool)") }
            let direct = try settings.tierConfig()
            if resolved.c.has_tiers != (direct != nil) { mismatches.append("sample \(i): has_tiers \(resolved.c.has_tiers)") }
            if let direct {
                tiered += 1
                let tiers = Self.differences(Self.leaves(try resolved.tierConfig()), Self.leaves(direct))
                if !tiers.isEmpty { mismatches.append("sample \(i), tiers: \(tiers)") }
            }
        }
        #expect(invalid == [], "samples that do not validate")
        #expect(mismatches.isEmpty, "\(mismatches.count) samples differ, first: \(mismatches.prefix(3))")
        #expect(tiered > Self.samples / 2 && tiered < Self.samples)
        #expect(Self.constant(settingsLeaves) == [], "KVSettings fields the samples never vary")
        #expect(Self.constant(structLeaves) == [], "kvcache_config_library_settings fields never written")
    }

    /// The comparison itself: a configuration differing in one field, or in a field's payload, differs.
    @Test func leavesSeeEveryField() throws {
        let layout = try KVGeometry(layers: 2, kvHeads: 2, headDim: 8, dtype: .fp16, blockTokens: 4)
        let base = TierConfig(layout: layout, hostBlocks: 8, disk: DiskStoreConfig(directory: "/d", capacityBytes: 1 << 20, layout: layout))
        var other = base
        other.disk?.compress.toggle()
        #expect(Self.leaves(other) != Self.leaves(base))
        other = base
        other.writePolicy = .writeAfterHits(3)
        var third = base
        third.writePolicy = .writeAfterHits(4)
        #expect(Self.leaves(other) != Self.leaves(third))
        other = base
        other.hostPlacement = .node(1)
        #expect(Self.leaves(other) != Self.leaves(base))
        #expect(Self.leaves(base) == Self.leaves(base))
        var pool = KVCacheConfig(blockTokens: 4, capacityBlocks: 8)
        let before = Self.leaves(pool)
        pool.policyParameters.horizonFactor *= 2
        #expect(Self.leaves(pool) != before)
    }
}
