import Glibc
import KVData

/// The ranges the replay drivers accept, checked where a value enters (the CLI calls these before
/// building anything), so that no flag reaches an `Int` conversion, a multiplication or an
/// allocation unchecked. The README's "Limits" lists them.
///
/// Every check is O(1) and allocates only its message; a refused value names the setting.
public enum ReplayLimits {
    /// Most blocks of any pool or tier (device, host, disk, swap, host prefix tier): 2^24.
    public static let maxBlocks = 1 << 24
    /// Most tokens per KV block.
    public static let maxBlockTokens = 1024
    /// Most running sequences of the modelled scheduler.
    public static let maxRunningSequences = 1 << 16
    /// Largest time setting (aging, think time), in seconds.
    public static let maxSeconds = 1e9
    /// Bytes of bookkeeping per block, by pool (measured: about 90 per device block, 150 per tiered
    /// block): estimates used to refuse a pool the machine cannot hold.
    public static let deviceBlockBytes = 96, tieredBlockBytes = 256, diskBlockBytes = 64

    /// Why a setting was refused: one line naming it.
    public struct Refusal: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Blocks of `bytes` at `bytesPerBlock` each, refused when not finite, negative or over `maxBlocks`.
    public static func blocks(bytes: Double, bytesPerBlock: Int, setting: String) throws(Refusal) -> Int {
        guard bytes.isFinite, bytes >= 0 else { throw Refusal("\(setting) must be a finite number >= 0") }
        let blocks = bytes / Double(max(1, bytesPerBlock))
        guard blocks <= Double(maxBlocks) else {
            throw Refusal("\(setting) holds \(blocks.rounded(.down)) blocks, more than the limit of \(maxBlocks)")
        }
        return Int(blocks)
    }

    /// Refuses an integer setting outside `range`.
    public static func check(_ value: Int, in range: ClosedRange<Int>, setting: String) throws(Refusal) {
        guard range.contains(value) else { throw Refusal("\(setting) must lie in \(range.lowerBound)...\(range.upperBound)") }
    }

    /// Refuses a floating-point setting that is not finite or lies outside `range`.
    public static func check(_ value: Double, in range: ClosedRange<Double>, setting: String) throws(Refusal) {
        guard value.isFinite, range.contains(value) else {
            throw Refusal("\(setting) must be a finite number in \(range.lowerBound)...\(range.upperBound)")
        }
    }

    /// Refuses pools whose bookkeeping (`bytes`, estimated) would not fit in half of what this
    /// process may use: physical memory, or the address-space limit when one is set.
    public static func checkMemory(_ bytes: Int, what: String) throws(Refusal) {
        let available = usableMemory() / 2
        guard bytes <= available else {
            throw Refusal("\(what) need about \(bytes >> 20) MiB, more than this machine allows (\(available >> 20) MiB)")
        }
    }

    /// Physical memory, or the address-space limit (`RLIMIT_AS`) when it is lower. O(1).
    public static func usableMemory() -> Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        var memory = pages > 0 && size > 0 ? pages.multipliedReportingOverflow(by: size).partialValue : Int.max
        var limit = rlimit()
        if getrlimit(RLIMIT_AS_VALUE, &limit) == 0, limit.rlim_cur < UInt64(Int.max) {
            memory = min(memory, Int(limit.rlim_cur))
        }
        return memory
    }

    private static var RLIMIT_AS_VALUE: __rlimit_resource_t { __rlimit_resource_t(RLIMIT_AS.rawValue) }
}

extension ModelledRunConfig {
    /// Checks every setting before a run: the KV budget, swap and host tier sizes (finite, >= 0, at
    /// most `ReplayLimits.maxBlocks` blocks, and fitting in memory), block tokens, `maxTokens`,
    /// scheduler sizes and times. Call it before `capacityBlocks`. O(1).
    public func validateLimits() throws(ReplayLimits.Refusal) {
        try ReplayLimits.check(blockTokens, in: 1...ReplayLimits.maxBlockTokens, setting: "KV block tokens")
        let perBlock = model.kvBytesPerToken * blockTokens
        let device = try ReplayLimits.blocks(bytes: kvBytes, bytesPerBlock: perBlock, setting: "the KV budget")
        let host = try ReplayLimits.blocks(bytes: hostTierBytes, bytesPerBlock: perBlock, setting: "the host tier size")
        _ = try ReplayLimits.blocks(bytes: swapBytes, bytesPerBlock: perBlock, setting: "the swap size")
        try ReplayLimits.checkMemory((device + host) * ReplayLimits.deviceBlockBytes, what: "\(device + host) KV blocks")
        try ReplayLimits.check(maxTokens, in: 1...DataLimits.maxTokensPerRequest, setting: "max tokens")
        try ReplayLimits.check(scheduler.maxRunningSequences, in: 1...ReplayLimits.maxRunningSequences, setting: "max running sequences")
        try ReplayLimits.check(scheduler.maxBatchedTokens, in: 1...DataLimits.maxTokensPerRequest, setting: "max batched tokens")
        if let stallFree = scheduler.stallFree {
            try ReplayLimits.check(stallFree.baseTokens, in: 1...DataLimits.maxTokensPerRequest, setting: "mixed step tokens")
        }
        if let aging = scheduler.order.agingSeconds {
            try ReplayLimits.check(aging, in: 0...ReplayLimits.maxSeconds, setting: "aging seconds")
        }
        if let think = sessionThinkSeconds {
            try ReplayLimits.check(think, in: 0...ReplayLimits.maxSeconds, setting: "think time seconds")
        }
    }
}
