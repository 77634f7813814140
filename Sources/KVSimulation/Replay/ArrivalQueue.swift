import KVData

/// The order in which a modelled run's requests arrive, with conversations kept in order: a request
/// that follows another of the same session (the next turn of a ShareGPT conversation) arrives only
/// after that one finished, plus a think time, so its history really is in the cache to be hit.
///
/// `nextTime` is O(1); `pop` and `finished` are O(log n) (a binary heap of released turns).
struct ArrivalQueue {
    private let arrivals: [Double]
    private var order: [Int32] = []
    private var next = 0
    private var successor: [Int32]
    private var released: [(time: Double, index: Int32)] = []
    private let thinkSeconds: Double

    /// - Parameter gateSessions: hold each session's later requests until the earlier one finished.
    init(_ requests: [TraceRequest], gateSessions: Bool, thinkSeconds: Double) {
        arrivals = requests.map(\.arrival)
        successor = [Int32](repeating: -1, count: requests.count)
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
        let b = released.first?.time ?? .infinity
        return min(a, b)
    }

    /// The next request arriving at or before `t`, with its arrival time; nil when none.
    mutating func pop(upTo t: Double) -> (index: Int, time: Double)? {
        let a = next < order.count ? arrivals[Int(order[next])] : .infinity
        let b = released.first?.time ?? .infinity
        if a <= b && a <= t {
            next += 1
            return (Int(order[next - 1]), a)
        }
        if b <= t {
            let top = released[0]
            let last = released.removeLast()
            if !released.isEmpty {
                released[0] = last
                siftDown(0)
            }
            return (Int(top.index), top.time)
        }
        return nil
    }

    /// Releases the request that follows `index` in its session (if any), `thinkSeconds` after `time`.
    mutating func finished(_ index: Int, at time: Double) {
        let s = successor[index]
        guard s >= 0 else { return }
        released.append((max(arrivals[Int(s)], time + thinkSeconds), s))
        var i = released.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard released[i].time < released[parent].time else { break }
            released.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < released.count && released[l].time < released[m].time { m = l }
            if r < released.count && released[r].time < released[m].time { m = r }
            if m == i { return }
            released.swapAt(i, m)
            i = m
        }
    }
}
