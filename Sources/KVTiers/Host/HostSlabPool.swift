#if canImport(Glibc)
import Glibc
#endif
import CNuma

/// The L2 host tier's storage: one large shared-memory file (memfd) mapped once and cut into slots of one
/// block each, placed on a chosen NUMA node with libnuma (mbind), page-locked where permitted, with O(1)
/// slot allocation and release (a stack of free slot numbers). Another process (an engine's worker) can
/// map the same bytes through `sharedFD` (`region`); slot `s` lies at byte `s * slotBytes` of it.
///
/// Slot bookkeeping (`allocate`/`release`) is internal and not thread-safe: its one owner, the tier
/// manager, calls it under its lock.
/// The slots' bytes may be read and written from transfer workers, one owner per slot at a time, which
/// the manager guarantees by pinning a slot for the duration of each transfer.
public final class HostSlabPool: @unchecked Sendable {
    // Sendable: the base pointer is immutable; the free-slot stack is touched only under the owning
    // manager's lock (`allocate`/`release` are internal); slot contents are handed out under its pins.
    public let slotBytes: Int
    public let capacity: Int
    public let placement: HostPlacementReport
    private let base: UnsafeMutableRawPointer
    private let totalBytes: Int
    /// The memfd behind the mapping, open until deinit.
    public let sharedFD: Int32
    private var freeStack: [Int32]
    private var isFree: [Bool]

    /// Allocates `capacity` slots of `blockBytes` (rounded up to 64 bytes).
    /// - Parameters:
    ///   - placement: which NUMA node to use; a missing node, an unavailable NUMA API or a failing call
    ///     falls back to plain memory with one warning (`warn`) and the reason in `placement`.
    ///   - lockMemory: try `mlock`; EPERM/ENOMEM fall back to pageable memory with a warning.
    ///   - sysfsRoot: where to read PCI NUMA affinity (tests point it at a fixture).
    /// - Throws: `.invalidArgument` for non-positive sizes, `.system` when no memory can be had at all.
    public init(blockBytes: Int, capacity: Int, placement: NumaPlacement = .local, lockMemory: Bool = true,
                sysfsRoot: String = "/sys", warn: @Sendable (String) -> Void = TierWarnings.once) throws(TierError) {
        guard blockBytes > 0, capacity > 0 else { throw .invalidArgument("host pool sizes must be positive") }
        let slot = (blockBytes + 63) & ~63
        let (total, overflow) = slot.multipliedReportingOverflow(by: capacity)
        guard !overflow else { throw .invalidArgument("host pool too large") }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let rounded = (total + page - 1) / page * page
        slotBytes = slot
        self.capacity = capacity
        totalBytes = rounded

        var reasons: [String] = []
        var requested: Int? = nil
        let nodes = Numa.isAvailable ? Numa.configuredNodes : 0
        switch placement {
        case .local: requested = nil   // the kernel's default policy: first touch on the local node
        case .node(let n): requested = n
        case .nearDevice(let address):
            do throws(TierError) {
                requested = try PCINumaLocator.node(forPCIAddress: address, sysfsRoot: sysfsRoot)
                if requested == nil {
                    reasons.append("no NUMA affinity in sysfs for \(address); using the local node")
                }
            } catch { reasons.append("\(error)")
            requested = nil }
        }
        if !Numa.isAvailable { reasons.append("NUMA unavailable (numa_available < 0); using unbound memory") }
        if let r = requested, Numa.isAvailable, !Numa.nodeExists(r) {
            reasons.append("NUMA node \(r) does not exist; using unbound memory")
            requested = nil
        }
        if Numa.isAvailable && nodes == 1 && placement != .local {
            reasons.append("single NUMA node: placement has no effect")
        }

        let fd = kv_memfd_create("kvcache-host-tier")
        guard fd >= 0 else { throw .system(call: "memfd_create", errno: errno) }
        guard ftruncate(fd, off_t(rounded)) == 0 else {
            let e = errno
            close(fd)
            throw .system(call: "ftruncate", errno: e)
        }
        let m = mmap(nil, rounded, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let m, m != MAP_FAILED else {
            let e = errno
            close(fd)
            throw .system(call: "mmap", errno: e)
        }
        if let r = requested, Numa.isAvailable {
            do throws(TierError) { try Numa.bind(m, bytes: rounded, toNode: r) }
            catch { reasons.append("\(error); using unbound memory"); requested = nil }
        }
        base = m
        sharedFD = fd
        // Fault every page in now (first touch happens under the node binding), so transfers never fault.
        memset(base, 0, rounded)

        var locked = false
        if lockMemory {
            if mlock(base, rounded) == 0 { locked = true }
            else { reasons.append("mlock failed (errno \(errno)); host tier is pageable") }
        }

        // Where did the pages land? With a binding they must all be on the requested node; with the
        // local policy they should all be on one node (first touch ran on this thread).
        var verified: Int? = nil
        var ok = Numa.isAvailable
        if Numa.isAvailable {
            for off in [0, rounded / 2, rounded - page] {
                do throws(TierError) {
                    let n = try Numa.nodeOfPage(at: base + off)
                    if verified == nil { verified = n }
                    if n != (requested ?? verified) { ok = false }
                } catch { ok = false
                verified = nil
                reasons.append("\(error): placement not verified")
                break }
            }
            if !ok, let v = verified, let r = requested { reasons.append("pages on node \(v) instead of \(r)") }
        }
        let reason = reasons.isEmpty ? nil : reasons.joined(separator: "; ")
        if let reason { warn("host tier: " + reason) }
        self.placement = HostPlacementReport(requestedNode: requested, verifiedNode: verified, bindingVerified: ok,
                                             locked: locked, fallbackReason: reason, nodes: nodes)
        freeStack = (0 ..< Int32(capacity)).reversed()
        isFree = Array(repeating: true, count: capacity)
    }

    deinit {
        munlock(base, totalBytes)
        munmap(base, totalBytes)
        close(sharedFD)
    }

    /// The whole mapping: its address in this process and its size (the memfd's), for another process
    /// to map through `sharedFD`.
    public var region: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: base, count: totalBytes) }

    /// Free slots now.
    public var freeCount: Int { freeStack.count }

    /// Takes a free slot, or nil when all are in use. O(1).
    func allocate() -> Int32? {
        guard let s = freeStack.popLast() else { return nil }
        isFree[Int(s)] = false
        return s
    }

    /// Returns `slot` to the pool. O(1).
    /// - Throws: `.invalidArgument` for an unknown or already free slot (state unchanged).
    func release(_ slot: Int32) throws(TierError) {
        guard slot >= 0, Int(slot) < capacity, !isFree[Int(slot)] else {
            throw .invalidArgument("slot \(slot) is not allocated")
        }
        isFree[Int(slot)] = true
        freeStack.append(slot)
    }

    /// The address of `slot`'s bytes. The caller must hold the slot (allocated, pinned) while using it.
    @inline(__always)
    func address(of slot: Int32) -> UnsafeMutableRawPointer {
        precondition(slot >= 0 && Int(slot) < capacity, "slot out of range")
        return base + Int(slot) * slotBytes
    }

    /// Lends `slot`'s first `count` bytes to `body`. Do not let the pointer escape.
    public func withSlot<R>(_ slot: Int32, count: Int,
                            _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        precondition(count <= slotBytes)
        return try body(UnsafeMutableRawBufferPointer(start: address(of: slot), count: count))
    }
}
