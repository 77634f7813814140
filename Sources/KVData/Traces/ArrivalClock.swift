/// Turns a trace's timestamps into arrivals (seconds after the first accepted row), refusing what
/// the replay could not use: a timestamp that is not finite, earlier than the previous accepted
/// one, or more than `DataLimits.maxArrivalSpanSeconds` after the first.
///
/// The one rule of every reader with times (Mooncake, CSV). O(1) per row, allocates only the
/// reason of a refused timestamp.
struct ArrivalClock {
    /// Units of the trace's timestamps per second (1000 for milliseconds); arrivals divide by it.
    let unitsPerSecond: Double
    private var first: Double?
    private var last: Double?

    init(unitsPerSecond: Double) { self.unitsPerSecond = unitsPerSecond }

    /// The arrival of a row stamped `timestamp`, or why it is refused; changes nothing (`accept`
    /// records it once the row is taken).
    func arrival(of timestamp: Double) -> Result<Double, Refusal> {
        guard timestamp.isFinite else { return .failure(Refusal("timestamp \(timestamp) is not a finite number")) }
        if let last, timestamp < last {
            return .failure(Refusal("timestamp \(timestamp) is earlier than the previous row's \(last) (sort the trace by time)"))
        }
        let arrival = (timestamp - (first ?? timestamp)) / unitsPerSecond
        guard arrival <= DataLimits.maxArrivalSpanSeconds else {
            return .failure(Refusal("timestamp \(timestamp) is more than \(DataLimits.maxArrivalSpanSeconds) s after the first row's"))
        }
        return .success(arrival)
    }

    /// Records a taken row's timestamp (one `arrival(of:)` accepted).
    mutating func accept(_ timestamp: Double) {
        if first == nil { first = timestamp }
        last = timestamp
    }

    /// Why a timestamp was refused, in a few words.
    struct Refusal: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
