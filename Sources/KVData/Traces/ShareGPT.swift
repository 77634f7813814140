import Foundation

/// Reads ShareGPT conversations (one JSON array, or JSONL with one conversation per line; either
/// optionally gzip) with ONE conversation model for the replay and the predictors.
///
/// A conversation is `{id?, conversations|conversation: [{from|role, value|content}]}` (ShareGPT and
/// OpenAI spellings; speakers compared lowercased). Each user message directly followed by an
/// assistant message is one turn. One token rule for both consumers: a turn's prompt is every earlier
/// message plus the user's, each counted as `tokenCount(text) + templateTokensPerMessage`; the reply
/// is `tokenCount(answer)`. The replay charges `replayTemplateTokens` (4: role header and separators,
/// Llama-3 style) per message, the predictors 0 (their README figures were measured that way): the one
/// thing that legitimately differs is that option. Messages from `system` join the history. A record
/// that is not a conversation is a `DataError.badLine` (line in JSONL, 1-based element in an array), or
/// counted and skipped with `skipBadLines`, as is a conversation with a turn over
/// `DataLimits.maxTokensPerRequest` tokens. O(n) in the file size.
public enum ShareGPT {
    /// Chat-template tokens per message in the replay.
    public static let replayTemplateTokens = 4
    /// Tokens per prefix hash id in the replay.
    public static let prefixBlockTokens = 16

    /// One message.
    public struct Message: Decodable, Sendable {
        var from: String?
        var role: String?
        var value: String?
        var content: String?
        /// The speaker, lowercased (`human`, `gpt`, `user`, `assistant`, `system`, ...).
        public var speaker: String { (from ?? role ?? "").lowercased() }
        /// The text ("" when absent).
        public var text: String { value ?? content ?? "" }

        public init(speaker: String, text: String) {
            from = speaker
            value = text
        }
    }

    /// One conversation.
    public struct Conversation: Decodable, Sendable {
        public var id: String?
        var conversations: [Message]?
        var conversation: [Message]?
        /// The messages in order.
        public var messages: [Message] { conversations ?? conversation ?? [] }

        public init(id: String?, messages: [Message]) {
            self.id = id
            conversations = messages
        }
    }

    /// One user message answered by the assistant.
    public struct Turn: Sendable {
        /// Index of the user message in `messages`.
        public var message: Int
        /// Prompt tokens: the history plus the user's message, template tokens included.
        public var promptTokens: Int
        /// Reply tokens (no template tokens).
        public var replyTokens: Int
    }

    /// Calls `body` with each conversation of `source` and its location (line, or 1-based element).
    ///
    /// JSONL is streamed (one line held at a time, at most `DataLimits.maxLineBytes`); a JSON array is
    /// decoded whole, so a document larger than `DataLimits.maxJSONArrayBytes` or of more than
    /// `DataLimits.maxJSONArrayValues` values is refused.
    public static func forEachConversation(
        in source: ByteSource, skipBadLines: Bool = false, _ body: (Conversation, Int) throws(DataError) -> Void
    ) throws(DataError) -> (skipped: Int, firstSkipped: String?) {
        var sink = BadLineSink(path: source.path, skip: skipBadLines)
        var head: [UInt8] = []
        var more = try source.read(appendingTo: &head)
        var first = 0
        var line = 1
        while true {
            while first < head.count && JSONLines.isSpace(head[first]) {
                if head[first] == UInt8(ascii: "\n") { line += 1 }
                first += 1
            }
            if first < head.count || !more { break }
            // Only blank space so far: dropped, so that a file of blanks holds no memory.
            head.removeAll(keepingCapacity: true)
            first = 0
            more = try source.read(appendingTo: &head)
        }
        if first < head.count && head[first] == UInt8(ascii: "[") {
            // One JSON array: the whole document is decoded at once; bad elements are reported one by one.
            while more {
                more = try source.read(appendingTo: &head)
                guard head.count - first <= DataLimits.maxJSONArrayBytes else {
                    throw .badLine(path: source.path, line: line, reason: "JSON array larger than \(DataLimits.maxJSONArrayBytes) bytes (the limit; convert it to JSONL)")
                }
            }
            guard JSONLines.valueCount(head[first...], stoppingAfter: DataLimits.maxJSONArrayValues) <= DataLimits.maxJSONArrayValues else {
                throw .badLine(path: source.path, line: line, reason: "JSON array of more than \(DataLimits.maxJSONArrayValues) values (the limit; convert it to JSONL)")
            }
            let all: [Lenient]
            do { all = try JSONDecoder().decode([Lenient].self, from: Data(head[first...])) } catch {
                throw .badLine(path: source.path, line: line, reason: "not a JSON array of conversations")
            }
            head = []
            for (k, element) in all.enumerated() {
                guard let conversation = element.conversation else {
                    try sink.report(line: k + 1, "record \(k + 1) is not a conversation")
                    continue
                }
                try body(conversation, k + 1)
            }
        } else {
            // The rest of the piece already read, then the rest of the source, walked as one stream of lines.
            try JSONLines.forEachLine(in: source, prefix: Array(head[first...]), firstLine: line) { (bytes, number) throws(DataError) in
                let conversation: Conversation
                do throws(DataError) { conversation = try JSONLines.decode(Conversation.self, bytes, path: source.path, line: number) } catch {
                    try sink.report(error)
                    return
                }
                try body(conversation, number)
            }
        }
        return (sink.skipped, sink.first)
    }

