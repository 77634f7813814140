import KVData
import KVScheduler

extension LengthDataSet {
    /// A Mooncake trace (read by `KVData.Mooncake`, the replay's reader) as length examples for the
    /// history predictor: traces without text.
    ///
    /// The template key is the first prefix-block hash id (usually the system prompt). The split is by
    /// time: requests arriving before the median arrival train (warm up) the predictor, the later ones
    /// are held out, and evaluation replays them in arrival order (file order among equal arrivals).
    /// The group of an example is its request's 1-based ordinal.
    ///
    /// - Complexity: O(n log n) for the time sort.
    public static func mooncake(_ trace: LoadedTrace) -> LengthDataSet {
        let order = trace.requests.indices.sorted {
            (trace.requests[$0].arrival, $0) < (trace.requests[$1].arrival, $1)
        }
        var examples = order.map { i in
            let r = trace.requests[i]
            let input = PredictionInput(promptTokens: r.inputTokens, templateKey: r.hashIDs.first,
                                        maxTokens: LengthExample.unboundedMaxTokens)
            return LengthExample(input: input, target: Double(r.outputTokens), samples: [Int32(clamping: r.outputTokens)],
                                 group: "\(i + 1)", heldOut: false)
        }
        for i in examples.indices { examples[i].heldOut = i >= examples.count / 2 }
        return LengthDataSet(examples: examples)
    }

    /// A Mooncake file (optionally gzip) as length examples (see `mooncake(_:)`).
    public static func mooncake(path: String) throws(DataError) -> LengthDataSet {
        mooncake(try TraceLoader.load(path: path, format: .mooncake))
    }
}
