/// Where the host tier should place its memory.
public enum NumaPlacement: Sendable, Equatable {
    /// The node of the calling thread (the kernel's default policy).
    case local
    /// A configured node.
    case node(Int)
    /// The node nearest the GPU at this PCI address (from sysfs); local when sysfs names none.
    case nearDevice(pciAddress: String)
}

/// What the host tier got: the node its memory is verified to sit on, whether it is page-locked, and
/// why it fell back when it did.
public struct HostPlacementReport: Sendable, Equatable {
    /// The node bound to after resolving the placement (nil: the local policy, or no binding possible).
    public var requestedNode: Int?
    /// The node `get_mempolicy(MPOL_F_NODE|MPOL_F_ADDR)` reports for the pool's pages (nil: not verified).
    public var verifiedNode: Int?
    /// Whether every sampled page is on `requestedNode` (or, with the local policy, on one node).
    public var bindingVerified: Bool
    /// Whether `mlock` pinned the pool.
    public var locked: Bool
    /// Why placement or locking fell back, if it did (also given once to the warning handler).
    public var fallbackReason: String?
    /// Configured NUMA nodes on this machine (0 when NUMA is unavailable).
    public var nodes: Int
}
