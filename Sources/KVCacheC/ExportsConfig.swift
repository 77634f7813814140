import CKVCache
import KVCache
import KVConfig
import KVTiers

// Opening a cache from a configuration: `KVCACHE_*` environment variables and a YAML file, read by
// KVConfig (swift-configuration). Not hot calls: each reads the environment (and the file) once.

/// kvcache_create_from_env: the cache section of `KVSettingsLoader.fromEnvironment()` (the variables,
/// over the YAML file that KVCACHE_CONFIG_FILE names, over the defaults). O(capacity + file).
@_cdecl("kvcache_create_from_env")
public func kvcacheCreateFromEnvImpl(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    createFromSettings(out, "kvcache_create_from_env") { () throws(KVConfigError) in try KVSettingsLoader.fromEnvironment() }
}

/// kvcache_create_from_file: the cache section of the YAML file at `path`, the environment's
/// `KVCACHE_*` variables overriding its keys. O(capacity + file).
@_cdecl("kvcache_create_from_file")
public func kvcacheCreateFromFileImpl(_ path: UnsafePointer<CChar>?,
                                      _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_create_from_file"
    guard let path else { return fail(.nullPointer("path"), function) }
    guard let file = String(validatingCString: path) else { return fail(.notUTF8("path"), function) }
    return createFromSettings(out, function) { () throws(KVConfigError) in
        try KVSettingsLoader.load(file: file)
    }
}

/// kvcache_tiers_create_from_config: the tier manager that the `tiers:` and `layout:` sections describe
/// (`KVSettings.tierConfig()`), read as kvcache_create_from_file reads the YAML file at `path`, or as
/// kvcache_create_from_env reads the environment when `path` is NULL; `capacity_blocks` device blocks,
/// the caller's copy callbacks (both, or neither for the stand-in device pool). *out is NULL when the
/// settings configure no tier. A failure opens nothing. O(device + host blocks + file).
@_cdecl("kvcache_tiers_create_from_config")
public func kvcacheTiersCreateFromConfigImpl(_ path: UnsafePointer<CChar>?, _ toHost: kvcache_tier_copy_fn?,
                                             _ toDevice: kvcache_tier_copy_fn?, _ context: UnsafeMutableRawPointer?,
                                             _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_tiers_create_from_config"
    do throws(CAPIError) {
        let out = try required(out, "out")
        let file: String? = path == nil ? nil : try utf8String(path, "path")
        let settings: KVSettings
        let config: TierConfig?
        do {
            if let file { settings = try KVSettingsLoader.load(file: file) } else { settings = try KVSettingsLoader.fromEnvironment() }
            config = try settings.tierConfig()
        } catch { throw .configuration(error.description) }
        guard var config else {
            out.pointee = nil
            return Status.ok
        }
        config.calibrateAtStart = false   // as kvcache_tiers_create: every tier with a row is loaded from
        out.pointee = try openTiers(config, deviceBlocks: settings.cache.capacityBlocks, toHost: toHost, toDevice: toDevice,
                                    context: context)
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// Loads the settings, then opens the cache their cache section describes; a failure opens nothing.
private func createFromSettings(_ out: UnsafeMutablePointer<OpaquePointer?>?, _ function: StaticString,
                                _ load: () throws(KVConfigError) -> KVSettings) -> kvcache_status {
    do throws(CAPIError) {
        let out = try required(out, "out")
        let settings: KVSettings
        do { settings = try load() } catch { throw .configuration(error.description) }
        out.pointee = try open(settings.cache.cacheConfig)
        return Status.ok
    } catch {
        return fail(error, function)
    }
}
