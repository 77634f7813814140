#if canImport(Glibc)
import Glibc
#endif
import CKVCache
import Testing

/// kvcache_tiers_host_region: the host tier's blocks live in a shared-memory file that a second mapping
/// (as another process makes through /proc/<pid>/fd/<fd>) sees byte for byte, in both directions: what
/// the library stores from the stand-in device pool is read through the second mapping, and what is
/// written through it is what a load brings back to the device.
struct TierHostRegionTests {
    static let blockBytes = 2 * 2 * 1 * 8 * 2 * 4

    /// A tier manager over the stand-in device pool: 2 layers, `hostBlocks` host blocks, no disk.
    static func tiers(hostBlocks: Int64) throws -> OpaquePointer {
        var config = kvcache_tiers_config()
        #expect(kvcache_tiers_config_init(&config) == 0)
        config.layers = 2; config.kv_heads = 1; config.head_dim = 8; config.dtype_bytes = 2; config.block_tokens = 4
        config.device_blocks = 4
        config.host_blocks = hostBlocks
        var tiers: OpaquePointer?
        #expect(kvcache_tiers_create_checked(UInt32(KVCACHE_ABI_VERSION), MemoryLayout<kvcache_tiers_config>.size,
                                             &config, &tiers) == 0)
        return try #require(tiers)
    }

    @Test func theHostBlocksAreSharedThroughTheRegionsFile() throws {
        let t = try Self.tiers(hostBlocks: 3)
        defer { #expect(kvcache_tiers_destroy(t) == 0) }
        var fd: Int32 = -1, base: UnsafeMutableRawPointer?, size = 0
        #expect(kvcache_tiers_host_region(t, &fd, &base, &size) == 0)
        let here = try #require(base)
        #expect(fd >= 0 && size >= 3 * Self.blockBytes)
        #expect(kvcache_tiers_host_region(t, nil, &base, &size) != 0)   // NULL_POINTER
        // The second mapping, through the descriptor's /proc name as a worker process opens it.
        let other = open("/proc/\(getpid())/fd/\(fd)", O_RDWR)
        #expect(other >= 0)
        defer { close(other) }
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, other, 0)
        let view = try #require(mapped == MAP_FAILED ? nil : mapped)
        defer { munmap(view, size) }
        #expect(view != here)

        // Store device block 0 (bytes 7) under key 1: the host copy is visible through the other mapping.
        var data: UnsafeMutableRawPointer?, length = 0
        #expect(kvcache_tiers_device_block(t, 0, &data, &length) == 0)
        let device0 = try #require(data)
        memset(device0, 7, length)
        var key = kvcache_key(lo: 1, hi: 0), block: Int32 = 0, id: UInt64 = 0, stored = 0
        #expect(kvcache_tiers_prepare_store(t, &block, &key, 1, nil, &id) == 0)
        #expect(kvcache_tiers_complete_store(t, id, nil, 0, &stored) == 0 && stored == 1)
        let region = UnsafeMutableRawBufferPointer(start: view, count: size)
        var sevens = 0
        for slot in 0 ..< 3 where region[(slot * Self.blockBytes) ..< ((slot + 1) * Self.blockBytes)].allSatisfy({ $0 == 7 }) {
            sevens += 1
        }
        #expect(sevens == 1)

        // Rewrite that host block through the other mapping; a load into device block 2 brings those bytes.
        let slot = (0 ..< 3).first { region[$0 * Self.blockBytes] == 7 }!
        memset(view + slot * Self.blockBytes, 9, Self.blockBytes)
        block = 2
        var prefix = 0
        #expect(kvcache_tiers_prepare_load(t, &key, 1, 0, &block, 1, &id) == 0)
        #expect(kvcache_tiers_complete_load(t, id, nil, 0, &prefix) == 0 && prefix == 1)
        #expect(kvcache_tiers_device_block(t, 2, &data, &length) == 0)
        let device2 = UnsafeRawBufferPointer(start: try #require(data), count: length)
        #expect(device2.allSatisfy { $0 == 9 })
    }

    @Test func noHostTierNoRegion() throws {
        let t = try Self.tiers(hostBlocks: 0)
        defer { #expect(kvcache_tiers_destroy(t) == 0) }
        var fd: Int32 = -1, base: UnsafeMutableRawPointer?, size = 0
        #expect(kvcache_tiers_host_region(t, &fd, &base, &size) == Int32(KVCACHE_ERR_INVALID_ARGUMENT.rawValue))
    }
}
