import ArgumentParser
import Foundation
import KVCache
import KVConfig
import KVData
import KVEvents
import KVTiers

/// `kvcache config`: loads the embedded library's settings as kvcache_create_from_env and
/// kvcache_create_from_file do (KVCACHE_* variables over a YAML file over the defaults), validates
/// them and prints every key with its value and where it came from, or the error naming the bad key.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check and print the library's settings from KVCACHE_* variables and a YAML file.",
        discussion: """
            Keys and their variables are listed in docs/CONFIGURATION.md; a variable overrides the file's \
            key and the file overrides the default. Exits 1 with the key named when a value is refused.
            """)

    @Option(help: "The YAML file (default: the one KVCACHE_CONFIG_FILE names, if any).")
    var file: String?

    @Flag(help: "Also open what the settings describe, then close it: the device pool, the tiers (host memory mapped, the disk folder opened or created; over a one-block stand-in device) and the event publisher (its addresses bound).")
    var open = false

    @OptionGroup(title: "Report") var report: ReportOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let path = file ?? environment[KVSettingsLoader.fileVariable].flatMap { $0.isEmpty ? nil : $0 }
        let settings: KVSettings
        do { settings = try KVSettingsLoader.load(file: path, environment: environment) } catch {
            throw CLIError(error.description)
        }
        let opened = try open ? Self.open(settings) : []
        let rows = settings.keyValues.map { row in
            (row.key, row.value, environment[row.key.variable] != nil ? row.key.variable : (path == nil ? "default" : "file or default"))
        }
        if report.machine {
            let settingsValue: JSONValue = .object(rows.map { ($0.0.name, $0.1.map { .string($0) } ?? .null) })
            let fromEnvironment: JSONValue = .array(rows.filter { $0.2.hasPrefix("KVCACHE_") }.map { .string($0.0.name) })
            let file: JSONValue = path.map { .string($0) } ?? .null
            try report.emit(command: "config", fields: [("file", file)],
                            runs: [.object([("settings", settingsValue), ("from_environment", fromEnvironment)]
                                           + (open ? [("opened", .object(opened))] : []))])
            return
        }
        print("settings" + (path.map { " from \($0) and" } ?? " from") + " the environment, all valid")
        let width = rows.map(\.0.name.count).max() ?? 0
        for (key, value, source) in rows {
            print(key.name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                  + (value ?? "(not set)").padding(toLength: 24, withPad: " ", startingAt: 0) + source)
        }
        if open {
            print("opened and closed: " + opened.map { "\($0.0) \($0.1.text)" }.joined(separator: ", "))
        }
    }

    /// Opens the device pool, the tiers and the publisher `settings` describe, closes them, and says
    /// what was opened. Errors name the key (configuration) or the resource (memory, folder).
    static func open(_ settings: KVSettings) throws -> [(String, JSONValue)] {
        let manager: KVCacheManager
        do { manager = try KVCacheManager(settings.cacheConfig) } catch { throw CLIError("device pool: \(error)") }
        var opened: [(String, JSONValue)] = [("device_blocks", .int(manager.capacityBlocks))]
        do {
            if let config = try settings.tierConfig() {
                let tiers: KVTierManager
                do {
                    tiers = try KVTierManager(config: config, device: try HostDeviceMemory(layout: config.layout, capacityBlocks: 1))
                } catch { throw CLIError("tiers: \(error)") }
                let s = tiers.statistics
                opened += [("block_bytes", .int(config.layout.bytesPerBlock)), ("host_blocks", .int(s.host.capacity)),
                           ("disk", config.disk.map { .string($0.directory) } ?? .null)]
                tiers.close()
            }
            if let publisher = try ZmqEventPublisher.open(settings: settings) {
                opened += [("events_endpoint", .string(publisher.config.endpoint)),
                           ("events_replay_endpoint", publisher.config.replayEndpoint.map { .string($0) } ?? .null)]
                publisher.close()
            }
        } catch let error as KVConfigError { throw CLIError(error.description) }
        return opened
    }
}
