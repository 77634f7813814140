import ArgumentParser
import Foundation
import KVConfig
import KVData

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

    @OptionGroup(title: "Report") var report: ReportOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let path = file ?? environment[KVSettingsLoader.fileVariable].flatMap { $0.isEmpty ? nil : $0 }
        let settings: KVSettings
        do { settings = try KVSettingsLoader.load(file: path, environment: environment) } catch {
            throw CLIError(error.description)
        }
        let rows = settings.keyValues.map { row in
            (row.key, row.value, environment[row.key.variable] != nil ? row.key.variable : (path == nil ? "default" : "file or default"))
        }
        if report.machine {
            let settingsValue: JSONValue = .object(rows.map { ($0.0.name, $0.1.map { .string($0) } ?? .null) })
            let fromEnvironment: JSONValue = .array(rows.filter { $0.2.hasPrefix("KVCACHE_") }.map { .string($0.0.name) })
            let file: JSONValue = path.map { .string($0) } ?? .null
            try report.emit(command: "config", fields: [("file", file)],
                            runs: [.object([("settings", settingsValue), ("from_environment", fromEnvironment)])])
            return
        }
        print("settings" + (path.map { " from \($0) and" } ?? " from") + " the environment, all valid")
        let width = rows.map(\.0.name.count).max() ?? 0
        for (key, value, source) in rows {
            print(key.name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                  + (value ?? "(not set)").padding(toLength: 24, withPad: " ", startingAt: 0) + source)
        }
    }
}
