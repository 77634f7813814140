import KVData
import KVScheduler

/// Options of `HistoryLengthPredictor`.
public struct HistoryPredictorConfig: Sendable, Equatable {
    /// Recent outputs kept per statistic (template, template x length bin, length bin, global).
    public var window = 32
    /// Outputs a statistic needs before it is trusted; coarser statistics answer until then.
    public var minSamples = 3
    /// The quantile of the recent outputs to reserve.
    public var reserveQuantile = 0.9
    /// Templates (and template x length-bin pairs) remembered; the oldest is forgotten first.
    public var maxTemplates = 4096
    /// The expected length before anything was observed (the reserve is then `maxTokens`).
    public var prior = 256
    public var buckets = LengthBuckets.standard
    /// Scales reserves online so that the share of requests outgrowing them tends to
    /// `1 - reserveQuantile` (a window of a few dozen outputs underestimates high quantiles).
    public var calibrate = true
    /// Step of that scale per observed request, in log space.
    public var calibrationStep = 0.05

    public init(window: Int = 32, minSamples: Int = 3, reserveQuantile: Double = 0.9, maxTemplates: Int = 4096,
                prior: Int = 256, buckets: LengthBuckets = .standard, calibrate: Bool = true) {
        self.calibrate = calibrate
        self.window = window
        self.minSamples = minSamples
        self.reserveQuantile = reserveQuantile
        self.maxTemplates = maxTemplates
        self.prior = prior
        self.buckets = buckets
    }
}

/// Predicts output lengths from what recent requests of the same kind produced, for traces without
/// text (Azure, Mooncake).
///
/// Requests are grouped, from finest to coarsest, by (template x prompt-length bin), template,
/// prompt-length bin (log2 of the prompt tokens) and globally. The template is `templateKey` (for
/// example the first prefix block, usually the system prompt), combined with `modelID` when given.
/// Each group keeps a ring of its last `window` outputs; a prediction uses the finest group with at
/// least `minSamples` outputs: `expected` is their median, `reserve` their `reserveQuantile`.
/// `observe` pushes the true length into every group of the request, so the predictor follows
/// drift within `window` requests. With `calibrate`, a `ReserveCalibrator` scales reserves so that
/// the share of requests outgrowing them tends to `1 - reserveQuantile`.
///
/// `predict` is O(window^2) worst case (insertion sort of one window, 32 by default), and so is
/// `observe` with calibration (it predicts first), O(1) without; neither allocates (the template table is reserved up front). Single-threaded.
public final class HistoryLengthPredictor: OutputLengthPredictor {
    public let config: HistoryPredictorConfig
    private static let lengthBins = 32
    private var values: [Int32]          // slot * window + i
    private var counts: [Int32]          // per slot: outputs seen, capped at window
    private var heads: [Int32]           // per slot: next position to write
    private var templateSlots: [UInt64: Int32]
    private var slotKeys: [UInt64]       // key of each template slot, for FIFO replacement
    private var nextTemplateSlot = 0
    private var templatesInUse = 0
    private var scratch: [Int32]
    /// Scales reserves towards the target underpredict rate (when `config.calibrate`).
    public private(set) var calibrator: ReserveCalibrator
    /// The calibration scale applied to reserves (1 until requests are observed).
    public var reserveScale: Double { calibrator.scale }

    /// Slot 0 is global, slots 1...32 the length bins, the rest templates.
    private var firstTemplateSlot: Int { 1 + Self.lengthBins }

    public init(config: HistoryPredictorConfig = HistoryPredictorConfig()) {
        var c = config
        c.window = max(1, c.window)
        c.minSamples = min(max(1, c.minSamples), c.window)
        c.maxTemplates = max(1, c.maxTemplates)
        self.config = c
        let slots = 1 + Self.lengthBins + c.maxTemplates
        values = [Int32](repeating: 0, count: slots * c.window)
        counts = [Int32](repeating: 0, count: slots)
        heads = [Int32](repeating: 0, count: slots)
        templateSlots = Dictionary(minimumCapacity: c.maxTemplates)
        slotKeys = [UInt64](repeating: 0, count: c.maxTemplates)
        scratch = [Int32](repeating: 0, count: c.window)
        calibrator = ReserveCalibrator(quantile: c.reserveQuantile, step: c.calibrationStep)
    }

    public func predict(_ input: PredictionInput) -> LengthPrediction {
        predictFromHistory(input).prediction
    }

