import KVCache
import KVScheduler

/// Measures the scheduler's own CPU cost per step (plan + completion + submissions, cache calls
/// included) with a steady batch of running sequences, for `kvcache bench`. Only the time inside the
/// scheduler's API is counted; the fake engine around it (stop decisions, building new requests) is not.
/// Time is the calling thread's CPU time (`KVClock.threadCPUNanos`), so other processes on a shared
/// machine do not inflate it.
///
/// The batch decodes; sequences finish at seeded random lengths (64-1023 tokens) and new requests
/// replace them, so each step also sees admissions, chunked prefills and block growth. The predictor
/// is a history mean, so the measurement includes predictions and feedback. The cache is sized so
/// memory never preempts: the figure is the steady-state bookkeeping cost.
public enum SchedulerBench {
    /// Nanoseconds per step (schedule + complete), averaged over `steps` steps after a warm-up.
    public static func run(runningSequences: Int = 512, steps: Int = 4000,
                           policy: ReservationPolicy = .predicted) -> Double {
        let blockTokens = 16
        let promptTokens = 256
        let capacity = runningSequences * (promptTokens + 1024) / blockTokens * 2
        guard let cache = try? KVCacheManager(KVCacheConfig(blockTokens: blockTokens, capacityBlocks: capacity)) else { return .nan }
        var config = SchedulerConfig(reservation: policy)
        config.maxRunningSequences = runningSequences
        config.maxBatchedTokens = runningSequences + 2 * promptTokens
        let scheduler = Scheduler(config: config, cache: cache, predictor: MeanPredictor())
        var generator = LCG(state: 0x1234_5678)
        func random(_ n: Int) -> Int { Int(generator.next() % UInt64(n)) }
        var remaining: [Int] = []   // by request id (ids are dense)
        remaining.reserveCapacity(runningSequences + steps * 2)
        var nextID: Int64 = 0
        var stops: [Bool] = []
        stops.reserveCapacity(runningSequences * 2)
        var inside: UInt64 = 0   // nanoseconds of thread CPU time inside the scheduler
        func submit() {
            let id = nextID
            nextID += 1
            remaining.append(64 + random(960))
            let keys = (0..<(promptTokens / blockTokens)).map { BlockKey(lo: UInt64($0 + 1), hi: UInt64(id) | 1 << 40) }
            let request = SchedulerRequest(id: SequenceID(id), prompt: .keys(keys, tokenCount: promptTokens),
                                           maxTokens: 2048, arrival: 0, knownOutputTokens: remaining[Int(id)])
            let t0 = KVClock.threadCPUNanos()
            try? scheduler.submit(request)
            inside += KVClock.threadCPUNanos() - t0
        }
        for _ in 0..<runningSequences { submit() }
        var now = 0.0
        func step() {
            let t0 = KVClock.threadCPUNanos()
            guard let plan = try? scheduler.schedule(now: now) else { return }
            inside += KVClock.threadCPUNanos() - t0
            stops.removeAll(keepingCapacity: true)
            for p in plan.prefills where p.samples {
                remaining[Int(p.id.raw)] -= 1
                stops.append(remaining[Int(p.id.raw)] <= 0)
            }
            for d in plan.decodes {
                remaining[Int(d.id.raw)] -= 1
                stops.append(remaining[Int(d.id.raw)] <= 0)
            }
            now += 0.01
            let t1 = KVClock.threadCPUNanos()
            try? scheduler.complete(stops: stops, now: now)
            inside += KVClock.threadCPUNanos() - t1
            for _ in scheduler.finished { submit() }
        }
        // Warm up until the batch is full and decoding.
        for _ in 0..<200 { step() }
        inside = 0
        for _ in 0..<steps { step() }
        return Double(inside) / Double(steps)
    }
}

/// The running mean of observed outputs (the benchmark's predictor).
final class MeanPredictor: OutputLengthPredictor {
    var sum = 0, count = 0
    func predict(_ input: PredictionInput) -> LengthPrediction {
        let mean = count == 0 ? 512 : sum / count
        return LengthPrediction(expected: mean, reserve: mean * 3 / 2, bucket: 0)
    }
    func observe(_ input: PredictionInput, actualOutput: Int) {
        sum += actualOutput
        count += 1
    }
}
