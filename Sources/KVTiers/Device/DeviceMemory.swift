#if canImport(Glibc)
import Glibc
#endif
import KVCache
import KVPlan

/// A host address lent to a device copy. The tier manager keeps the memory behind it alive and
/// unmodified (the slot is pinned) until the copy's completion has been called.
public struct HostAddress: @unchecked Sendable {
    // Sendable: the pointer is only used by one copy at a time, under the manager's slot pin.
    public let pointer: UnsafeMutableRawPointer
    public init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
}

/// The L1 pool's bytes, as far as the tiers need them: copy a byte range of one device block to host
/// memory and back. Blocks use `layout` (contiguous across layers), so a layer group is one range.
///
/// Implementations call `done` exactly once per copy, from any thread, after the copy has completed
/// (`true`) or failed (`false`). The tier manager never assumes it owns the device: the engine's own
/// backend (e.g. cudaMemcpyAsync on a copy stream) performs the copies and signals completion.
public protocol DeviceMemory: AnyObject, Sendable {
    var layout: KVGeometry { get }
    var capacityBlocks: Int { get }
    /// Copies `range` of device block `block` to `host`.
    func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void)
    /// Copies `host` into `range` of device block `block`.
    func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void)
    /// `copyToHost(block:range:host:done:)` reporting to `job.copyFinished(tag: tag, ok:)`: the manager's
    /// own path, with no closure per copy. The default wraps it in a closure (one allocation per copy);
    /// the library's backends implement it without any.
    func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int)
    /// `copyFromHost(block:range:host:done:)` reporting to `job.copyFinished(tag: tag, ok:)`.
    func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int)
}

extension DeviceMemory {
    public func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int) {
        copyToHost(block: block, range: range, host: host) { job.copyFinished(tag: tag, ok: $0) }
    }

    public func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int) {
        copyFromHost(block: block, range: range, host: host) { job.copyFinished(tag: tag, ok: $0) }
    }
}

/// A stand-in for the GPU pool in host memory (the default in tests, the simulator and the benchmarks):
/// one allocation of `capacityBlocks x layout.bytesPerBlock`, copies are `memcpy` on the calling
/// transfer worker, completed before `done` is called.
public final class HostDeviceMemory: DeviceMemory, @unchecked Sendable {
    // Sendable: the base pointer is immutable; the tier manager serializes access to each block.
    public let layout: KVGeometry
    public let capacityBlocks: Int
    private let base: UnsafeMutableRawPointer
    private let bytes: Int

    /// - Throws: `.invalidArgument` for a non-positive capacity, `.system` when memory is short.
    public init(layout: KVGeometry, capacityBlocks: Int) throws(TierError) {
        guard capacityBlocks > 0 else { throw .invalidArgument("capacity must be positive") }
        let (n, o) = layout.bytesPerBlock.multipliedReportingOverflow(by: capacityBlocks)
        guard !o else { throw .invalidArgument("device pool too large") }
        guard let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw .system(call: "mmap", errno: errno)
        }
        self.layout = layout
        self.capacityBlocks = capacityBlocks
        base = p
        bytes = n
    }

    deinit { munmap(base, bytes) }

    @inline(__always)
    private func address(_ block: BlockID, _ offset: Int) -> UnsafeMutableRawPointer? {
        guard block >= 0, Int(block) < capacityBlocks, offset >= 0 else { return nil }
        return base + Int(block) * layout.bytesPerBlock + offset
    }

    /// Copies between `range` of `block` and `host` (`toHost`: from the block); false when out of range.
    private func copy(_ block: BlockID, _ range: Range<Int>, _ host: HostAddress, toHost: Bool) -> Bool {
        guard range.upperBound <= layout.bytesPerBlock, let p = address(block, range.lowerBound) else { return false }
        if toHost { memcpy(host.pointer, p, range.count) } else { memcpy(p, host.pointer, range.count) }
        return true
    }

    public func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        done(copy(block, range, host, toHost: true))
    }

    public func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        done(copy(block, range, host, toHost: false))
    }

    public func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int) {
        job.copyFinished(tag: tag, ok: copy(block, range, host, toHost: true))
    }

    public func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int) {
        job.copyFinished(tag: tag, ok: copy(block, range, host, toHost: false))
    }

    /// Lends device block `block`'s bytes to `body` (the simulated engine writes its KV here). Do not
    /// let the pointer escape. Returns nil for an out-of-range block.
    public func withBlock<R>(_ block: BlockID, _ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R? {
        guard let p = address(block, 0) else { return nil }
        return try body(UnsafeMutableRawBufferPointer(start: p, count: layout.bytesPerBlock))
    }
}

/// One copy the engine must perform for an `ServerCopyBackend`.
public struct DeviceCopyRequest: Sendable {
    public enum Direction: Sendable { case deviceToHost, hostToDevice }
    public let direction: Direction
    public let block: BlockID
    /// Byte range within the block (a layer group).
    public let range: Range<Int>
    public let host: HostAddress
    /// Who learns of the completion: a closure, or a job and its tag (no allocation).
    private let done: (@Sendable (Bool) -> Void)?
    private let job: TransferJob?
    private let tag: Int

    init(direction: Direction, block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        self.direction = direction
        self.block = block
        self.range = range
        self.host = host
        self.done = done
        job = nil
        tag = 0
    }

    init(direction: Direction, block: BlockID, range: Range<Int>, host: HostAddress, job: TransferJob, tag: Int) {
        self.direction = direction
        self.block = block
        self.range = range
        self.host = host
        done = nil
        self.job = job
        self.tag = tag
    }

    /// The engine calls this once the copy has finished (e.g. from a CUDA stream callback or after
    /// synchronizing an event), with `false` if it failed.
    public func complete(success: Bool = true) {
        if let job { job.copyFinished(tag: tag, ok: success) } else { done?(success) }
    }
}

/// A `DeviceMemory` whose copies the engine performs: each copy is handed to `submit`, and the engine
/// calls `complete` on it when done. The tier manager never touches device memory itself.
public final class ServerCopyBackend: DeviceMemory, Sendable {
    public let layout: KVGeometry
    public let capacityBlocks: Int
    private let submit: @Sendable (DeviceCopyRequest) -> Void

    public init(layout: KVGeometry, capacityBlocks: Int, submit: @escaping @Sendable (DeviceCopyRequest) -> Void) {
        self.layout = layout
        self.capacityBlocks = capacityBlocks
        self.submit = submit
    }

    public func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        guard inRange(block, range) else { return done(false) }
        submit(DeviceCopyRequest(direction: .deviceToHost, block: block, range: range, host: host, done: done))
    }

    public func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, done: @escaping @Sendable (Bool) -> Void) {
        guard inRange(block, range) else { return done(false) }
        submit(DeviceCopyRequest(direction: .hostToDevice, block: block, range: range, host: host, done: done))
    }

    public func copyToHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int) {
        guard inRange(block, range) else { return job.copyFinished(tag: tag, ok: false) }
        submit(DeviceCopyRequest(direction: .deviceToHost, block: block, range: range, host: host, job: job, tag: tag))
    }

    public func copyFromHost(block: BlockID, range: Range<Int>, host: HostAddress, notify job: TransferJob, tag: Int) {
        guard inRange(block, range) else { return job.copyFinished(tag: tag, ok: false) }
        submit(DeviceCopyRequest(direction: .hostToDevice, block: block, range: range, host: host, job: job, tag: tag))
    }

    private func inRange(_ block: BlockID, _ range: Range<Int>) -> Bool {
        block >= 0 && Int(block) < capacityBlocks && range.upperBound <= layout.bytesPerBlock
    }
}
