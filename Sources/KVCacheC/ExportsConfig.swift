import CKVCache
import Glibc
import KVCache
import KVPlan
import KVTiers

// Opening a cache and its tiers from a configuration: `KVCACHE_*` environment variables and a YAML file,
// read by libkvcache_config.so (`ConfigLibrary`, opened on first use), which hands back the resolved
// values; the cache and the tiers are opened here. Not hot calls: each reads the environment (and the
// file) once.

/// kvcache_create_from_env: the cache section of the environment's settings (the variables, over the
/// YAML file that KVCACHE_CONFIG_FILE names, over the defaults). O(capacity + file).
@_cdecl("kvcache_create_from_env")
public func kvcacheCreateFromEnvImpl(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    createFromSettings(nil, out, "kvcache_create_from_env")
}

/// kvcache_create_from_file: the cache section of the YAML file at `path`, the environment's
/// `KVCACHE_*` variables overriding its keys. O(capacity + file).
@_cdecl("kvcache_create_from_file")
public func kvcacheCreateFromFileImpl(_ path: UnsafePointer<CChar>?,
                                      _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_create_from_file"
    guard let path else { return fail(.nullPointer("path"), function) }
    guard String(validatingCString: path) != nil else { return fail(.notUTF8("path"), function) }
    return createFromSettings(path, out, function)
}

/// kvcache_tiers_create_from_config: the tier manager that the `tiers:` and `layout:` sections describe,
/// read as kvcache_create_from_file reads the YAML file at `path`, or as kvcache_create_from_env reads
/// the environment when `path` is NULL; `capacity_blocks` device blocks, the caller's copy callbacks
/// (both, or neither for the stand-in device pool). *out is NULL when the settings configure no tier.
/// A failure opens nothing. O(device + host blocks + file).
@_cdecl("kvcache_tiers_create_from_config")
public func kvcacheTiersCreateFromConfigImpl(_ path: UnsafePointer<CChar>?, _ toHost: kvcache_tier_copy_fn?,
                                             _ toDevice: kvcache_tier_copy_fn?, _ context: UnsafeMutableRawPointer?,
                                             _ out: UnsafeMutablePointer<OpaquePointer?>?) -> kvcache_status {
    let function: StaticString = "kvcache_tiers_create_from_config"
    do throws(CAPIError) {
        let out = try required(out, "out")
        if path != nil { _ = try utf8String(path, "path") }
        let settings = try loadSettings(path)
        guard settings.c.has_tiers else {
            out.pointee = nil
            return Status.ok
        }
        var config = try settings.tierConfig()
        config.calibrateAtStart = false   // as kvcache_tiers_create: every tier with a row is loaded from
        out.pointee = try openTiers(config, deviceBlocks: Int(settings.c.capacity_blocks), toHost: toHost, toDevice: toDevice,
                                    context: context)
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// Loads the settings, then opens the cache their cache section describes; a failure opens nothing.
private func createFromSettings(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?,
                                _ function: StaticString) -> kvcache_status {
    do throws(CAPIError) {
        let out = try required(out, "out")
        out.pointee = try open(loadSettings(path).cacheConfig())
        return Status.ok
    } catch {
        return fail(error, function)
    }
}

/// The resolved settings of the file at `path` (nil: the environment's), their strings copied into
/// Swift and the configuration library's copies freed.
private func loadSettings(_ path: UnsafePointer<CChar>?) throws(CAPIError) -> ResolvedSettings {
    let library = try ConfigLibrary.resolve()
    var c = kvcache_config_library_settings()
    try configurationCall { library.load(path, &c, $0) }
    defer { for s in [c.key_namespace, c.eviction_policy, c.dtype, c.numa_device, c.disk_directory] { free(s) } }
    return ResolvedSettings(c)
}
