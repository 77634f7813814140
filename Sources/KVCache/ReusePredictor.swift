/// An online predictor of "this block is used again soon", learned from the cache's own past only:
/// a table of (reused, labelled) counts per feature bucket, whose labels arrive late, when the
/// future they describe has become the past.
///
/// Features of a block at the end of a use (`observe`), read from the order of the cache's calls
/// (a request's hits, then its publications, then its releases deepest first):
/// - uses of its key over the recent history (the `FrequencySketch` estimate: 1, 2, 3, 4+);
/// - its role in the request: the request hit nothing (a new chain), the block was in the hit prefix
///   (a returning prefix), or it is new past a hit (the one-shot tail of a continuation);
/// - its distance from the end of the request's chain (0, 1, 2, 3+), since a chain's last blocks are
///   its least shared.
///
/// Labels: each use is remembered (key fingerprint, bucket, time) in a direct-mapped table and in a
/// queue by time. When the same key is used again within `horizon` publications, its bucket gets a
/// positive label; once the horizon has passed without that (the queue's oldest entry expires), or
/// its slot is taken by another key first, a negative one. Prediction = (positive + 1) / (labelled +
/// 2), the Laplace estimate. Nothing looks ahead.
///
/// O(1) per call; fixed memory allocated at init, no allocation per call. Single-threaded.
public struct ReusePredictor: Sendable {
    /// Feature buckets: 4 use counts x 3 roles x 4 distances from the chain's end.
    public static let buckets = 4 * 3 * 4
    /// Publications within which a use again counts as reuse.
    public let horizon: Double
    private var positives: [UInt32]
    private var labelled: [UInt32]
    private var fingerprints: [UInt64]
    private var slotBucket: [UInt8]
    private var slotTime: [Double]
    /// Whether the slot's use still waits for its label.
    private var pending: [Bool]
    /// Uses by time (slot, time), a ring of `slots` entries: the oldest expires first.
    private var queueSlot: [Int32]
    private var queueTime: [Double]
    private var queueHead = 0, queueCount = 0
    private let mask: Int

    /// - Parameters:
    ///   - horizon: publications within which a repeat use is a positive label (at least 1).
    ///   - slots: remembered uses (rounded up to a power of two).
    public init(horizon: Double, slots: Int) {
        self.horizon = max(1, horizon)
        var n = 64
        while n < slots && n < 1 << 26 { n <<= 1 }
        mask = n - 1
        positives = Array(repeating: 0, count: Self.buckets)
        labelled = Array(repeating: 0, count: Self.buckets)
        fingerprints = Array(repeating: 0, count: n)
        slotBucket = Array(repeating: 0, count: n)
        slotTime = Array(repeating: 0, count: n)
        pending = Array(repeating: false, count: n)
        queueSlot = Array(repeating: 0, count: n)
        queueTime = Array(repeating: 0, count: n)
    }

    /// The bucket of a block used `uses` times (>= 1) with `role` (0 new chain, 1 hit prefix, 2 new
    /// past a hit) at `fromEnd` blocks from its chain's end.
    public static func bucket(uses: Int, role: Int, fromEnd: Int) -> Int {
        ((min(max(uses, 1), 4) - 1) * 3 + min(max(role, 0), 2)) * 4 + min(max(fromEnd, 0), 3)
    }

    /// The estimated probability that a block of `bucket` is used again within the horizon. O(1).
    public func probability(_ bucket: Int) -> Double {
        (Double(positives[bucket]) + 1) / (Double(labelled[bucket]) + 2)
    }

    /// Records a use of `key` in `bucket` at time `now` (publications so far), settling the label
    /// of the key's previous use, or of the use whose slot it takes. O(1).
    public mutating func observe(_ key: BlockKey, bucket: Int, now: Double) {
        // Uses whose horizon has passed (or that the full queue must drop) settle as not reused.
        while queueCount > 0 && (now - queueTime[queueHead] > horizon || queueCount == queueTime.count) {
            let j = Int(queueSlot[queueHead])
            if pending[j] && slotTime[j] == queueTime[queueHead] { settle(j, reused: false) }
            queueHead = (queueHead + 1) & mask
            queueCount -= 1
        }
        let i = Int(truncatingIfNeeded: (key.lo &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
        let fp = key.lo | 1
        if pending[i] { settle(i, reused: fingerprints[i] == fp && now - slotTime[i] <= horizon) }
        fingerprints[i] = fp
        slotBucket[i] = UInt8(bucket)
        slotTime[i] = now
        pending[i] = true
        let tail = (queueHead + queueCount) & mask
        queueSlot[tail] = Int32(i)
        queueTime[tail] = now
        queueCount += 1
    }

    private mutating func settle(_ slot: Int, reused: Bool) {
        let b = Int(slotBucket[slot])
        labelled[b] &+= 1
        if reused { positives[b] &+= 1 }
        pending[slot] = false
    }

    /// Forgets everything learned. O(slots).
    public mutating func reset() {
        for i in positives.indices { positives[i] = 0; labelled[i] = 0 }
        for i in fingerprints.indices { fingerprints[i] = 0; pending[i] = false }
        queueHead = 0
        queueCount = 0
    }
}
