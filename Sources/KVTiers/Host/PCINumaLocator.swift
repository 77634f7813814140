#if canImport(Glibc)
import Glibc
#endif

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

    /// The first 64 bytes of a small file (a sysfs attribute), or nil when it cannot be read.
    static func readSmallFile(_ path: String) -> String? {
        let io = SystemIO()
        guard let fd = try? io.open(path, flags: O_RDONLY) else { return nil }
        defer { io.close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = buf.withUnsafeMutableBytes { (try? io.preadFull(fd, $0, at: 0)) ?? 0 }
        guard n > 0 else { return nil }
        return String(decoding: buf[0 ..< n], as: UTF8.self)
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(self.drop(while: { $0.isWhitespace }).reversed().drop(while: { $0.isWhitespace }).reversed())
    }
}
