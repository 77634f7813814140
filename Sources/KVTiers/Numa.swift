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

    /// Memory of `bytes` bound to `node` (`numa_alloc_onnode`: mmap + mbind, page aligned, lazily faulted).
    static func allocate(bytes: Int, onNode node: Int) throws(TierError) -> UnsafeMutableRawPointer {
        errno = 0
        guard let p = numa_alloc_onnode(bytes, Int32(node)) else {
            throw .system(call: "numa_alloc_onnode", errno: errno == 0 ? ENOMEM : errno)
        }
        return p
    }

    /// Frees memory from `allocate`.
    static func free(_ p: UnsafeMutableRawPointer, bytes: Int) { numa_free(p, bytes) }

    /// The node that holds the page at `address` (`get_mempolicy` with `MPOL_F_NODE | MPOL_F_ADDR`).
    static func nodeOfPage(at address: UnsafeRawPointer) throws(TierError) -> Int {
        var node: Int32 = -1
        let rc = get_mempolicy(&node, nil, 0, UnsafeMutableRawPointer(mutating: address),
                               UInt32(MPOL_F_NODE | MPOL_F_ADDR))
        guard rc == 0 else { throw .system(call: "get_mempolicy", errno: errno) }
        return Int(node)
    }
}

/// Finds the NUMA node nearest a PCI device (a GPU) from sysfs: `<root>/bus/pci/devices/<address>/numa_node`.
public enum PCINumaLocator {
    /// Normalizes "65:00.0" or "0000:65:00.0" (any case) to sysfs's "0000:65:00.0".
    public static func normalize(_ address: String) -> String? {
        let a = address.lowercased().trimmingWhitespace()
        let parts = a.split(separator: ":", omittingEmptySubsequences: false)
        let full = parts.count == 2 ? "0000:" + a : a
        let p = full.split(separator: ":", omittingEmptySubsequences: false)
        guard p.count == 3, p[0].count == 4, p[1].count == 2, p[2].count == 4, p[2].dropFirst(2).first == ".",
              full.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        return full
    }

    /// The device's NUMA node, or nil when sysfs reports none (-1) or the device is unknown.
    /// - Throws: `.invalidArgument` for a malformed address.
    public static func node(forPCIAddress address: String, sysfsRoot: String = "/sys") throws(TierError) -> Int? {
        guard let norm = normalize(address) else { throw .invalidArgument("malformed PCI address \(address)") }
        guard let text = readSmallFile("\(sysfsRoot)/bus/pci/devices/\(norm)/numa_node"),
              let n = Int(text.trimmingWhitespace()), n >= 0 else { return nil }
        return n
    }

    static func readSmallFile(_ path: String) -> String? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buf[0 ..< n], as: UTF8.self)
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(self.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
