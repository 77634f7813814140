internal import Configuration
internal import Foundation
internal import Yams

/// A swift-configuration provider over one YAML file, read and parsed once, synchronously, when it is
/// built (the library's `FileProvider` reads asynchronously; the C ABI's calls cannot wait on a task).
/// Values never change afterwards, so watching yields the current value once. A key that is not one of
/// `KVConfigKey.all` (at any depth) is refused, so a misspelt key cannot be silently ignored.
struct YAMLFileProvider: ConfigProvider {
    private let yaml: YAMLSnapshot?
    private let empty: InMemoryProvider
    let path: String

    /// Reads and parses `path`. An empty file (or one of comments only) holds no values.
    /// - Throws: `KVConfigError.file` when the file cannot be read, is not YAML, or its top level is
    ///   not a mapping; nothing is kept then.
    init(path: String) throws(KVConfigError) {
        self.path = path
        empty = InMemoryProvider(name: "yaml \(path)", values: [:])
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .file(path: path, message: "no such file")
        }
        guard !isDirectory.boolValue, let data = FileManager.default.contents(atPath: path) else {
            throw .file(path: path, message: isDirectory.boolValue ? "is a directory" : "cannot be read")
        }
        let bytes = [UInt8](data)
        let blank = String(decoding: bytes, as: UTF8.self).split(separator: "\n").allSatisfy {
            let line = $0.drop { $0 == " " || $0 == "\t" || $0 == "\r" }
            return line.isEmpty || line.hasPrefix("#") || line == "---" || line == "..."
        }
        if blank {
            yaml = nil
            return
        }
        do {
            yaml = try YAMLSnapshot(data: bytes.span.bytes, providerName: "yaml \(path)", parsingOptions: .default)
        } catch {
            throw .file(path: path, message: "is not a YAML mapping of keys (\(KVConfigError.excerpt("\(error)", limit: 160)))")
        }
        let known = Set(KVConfigKey.all.map(\.name))
        if let unknown = Self.keyNames(String(decoding: bytes, as: UTF8.self)).first(where: { !known.contains($0) }) {
            throw .unknownKey(key: unknown, path: path)
        }
    }

    /// The dotted name of every leaf key of the file's top-level mapping (a mapping's keys under its
    /// own name), in file order; empty when the text does not parse (the snapshot reported that). O(nodes).
    static func keyNames(_ text: String) -> [String] {
        guard let root = (try? Yams.compose(yaml: text))??.mapping else { return [] }
        var names: [String] = []
        func walk(_ mapping: Node.Mapping, prefix: String) {
            for (key, value) in mapping {
                let name = prefix + (key.string ?? "?")
                if let inner = value.mapping { walk(inner, prefix: name + ".") } else { names.append(name) }
            }
        }
        walk(root, prefix: "")
        return names
    }

    var providerName: String { "yaml \(path)" }

    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        guard let yaml else { return try empty.value(forKey: key, type: type) }
        return try yaml.value(forKey: key, type: type)
    }

    nonisolated(nonsending) func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    nonisolated(nonsending) func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey, type: ConfigType,
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        try await watchValueFromValue(forKey: key, type: type, updatesHandler: updatesHandler)
    }

    func snapshot() -> any ConfigSnapshot { yaml ?? empty.snapshot() }

    nonisolated(nonsending) func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        try await watchSnapshotFromSnapshot(updatesHandler: updatesHandler)
    }
}