    /// The turns of `conversation` under the one token rule. O(messages) token counts.
    public static func turns(of conversation: Conversation, templateTokensPerMessage: Int,
                             tokenCount: (String) -> Int = ApproximateTokenCounter.count) -> [Turn] {
        let messages = conversation.messages
        var turns: [Turn] = []
        var history = 0
        for i in messages.indices {
            let tokens = tokenCount(messages[i].text) + templateTokensPerMessage
            defer { history += tokens }
            guard isHuman(messages[i].speaker), i + 1 < messages.count, isAssistant(messages[i + 1].speaker) else { continue }
            turns.append(Turn(message: i, promptTokens: history + tokens, replyTokens: tokenCount(messages[i + 1].text)))
        }
        return turns
    }

    /// The conversation's name: its id, or `PATH#LOCATION` when it has none.
    public static func name(of conversation: Conversation, path: String, location: Int) -> String {
        conversation.id ?? "\(path)#\(location)"
    }

    /// The file as a trace: one request per turn with a reply of at least one token, whose prompt
    /// (`replayTemplateTokens` per message) is the whole conversation before the answer. The history is a
    /// shared prefix: the prompt's full blocks of `prefixBlockTokens` get hash ids from the conversation
    /// name and the block index, so the next turn (whose prompt extends this one) hits them. Arrivals
    /// are 0 (the data has no times): the replay spreads them.
    public static func trace(_ source: ByteSource, skipBadLines: Bool = false,
                             tokenCount: (String) -> Int = ApproximateTokenCounter.count) throws(DataError) -> LoadedTrace {
        var requests: [TraceRequest] = []
        var budget = RecordBudget(path: source.path)
        var tooLong = BadLineSink(path: source.path, skip: skipBadLines)
        let (skipped, first) = try forEachConversation(in: source, skipBadLines: skipBadLines) { (conversation, location) throws(DataError) in
            let session = name(of: conversation, path: source.path, location: location)
            let sessionHash = StableHash.fnv1a(session)
            let made = turns(of: conversation, templateTokensPerMessage: replayTemplateTokens, tokenCount: tokenCount)
            if let long = made.first(where: { $0.promptTokens > DataLimits.maxTokensPerRequest || $0.replyTokens > DataLimits.maxTokensPerRequest }) {
                try tooLong.report(line: location, "a turn of \(long.promptTokens) prompt and \(long.replyTokens) reply tokens is over the \(DataLimits.maxTokensPerRequest) limit")
                return
            }
            for turn in made where turn.replyTokens > 0 {
                let blocks = turn.promptTokens / prefixBlockTokens
                let text = conversation.messages[turn.message].text
                try budget.add(line: location, hashIDs: blocks, textBytes: text.utf8.count)
                var ids: [UInt64] = []
                ids.reserveCapacity(blocks)
                for b in 0..<blocks { ids.append(StableHash.combine(sessionHash, UInt64(b))) }
                requests.append(TraceRequest(arrival: 0, inputTokens: turn.promptTokens, outputTokens: turn.replyTokens,
                                             hashIDs: ids, hashBlockTokens: prefixBlockTokens,
                                             promptText: text, session: session))
            }
        }
        guard !requests.isEmpty else { throw .empty(path: source.path) }
        return LoadedTrace(requests: requests, format: .sharegpt, skippedLines: skipped + tooLong.skipped,
                           firstSkipped: first ?? tooLong.first, hasTimestamps: false)
    }

    /// Whether a speaker (lowercased) is the user asking. O(1).
    public static func isHuman(_ speaker: String) -> Bool { speaker == "human" || speaker == "user" }
    /// Whether a speaker (lowercased) is the model answering. O(1).
    public static func isAssistant(_ speaker: String) -> Bool {
        speaker == "gpt" || speaker == "assistant" || speaker == "chatgpt" || speaker == "bing" || speaker == "bard"
    }

    /// An array element that may not be a conversation.
    private struct Lenient: Decodable {
        var conversation: Conversation?
        init(from decoder: any Decoder) throws { conversation = try? Conversation(from: decoder) }
    }
}
