internal import Configuration
internal import Foundation
import KVCache

/// Builds `KVSettings` from `KVCACHE_*` environment variables and a YAML file through
/// swift-configuration: one `ConfigReader` over the environment (keys under the `kvcache` prefix) and
/// the file, in that order, so a variable overrides the file's key and the file overrides the default.
///
/// Every value is read as text and parsed here, strictly (an integer key refuses "12abc" and 1.5, a
/// boolean takes true/false/yes/no/on/off/1/0), so a bad value is an error naming its key and variable
/// rather than a silent default. Then `KVSettings.validate()` checks ranges and the keys against each
/// other. O(keys); reads the file once.
public enum KVSettingsLoader {
    /// The variable naming the YAML file that `fromEnvironment` reads (unset or empty: none).
    public static let fileVariable = "KVCACHE_CONFIG_FILE"

    /// The settings of `environment` (nil: the process environment) over those of the YAML file at
    /// `file` (nil: none) over the defaults.
    /// - Throws: `KVConfigError` naming the first bad key, a missing `capacity_blocks`, or a file that
    ///   cannot be read or parsed.
    public static func load(file: String? = nil, environment: [String: String]? = nil) throws(KVConfigError) -> KVSettings {
        let environment = environment ?? ProcessInfo.processInfo.environment
        var providers: [any ConfigProvider] = [
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "kvcache"),
        ]
        if let file { providers.append(try YAMLFileProvider(path: file)) }
        let r = Reader(config: ConfigReader(providers: providers))

        guard let capacity = try r.int(.capacityBlocks) else {
            throw .missing(key: Key.capacityBlocks.name, variable: Key.capacityBlocks.variable)
        }
        var cache = CacheSettings(capacityBlocks: capacity)
        cache.blockTokens = try r.int(.blockTokens) ?? cache.blockTokens
        cache.namespace = r.text(.namespace) ?? cache.namespace
        cache.prefixCaching = try r.bool(.prefixCaching) ?? cache.prefixCaching
        cache.recordEvents = try r.bool(.recordEvents) ?? cache.recordEvents
        if let name = r.text(.policy) {
            let trimmed = name.trimmingCharacters(in: .whitespaces).lowercased()
            guard let policy = EvictionPolicyKind(rawValue: trimmed) else {
                throw r.invalid(.policy, "must be one of \(EvictionPolicyKind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(KVConfigError.excerpt(name))'")
            }
            cache.policy = policy
        }
        cache.policyParameters.firstUseWeight = try r.double(.firstUseWeight) ?? cache.policyParameters.firstUseWeight
        cache.policyParameters.protection = try r.double(.protection) ?? cache.policyParameters.protection
        cache.policyParameters.horizonFactor = try r.double(.horizonFactor) ?? cache.policyParameters.horizonFactor
        let perToken = try r.double(.secondsPerToken) ?? 0, perPair = try r.double(.secondsPerPair) ?? 0
        if perToken != 0 || perPair != 0 {
            do { cache.recomputeCost = try RecomputeCost(secondsPerToken: perToken, secondsPerContextPair: perPair) } catch {
                let key: Key = perToken.isFinite && perToken >= 0 ? .secondsPerPair : .secondsPerToken
                throw r.invalid(key, "recompute costs must be finite and >= 0, got \(perToken) s/token and \(perPair) s/pair")
            }
        }

        var layout = LayoutSettings()
        layout.layers = try r.int(.layers) ?? layout.layers
        layout.kvHeads = try r.int(.kvHeads) ?? layout.kvHeads
        layout.headDim = try r.int(.headDim) ?? layout.headDim
        layout.dtypeBytes = try r.int(.dtypeBytes) ?? layout.dtypeBytes

        var tiers = TierSettings()
        tiers.hostBlocks = try r.int(.hostBlocks) ?? tiers.hostBlocks
        tiers.diskPath = r.text(.diskPath).flatMap { $0.isEmpty ? nil : $0 }
        tiers.diskBytes = try r.int(.diskBytes) ?? tiers.diskBytes
        tiers.workers = try r.int(.workers) ?? tiers.workers
        tiers.layerGroups = try r.int(.layerGroups) ?? tiers.layerGroups
        tiers.spillWatermark = try r.double(.spillWatermark) ?? tiers.spillWatermark
        tiers.numaNode = try r.int(.numaNode)
        tiers.numaDevice = r.text(.numaDevice).flatMap { $0.isEmpty ? nil : $0 }
        tiers.lockHostMemory = try r.bool(.lockHostMemory) ?? tiers.lockHostMemory
        tiers.compress = try r.bool(.compress) ?? tiers.compress
        if let text = r.text(.writePolicy) {
            let name = text.trimmingCharacters(in: .whitespaces).lowercased()
            switch name {
            case "write_back": tiers.writePolicy = .writeBack
            case "write_through": tiers.writePolicy = .writeThrough
            default:
                guard name.hasPrefix("after_hits:"), let n = Int(name.dropFirst("after_hits:".count)) else {
                    throw r.invalid(.writePolicy, "must be write_back, write_through or after_hits:N, got '\(KVConfigError.excerpt(text))'")
                }
                tiers.writePolicy = .writeAfterHits(n)
            }
        }

        var events = EventSettings()
        events.enabled = try r.bool(.eventsEnabled) ?? events.enabled
        events.endpoint = r.text(.endpoint) ?? events.endpoint
        events.replayEndpoint = r.text(.replayEndpoint).flatMap { $0.isEmpty ? nil : $0 }
        events.topic = r.text(.topic) ?? events.topic
        events.bufferSteps = try r.int(.bufferSteps) ?? events.bufferSteps
        events.highWaterMark = try r.int(.highWaterMark) ?? events.highWaterMark
        events.dataParallelRank = try r.int(.dataParallelRank) ?? events.dataParallelRank

        let settings = KVSettings(cache: cache, layout: layout, tiers: tiers, events: events)
        try settings.validate()
        return settings
    }

    /// The settings of `environment` (nil: the process environment), with the YAML file that
    /// `KVCACHE_CONFIG_FILE` names, if any. Throws as `load`.
    public static func fromEnvironment(_ environment: [String: String]? = nil) throws(KVConfigError) -> KVSettings {
        let environment = environment ?? ProcessInfo.processInfo.environment
        let file = environment[fileVariable].flatMap { $0.isEmpty ? nil : $0 }
        return try load(file: file, environment: environment)
    }
}

/// Typed reads of one key as text, strictly parsed; nil when no provider has the key.
private struct Reader {
    let config: ConfigReader

    func text(_ key: Key) -> String? { config.string(forKey: ConfigKey(key.components)) }

    func invalid(_ key: Key, _ message: String) -> KVConfigError {
        .invalidValue(key: key.name, variable: key.variable, message: message)
    }

    func int(_ key: Key) throws(KVConfigError) -> Int? {
        guard let t = text(key) else { return nil }
        guard let v = Int(t.trimmingCharacters(in: .whitespaces)) else { throw invalid(key, "must be an integer, got '\(KVConfigError.excerpt(t))'") }
        return v
    }

    func double(_ key: Key) throws(KVConfigError) -> Double? {
        guard let t = text(key) else { return nil }
        guard let v = Double(t.trimmingCharacters(in: .whitespaces)), v.isFinite else {
            throw invalid(key, "must be a finite number, got '\(KVConfigError.excerpt(t))'")
        }
        return v
    }

    func bool(_ key: Key) throws(KVConfigError) -> Bool? {
        guard let t = text(key) else { return nil }
        switch t.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw invalid(key, "must be true or false, got '\(KVConfigError.excerpt(t))'")
        }
    }
}
