import Foundation
import Testing

/// `kvcache config`: the settings the library would open, from the environment and a YAML file, and
/// the refusal that names a bad key.
@Suite("kvcache config")
struct ConfigCLITests {
    /// Runs `kvcache config arguments` with exactly `variables` as its KVCACHE_* environment.
    static func run(_ arguments: [String], _ variables: [String: String]) throws -> (status: Int32, out: Data, err: String) {
        let environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("KVCACHE_") }.merging(variables) { $1 }
        return try CLIJSONTests.run(["config"] + arguments, environment: environment)
    }

    @Test func printsTheMergedSettingsAndTheirSources() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("kv.yaml").path
        try "capacity_blocks: 100\npolicy: probation\ntiers:\n  host_blocks: 10\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try Self.run(["--json"], ["KVCACHE_CONFIG_FILE": path, "KVCACHE_TIERS_HOST_BLOCKS": "20"])
        #expect(r.status == 0, "\(r.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
        #expect(report["command"] as? String == "config" && report["file"] as? String == path)
        let o = try #require((report["runs"] as? [[String: Any]])?.first)
        let settings = try #require(o["settings"] as? [String: Any])
        #expect(settings["capacity_blocks"] as? String == "100" && settings["policy"] as? String == "probation")
        #expect(settings["tiers.host_blocks"] as? String == "20" && settings["block_tokens"] as? String == "16")
        #expect(o["from_environment"] as? [String] == ["tiers.host_blocks"])
    }

    @Test func refusesABadValueNamingItsKey() throws {
        let r = try Self.run([], ["KVCACHE_CAPACITY_BLOCKS": "64", "KVCACHE_TIERS_SPILL_WATERMARK": "2"])
        #expect(r.status != 0)
        #expect(r.err.contains("configuration key tiers.spill_watermark (KVCACHE_TIERS_SPILL_WATERMARK): must be in (0, 1]"), "\(r.err)")
    }

    /// `--open` brings up the pool, the tiers and the publisher of one file, or names the key that stops it.
    @Test func openBringsUpTiersAndEventsFromOneFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("kvcache-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("kv.yaml").path
        try """
            capacity_blocks: 100
            layout: {layers: 2, kv_heads: 1, head_dim: 8}
            tiers: {host_blocks: 10, disk_path: \(folder.path)/disk, disk_bytes: 1048576}
            events: {enabled: true, endpoint: ipc://\(folder.path)/pub, replay_endpoint: ipc://\(folder.path)/replay}
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try Self.run(["--file", path, "--open", "--json"], [:])
        #expect(r.status == 0, "\(r.err)")
        let report = try #require(try JSONSerialization.jsonObject(with: r.out) as? [String: Any])
        let opened = try #require((report["runs"] as? [[String: Any]])?.first?["opened"] as? [String: Any])
        #expect(opened["device_blocks"] as? Int == 100 && opened["host_blocks"] as? Int == 10)
        #expect(opened["block_bytes"] as? Int == 2 * 2 * 1 * 8 * 2 * 16 && opened["disk"] as? String == folder.path + "/disk")
        #expect(opened["events_endpoint"] as? String == "ipc://\(folder.path)/pub")
        #expect(FileManager.default.fileExists(atPath: folder.path + "/disk"))
        // Without the layout the file loads, and --open names the key the tiers need.
        let bare = try Self.run(["--open"], ["KVCACHE_CAPACITY_BLOCKS": "64", "KVCACHE_TIERS_HOST_BLOCKS": "8"])
        #expect(bare.status == 1 && bare.err.contains("configuration key layout.layers (KVCACHE_LAYOUT_LAYERS)"), "\(bare.err)")
    }
}
