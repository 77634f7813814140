import CKVCache
import Glibc
import Synchronization

/// The functions of libkvcache_config.so (kvcache_config_library.h), which reads configurations and
/// publishes events for the calls of kvcache.h that need them, so that this library links neither
/// Foundation nor libzmq.
///
/// Contract: `resolve()` finds the library on the first call that needs it, and again after a failure
/// (nothing is remembered then): the file KVCACHE_CONFIG_LIBRARY names when that variable is set, else
/// the functions a process linked in itself (`useLinked`, the tests), else libkvcache_config.so.<ABI>
/// (then libkvcache_config.so) in the folder of the image holding this code (`dladdr`). The library is
/// opened with RTLD_NOW | RTLD_LOCAL and never closed; its interface version must be this header's. A
/// missing or mismatched library is `CAPIError.configLibrary`, naming the paths tried and the loader's
/// reason. Thread-safe; O(1) after the first success (a lock and a copy of four pointers), or, with
/// KVCACHE_CONFIG_LIBRARY set, a `dlopen` of the loaded file and five `dlsym`s per call (configuration
/// calls only; the publisher keeps the functions it was opened with).
public struct ConfigLibrary: Sendable {
    public typealias Load = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<kvcache_config_library_settings>?,
                                            UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
    public typealias EventsOpen = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?,
                                                  UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32
    public typealias EventsPublish = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<kvcache_config_library_event>?, Int,
                                                     UnsafePointer<kvcache_key>?, UnsafePointer<UInt32>?) -> Int64
    public typealias EventsClose = @convention(c) (UnsafeMutableRawPointer?) -> Void

    let load: Load
    let eventsOpen: EventsOpen
    let eventsPublish: EventsPublish
    let eventsClose: EventsClose

    public init(load: Load, eventsOpen: EventsOpen, eventsPublish: EventsPublish, eventsClose: EventsClose) {
        self.load = load
        self.eventsOpen = eventsOpen
        self.eventsPublish = eventsPublish
        self.eventsClose = eventsClose
    }

    /// The environment variable naming the library's file, over the default location.
    static let variable = "KVCACHE_CONFIG_LIBRARY"
    private static let linked = Mutex<ConfigLibrary?>(nil)
    private static let found = Mutex<ConfigLibrary?>(nil)

    /// Makes `resolve()` return `library` (functions linked into the process) unless
    /// KVCACHE_CONFIG_LIBRARY is set. For processes that link the configuration library's code
    /// themselves, as the tests do.
    public static func useLinked(_ library: ConfigLibrary) { linked.withLock { $0 = library } }

    /// The library's functions, or `.configLibrary` saying which files were tried and why they failed.
    static func resolve() throws(CAPIError) -> ConfigLibrary {
        if let named = getenv(variable), named.pointee != 0 {
            return try open([String(cString: named)])
        }
        if let library = linked.withLock({ $0 }) ?? found.withLock({ $0 }) { return library }
        guard let image = kvcc_image_path() else {
            throw .configLibrary("cannot locate libkvcache_c.so (dladdr); set \(variable)")
        }
        let path = String(cString: image)
        let folder = path.lastIndex(of: "/").map { String(path[...$0]) } ?? "./"
        let library = try open(["\(folder)libkvcache_config.so.\(LibraryVersion.abi)", "\(folder)libkvcache_config.so"])
        found.withLock { $0 = library }
        return library
    }

    /// The first of `paths` that opens and has this interface's functions.
    private static func open(_ paths: [String]) throws(CAPIError) -> ConfigLibrary {
        var reasons: [String] = []
        for path in paths {
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                reasons.append(dlerror().map { String(cString: $0) } ?? "\(path): cannot be opened")
                continue
            }
            typealias Interface = @convention(c) () -> Int32
            guard let interface = symbol(handle, "kvcache_config_library_interface", as: Interface.self),
                  let load = symbol(handle, "kvcache_config_library_load", as: Load.self),
                  let eventsOpen = symbol(handle, "kvcache_config_library_events_open", as: EventsOpen.self),
                  let eventsPublish = symbol(handle, "kvcache_config_library_events_publish", as: EventsPublish.self),
                  let eventsClose = symbol(handle, "kvcache_config_library_events_close", as: EventsClose.self) else {
                reasons.append("\(path): not a kvcache configuration library (a kvcache_config_library_* function is missing)")
                continue
            }
            let version = interface()
            guard version == KVCACHE_CONFIG_LIBRARY_INTERFACE else {
                reasons.append("\(path): interface \(version), this library needs \(KVCACHE_CONFIG_LIBRARY_INTERFACE)")
                continue
            }
            return ConfigLibrary(load: load, eventsOpen: eventsOpen, eventsPublish: eventsPublish, eventsClose: eventsClose)
        }
        throw .configLibrary("libkvcache_config.so is needed for configuration and events and was not loaded (install it next to "
                             + "libkvcache_c.so or name it in \(variable)): " + reasons.joined(separator: "; "))
    }

    private static func symbol<F>(_ handle: UnsafeMutableRawPointer, _ name: String, as: F.Type) -> F? {
        dlsym(handle, name).map { unsafeBitCast($0, to: F.self) }
    }
}

/// Runs a configuration library call that reports failure as -1 with a malloc'd sentence in `error`,
/// turning the sentence into `.configuration`; frees it. O(sentence).
func configurationCall(_ call: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32) throws(CAPIError) {
    var error: UnsafeMutablePointer<CChar>? = nil
    guard call(&error) != 0 else { return }
    defer { free(error) }
    throw .configuration(error.map { String(cString: $0) } ?? "the configuration library failed without a reason")
}
