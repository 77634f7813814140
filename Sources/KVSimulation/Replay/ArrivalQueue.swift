import KVCache
import KVData

/// The order in which a modelled run's requests arrive, with conversations kept in order: a request
/// that follows another of the same session (the next turn of a ShareGPT conversation) arrives only
/// after that one finished, plus a think time, so its history really is in the cache to be hit.
///
/// Released turns leave by (time, request index): turns released for the same moment arrive in trace
/// order. `nextTime` is O(1); `pop` and `finished` are O(log n) (the released turns in an `IndexedHeap`
/// sized for the trace, so neither allocates).
struct ArrivalQueue {
    private let arrivals: [Double]
    private var order: [Int32] = []
    private var next = 0
    private var successor: [Int32]
    private var released: IndexedHeap<Release>
    private let thinkSeconds: Double

    /// A released turn's key: its arrival time, then its request index.
    private struct Release: Comparable, Sendable {
        var time: Double
        var index: Int32
        static func < (a: Self, b: Self) -> Bool { a.time != b.time ? a.time < b.time : a.index < b.index }
    }

    /// - Parameter gateSessions: hold each session's later requests until the earlier one finished.
    init(_ requests: [TraceRequest], gateSessions: Bool, thinkSeconds: Double) {
        arrivals = requests.map(\.arrival)
        successor = [Int32](repeating: -1, count: requests.count)
        released = IndexedHeap(capacity: gateSessions ? requests.count : 0)
        self.thinkSeconds = thinkSeconds
        var last: [String: Int] = [:]
        var hasPredecessor = [Bool](repeating: false, count: requests.count)
        if gateSessions {
            for (i, r) in requests.enumerated() {
                guard let s = r.session else { continue }
                if let p = last[s] {
                    successor[p] = Int32(i)
                    hasPredecessor[i] = true
                }
                last[s] = i
            }
        }
        order = (0..<requests.count).filter { !hasPredecessor[$0] }.map(Int32.init)
        order.sort { arrivals[Int($0)] < arrivals[Int($1)] || (arrivals[Int($0)] == arrivals[Int($1)] && $0 < $1) }
    }

    /// When the next request arrives (infinity when none is due yet).
    var nextTime: Double {
        let a = next < order.count ? arrivals[Int(order[next])] : .infinity
        let b = released.minKey?.time ?? .infinity
        return min(a, b)
    }

    /// The next request arriving at or before `t`, with its arrival time; nil when none.
    mutating func pop(upTo t: Double) -> (index: Int, time: Double)? {
        let a = next < order.count ? arrivals[Int(order[next])] : .infinity
        let b = released.minKey?.time ?? .infinity
        if a <= b && a <= t {
            next += 1
            return (Int(order[next - 1]), a)
        }
        if b <= t {
            let index = released.popMin()!
            return (Int(index), b)
        }
        return nil
    }

    /// Releases the request that follows `index` in its session (if any), `thinkSeconds` after `time`.
    mutating func finished(_ index: Int, at time: Double) {
        let s = successor[index]
        guard s >= 0 else { return }
        released.insert(s, key: Release(time: max(arrivals[Int(s)], time + thinkSeconds), index: s))
    }
}
