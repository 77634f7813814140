import KVData

/// Replays multi-turn conversations through `PensieveRetention`, turn by turn at their arrival times.
///
/// - Conversations are the requests' sessions (a request without one is a conversation of one turn); a
///   turn's prompt is expected to start with its conversation's history (earlier prompts and replies),
///   as in ShareGPT and Marconi chat traces. A trace with hash ids and no sessions (Mooncake) has its
///   conversations derived from the hash chains (`HashChainConversations`), each turn reusing only the
///   complete blocks it shares with the previous turn.
/// - Times: the trace's own arrivals when it has them (think time included); otherwise conversation j
///   (in order of first appearance) starts at j x `conversationGapSeconds` and its turn k arrives
///   `k x thinkSeconds` later. Turns are served at their arrival in arrival order (file order on ties);
///   a turn's service time, batching and queueing are not modelled (this is not the timed engine).
///
/// O(turns + chunks moved x log conversations); memory O(conversations).
public enum PensieveReplay {
    public struct Schedule: Sendable, Equatable {
        public var conversationGapSeconds: Double
        public var thinkSeconds: Double
        public init(conversationGapSeconds: Double = 10, thinkSeconds: Double = 60) {
            self.conversationGapSeconds = conversationGapSeconds; self.thinkSeconds = thinkSeconds
        }
    }

    public struct Result: Sendable, Equatable {
        public var turns = 0
        public var conversations = 0
        public var promptTokens = 0
        /// Every turn's figures summed.
        public var totals = PensieveRetention.Served()
        public var counters = PensieveRetention.Counters()
        /// Host hits over history tokens.
        public var hostHitRate: Double { totals.historyTokens == 0 ? 0 : Double(totals.hostHitTokens) / Double(totals.historyTokens) }
        /// GPU and host hits over history tokens.
        public var historyHitRate: Double {
            totals.historyTokens == 0 ? 0 : Double(totals.gpuHitTokens + totals.hostHitTokens) / Double(totals.historyTokens)
        }
    }

    /// Each request's conversation, arrival and reusable context tokens (`Int.max`: its whole
    /// conversation's context) under `schedule`, and the conversation count. O(n log n) with hash chains,
    /// O(n) otherwise.
    public static func timeline(_ requests: [TraceRequest], hasTimestamps: Bool, schedule: Schedule)
        -> (conversation: [Int], time: [Double], reusable: [Int], conversations: Int) {
        var conversation = [Int](repeating: 0, count: requests.count)
        var reusable = [Int](repeating: .max, count: requests.count)
        var count = 0
        if !requests.contains(where: { $0.session != nil }) && requests.contains(where: { !$0.hashIDs.isEmpty }) {
            let order = hasTimestamps ? arrivalOrder(requests.map(\.arrival)) : Array(requests.indices)
            let links = HashChainConversations.link(requests, order: order)
            conversation = links.conversation
            reusable = links.reusableTokens
            count = links.conversations
        } else {
            var ids: [String: Int] = [:]
            for (i, r) in requests.enumerated() {
                if let s = r.session, let known = ids[s] {
                    conversation[i] = known
                } else {
                    conversation[i] = count
                    if let s = r.session { ids[s] = count }
                    count += 1
                }
            }
        }
        var turnsSeen = [Int](repeating: 0, count: count)
        var time = [Double](repeating: 0, count: requests.count)
        for (i, r) in requests.enumerated() {
            let c = conversation[i]
            time[i] = hasTimestamps ? r.arrival
                : Double(c) * schedule.conversationGapSeconds + Double(turnsSeen[c]) * schedule.thinkSeconds
            turnsSeen[c] += 1
        }
        return (conversation, time, reusable, count)
    }

    /// Indices by time, file order on ties.
    private static func arrivalOrder(_ time: [Double]) -> [Int] {
        time.indices.sorted { time[$0] != time[$1] ? time[$0] < time[$1] : $0 < $1 }
    }

    /// Runs `requests` through a fresh `PensieveRetention` of `config`, validating it every
    /// `validateEvery` turns (0: never) and at the end.
    public static func run(_ requests: [TraceRequest], hasTimestamps: Bool, schedule: Schedule = Schedule(),
                           config: PensieveRetention.Config, validateEvery: Int = 0) throws(CacheModelError) -> Result {
        var retention = try PensieveRetention(config)
        let (conversation, time, reusable, count) = timeline(requests, hasTimestamps: hasTimestamps, schedule: schedule)
        let order = arrivalOrder(time)
        var result = Result()
        result.conversations = count
        for (k, i) in order.enumerated() {
            let r = requests[i]
            let s = retention.serve(conversation: conversation[i], now: time[i], promptTokens: r.inputTokens,
                                    outputTokens: r.outputTokens, reusableTokens: reusable[i])
            result.turns += 1
            result.promptTokens += r.inputTokens
            result.totals.add(s)
            if validateEvery > 0 && (k + 1) % validateEvery == 0 { try retention.validate() }
        }
        try retention.validate()
        result.counters = retention.counters
        return result
    }
}
