#if canImport(Glibc)
import Glibc
#endif
import CNuma

/// The one wrapper around libnuma and the NUMA system calls; failures become `TierError.system`.
enum Numa {
    /// Whether the kernel and libnuma support NUMA calls here (`numa_available`).
    static var isAvailable: Bool { numa_available() >= 0 }

    /// The number of configured memory nodes.
    static var configuredNodes: Int { Int(numa_num_configured_nodes()) }

    /// Whether `node` exists and has memory. `numa_alloc_onnode` on a missing node silently returns
    /// another node's memory, so callers check this first.
    static func nodeExists(_ node: Int) -> Bool {
        guard isAvailable, node >= 0, node <= Int(numa_max_node()) else { return false }
        guard let allowed = numa_get_mems_allowed() else { return false }
        defer { numa_bitmask_free(allowed) }
        guard numa_bitmask_isbitset(allowed, UInt32(node)) != 0 else { return false }
        return numa_node_size64(Int32(node), nil) > 0
    }

    /// Binds the pages of `bytes` at `p` (not faulted in yet) to `node` (`mbind` with MPOL_BIND, strict).
    static func bind(_ p: UnsafeMutableRawPointer, bytes: Int, toNode node: Int) throws(TierError) {
        var mask = [UInt](repeating: 0, count: node / UInt.bitWidth + 1)
        mask[node / UInt.bitWidth] = 1 << UInt(node % UInt.bitWidth)
        let rc = mask.withUnsafeMutableBufferPointer { m in
            mbind(p, UInt(bytes), Int32(MPOL_BIND), m.baseAddress, UInt(m.count * UInt.bitWidth + 1), UInt32(MPOL_MF_STRICT))
        }
        guard rc == 0 else { throw .system(call: "mbind", errno: errno) }
    }

    /// The node that holds the page at `address` (`get_mempolicy` with `MPOL_F_NODE | MPOL_F_ADDR`).
    static func nodeOfPage(at address: UnsafeRawPointer) throws(TierError) -> Int {
        var node: Int32 = -1
        let rc = get_mempolicy(&node, nil, 0, UnsafeMutableRawPointer(mutating: address),
                               UInt32(MPOL_F_NODE | MPOL_F_ADDR))
        guard rc == 0 else { throw .system(call: "get_mempolicy", errno: errno) }
        return Int(node)
    }
}
