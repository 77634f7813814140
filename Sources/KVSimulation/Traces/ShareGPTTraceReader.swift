import Foundation
import KVScheduler

/// Reads ShareGPT conversations (a JSON array, or JSONL with one conversation per line) as one request
/// per assistant turn.
///
/// Turn `k`'s prompt is the whole conversation before its answer: every earlier message plus the
/// user's message, each with `messageOverheadTokens` of chat-template tokens. Its output is the
/// answer. The history is a shared prefix: the prompt's full blocks of `prefixBlockTokens` get hash ids
/// derived from the conversation id and block index, so the next turn (whose prompt extends this one)
/// hits them. Text becomes token counts through `tokenCount` (by default `ApproximateTokenCounter`, a
/// tokenizer-free estimate of a byte-level BPE count, see its documentation for the measured error). Arrivals are 0 (the trace has no times): the replay spreads them.
/// Messages from `system` join the history; a user message with no answer after it makes no request,
/// and neither does an empty conversation (valid, just empty). Lines are walked by `JSONLines` (split at
/// `\n` only: JSON strings may hold U+2028).
public enum ShareGPTTraceReader {
    /// Chat-template tokens per message (role header and separators, Llama-3 style).
    public static let messageOverheadTokens = 4
    /// Tokens per prefix hash id.
    public static let prefixBlockTokens = 16

    struct Message: Decodable {
        var from: String?
        var role: String?
        var value: String?
        var content: String?
        var speaker: String { (from ?? role ?? "").lowercased() }
        var text: String { value ?? content ?? "" }
    }

    struct Conversation: Decodable {
        var id: String?
        var conversations: [Message]?
        var conversation: [Message]?
        var messages: [Message] { conversations ?? conversation ?? [] }
    }

    public static func parse(_ text: String, path: String, skipBadLines: Bool = false,
                             tokenCount: (String) -> Int = ApproximateTokenCounter.count) throws(TraceError) -> LoadedTrace {
        var sink = BadLineSink(path: path, skip: skipBadLines)
        var requests: [TraceRequest] = []
        let decoder = JSONDecoder()
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" || $0 == "\u{FEFF}" }
        if trimmed.hasPrefix("[") {
            // One JSON array: records are numbered (1-based) since lines mean little there.
            guard let array = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [Any] else {
                throw .badLine(path: path, line: 1, reason: "not a JSON array of conversations")
            }
            for (k, element) in array.enumerated() {
                guard let data = try? JSONSerialization.data(withJSONObject: element),
                      let conv = try? decoder.decode(Conversation.self, from: data) else {
                    try sink.report(line: k + 1, "record \(k + 1) is not a conversation")
                    continue
                }
                append(conv, ordinal: k, to: &requests, tokenCount: tokenCount)
            }
        } else {
            try JSONLines.forEachLine(in: Array(text.utf8)) { (line, lineNumber) throws(TraceError) in
                guard let conv = try? decoder.decode(Conversation.self, from: Data(line)) else {
                    try sink.report(line: lineNumber, "not a JSON conversation object")
                    return
                }
                append(conv, ordinal: lineNumber, to: &requests, tokenCount: tokenCount)
            }
        }
        guard !requests.isEmpty else { throw .empty(path: path) }
        return LoadedTrace(requests: requests, format: .sharegpt, skippedLines: sink.skipped,
                           firstSkipped: sink.first, hasTimestamps: false)
    }

    static func append(_ conv: Conversation, ordinal: Int, to requests: inout [TraceRequest],
                       tokenCount: (String) -> Int) {
        let session = conv.id ?? "conversation-\(ordinal)"
        let sessionHash = StableHash.fnv1a(session)
        let messages = conv.messages
        var history = 0
        var i = 0
        while i < messages.count {
            let m = messages[i]
            let tokens = tokenCount(m.text) + messageOverheadTokens
            if ShareGPTReader.isHuman(m.speaker), i + 1 < messages.count,
               ShareGPTReader.isAssistant(messages[i + 1].speaker) {
                let prompt = history + tokens
                let output = tokenCount(messages[i + 1].text)
                let blocks = prompt / prefixBlockTokens
                var ids: [UInt64] = []
                ids.reserveCapacity(blocks)
                for b in 0..<blocks { ids.append(StableHash.combine(sessionHash, UInt64(b))) }
                if output > 0 {
                    requests.append(TraceRequest(arrival: 0, inputTokens: prompt, outputTokens: output, hashIDs: ids,
                                                 hashBlockTokens: prefixBlockTokens, promptText: m.text, session: session))
                }
                history = prompt + output + messageOverheadTokens
                i += 2
            } else {
                history += tokens
                i += 1
            }
        }
    }
}
