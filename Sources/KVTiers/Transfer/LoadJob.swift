import KVCache

/// One in-flight load: the immutable plan plus its progress. Allocated once per `load`; O(blocks) to
/// build.
final class LoadJob: @unchecked Sendable {
    // Sendable: the plan is immutable; `failed`, `groupsLeft` and `blocksLeft` are read and written only
    // under the tier manager's lock.
    let keys: [BlockKey]
    /// Parent key of each block (`.zero` for a first block).
    let parents: [BlockKey]
    let blocks: [BlockID]
    /// Host slot of each block; negative: index `-1 - slot` into `staging`.
    let slots: [Int32]
    let fromDisk: [Bool]
    let addresses: [HostAddress]
    let groups: Int
    let handle: TransferHandle
    var failed: [Bool]
    var groupsLeft: [Int]
    var blocksLeft: Int
    /// Bounce buffers for store blocks that found no free host slot; freed with the job.
    let staging: UnsafeMutableRawBufferPointer?

    deinit { staging?.deallocate() }

    init(keys: [BlockKey], parents: [BlockKey], blocks: [BlockID], slots: [Int32], fromDisk: [Bool],
         addresses: [HostAddress], groups: Int, handle: TransferHandle, staging: UnsafeMutableRawBufferPointer?) {
        self.staging = staging
        self.keys = keys
        self.parents = parents
        self.blocks = blocks
        self.slots = slots
        self.fromDisk = fromDisk
        self.addresses = addresses
        self.groups = groups
        self.handle = handle
        failed = Array(repeating: false, count: slots.count)
        groupsLeft = Array(repeating: groups, count: slots.count)
        blocksLeft = slots.count
    }
}