    /// The prediction, and whether it came from observed outputs rather than the prior.
    private func predictFromHistory(_ input: PredictionInput) -> (prediction: LengthPrediction, observed: Bool) {
        let limit = max(1, input.maxTokens)
        let bin = lengthBin(input.promptTokens)
        var slot = -1
        if let (fine, coarse) = templateKeys(input) {
            if let s = templateSlots[fine], Int(counts[Int(s)]) >= config.minSamples { slot = Int(s) }
            else if let s = templateSlots[coarse], Int(counts[Int(s)]) >= config.minSamples { slot = Int(s) }
        }
        if slot < 0 && Int(counts[1 + bin]) >= config.minSamples { slot = 1 + bin }
        if slot < 0 && Int(counts[0]) >= config.minSamples { slot = 0 }
        guard slot >= 0 else {
            let e = min(limit, max(1, config.prior))
            return (LengthPrediction(expected: e, reserve: limit, bucket: config.buckets.bucket(of: Double(e))), false)
        }
        let n = Int(counts[slot])
        let window = config.window
        let (median, upper): (Int32, Int32) = values.withUnsafeBufferPointer { v in
            scratch.withUnsafeMutableBufferPointer { s in
                for i in 0..<n { s[i] = v[slot * window + i] }
                // Insertion sort: the window is small and this allocates nothing.
                for i in 1..<max(1, n) {
                    let x = s[i]
                    var j = i - 1
                    while j >= 0 && s[j] > x { s[j + 1] = s[j]; j -= 1 }
                    s[j + 1] = x
                }
                let m = n % 2 == 1 ? s[n / 2] : Int32((Int64(s[n / 2 - 1]) + Int64(s[n / 2]) + 1) / 2)
                let rank = min(n - 1, max(0, Int((config.reserveQuantile * Double(n)).rounded(.up)) - 1))
                return (m, s[rank])
            }
        }
        let e = min(limit, max(1, Int(median)))
        let r = calibrator.apply(Double(upper), floor: e, limit: limit)
        return (LengthPrediction(expected: e, reserve: r, bucket: config.buckets.bucket(of: Double(e))), true)
    }

    public func observe(_ input: PredictionInput, actualOutput: Int) {
        guard actualOutput >= 0 else { return }
        if config.calibrate {
            let (p, observed) = predictFromHistory(input)
            if observed && p.reserve < input.maxTokens { calibrator.record(reserve: p.reserve, actual: actualOutput) }
        }
        let value = Int32(clamping: actualOutput)
        push(value, slot: 0)
        push(value, slot: 1 + lengthBin(input.promptTokens))
        if let (fine, coarse) = templateKeys(input) {
            push(value, slot: templateSlot(fine))
            push(value, slot: templateSlot(coarse))
        }
    }

    /// How many outputs the finest group of `input` holds (for tools and tests).
    public func samplesKnown(for input: PredictionInput) -> Int {
        guard let (fine, _) = templateKeys(input), let s = templateSlots[fine] else { return 0 }
        return Int(counts[Int(s)])
    }

    /// (template x length bin, template) keys, or nil when the input has neither template nor model.
    @inline(__always) private func templateKeys(_ input: PredictionInput) -> (UInt64, UInt64)? {
        guard input.templateKey != nil || input.modelID != nil else { return nil }
        var key = StableHash.mix(input.templateKey ?? 0x7e3a_11d0)
        if let model = input.modelID { key = StableHash.combine(key, StableHash.fnv1a(model)) }
        return (StableHash.combine(key, UInt64(lengthBin(input.promptTokens)) &+ 1), key)
    }

    @inline(__always) private func lengthBin(_ tokens: Int) -> Int {
        let x = UInt64(clamping: max(0, tokens)) &+ 1
        return min(Self.lengthBins - 1, 63 - x.leadingZeroBitCount)
    }

    /// The slot of a template, taking over the oldest template's slot when the table is full. O(1).
    private func templateSlot(_ key: UInt64) -> Int {
        if let s = templateSlots[key] { return Int(s) }
        let index = nextTemplateSlot
        nextTemplateSlot = (nextTemplateSlot + 1) % config.maxTemplates
        if templatesInUse == config.maxTemplates {
            templateSlots.removeValue(forKey: slotKeys[index])
        } else {
            templatesInUse += 1
        }
        let slot = firstTemplateSlot + index
        slotKeys[index] = key
        templateSlots[key] = Int32(slot)
        counts[slot] = 0
        heads[slot] = 0
        return slot
    }

    @inline(__always) private func push(_ value: Int32, slot: Int) {
        let head = Int(heads[slot])
        values[slot * config.window + head] = value
        heads[slot] = Int32((head + 1) % config.window)
        if Int(counts[slot]) < config.window { counts[slot] += 1 }
    }
}
