import CKVCache
import Testing

/// The versions the library reports are the header's, and kvcache_create_checked refuses a caller
/// compiled against another ABI without allocating anything or touching `*out`.
struct VersionTests {
    @Test func versionsAreTheHeaders() {
        #expect(kvcache_abi_version() == UInt32(KVCACHE_ABI_VERSION))
        let text = String(cString: kvcache_version_string())
        #expect(text == "\(KVCACHE_VERSION_MAJOR).\(KVCACHE_VERSION_MINOR).\(KVCACHE_VERSION_PATCH)")
        let parts = text.split(separator: ".").compactMap { UInt32($0) }
        #expect(parts.count == 3 && parts[0] * 10000 + parts[1] * 100 + parts[2] == kvcache_version())
        #expect(kvcache_version_string() == kvcache_version_string())  // static storage, not a fresh copy
    }

    /// One creation through the checked entry point; the handle (if any) is destroyed.
    func create(abi: UInt32, size: Int, capacity: Int64 = 8) -> (kvcache_status, created: Bool, outTouched: Bool) {
        var config = kvcache_config()
        _ = kvcache_config_init(&config)
        config.capacity_blocks = capacity
        let sentinel = OpaquePointer(bitPattern: 0x5EED)
        var out: OpaquePointer? = sentinel
        let status = kvcache_create_checked(abi, size, &config, &out)
        let created = status == KVCACHE_OK.code && out != nil && out != sentinel
        if created { #expect(kvcache_destroy(out) == KVCACHE_OK.code) }
        return (status, created, out != sentinel)
    }

    @Test func checkedCreationAcceptsOnlyThisABI() {
        let abi = kvcache_abi_version(), size = MemoryLayout<kvcache_config>.size
        #expect(create(abi: abi, size: size) == (KVCACHE_OK.code, true, true))
        for (badABI, badSize) in [(abi + 1, size), (abi &- 1, size), (0, size), (UInt32.max, size),
                                  (abi, size - 8), (abi, size + 8), (abi, 0), (abi, Int.max)] {
            #expect(create(abi: badABI, size: badSize) == (KVCACHE_ERR_INVALID_ARGUMENT.code, false, false),
                    "abi \(badABI) size \(badSize)")
            #expect(lastError.hasPrefix("kvcache_create_checked: invalid argument"), "\(lastError)")
            #expect(lastError.contains("another kvcache.h"), "\(lastError)")
        }
        // Past the ABI check, the config's own errors are reported under the checked name.
        #expect(create(abi: abi, size: size, capacity: 0) == (KVCACHE_ERR_INVALID_ARGUMENT.code, false, false))
        #expect(lastError.hasPrefix("kvcache_create_checked: "), "\(lastError)")
        var out: OpaquePointer?
        #expect(kvcache_create_checked(abi, size, nil, &out) == KVCACHE_ERR_NULL_POINTER.code && out == nil)
    }
}
