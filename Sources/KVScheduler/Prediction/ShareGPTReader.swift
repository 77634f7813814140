import Foundation

/// Reads ShareGPT conversations (JSON Lines, optionally gzip, or one JSON array) as length examples.
///
/// Each human turn that is directly followed by an assistant turn is one request: the prompt text is
/// the human turn, the prompt length is the whole conversation so far (history plus the turn, as a
/// server would see it), and the target is the length of the assistant reply. Lengths are counted
/// with `ApproximateTokenCounter` because ShareGPT has text only.
///
/// Split: by conversation. ShareGPT ids such as `QWJhYvA_0`, `QWJhYvA_1` are parts of one
/// conversation, so the group is the id without its `_N` suffix, and one group in five (stable hash)
/// is held out.
public enum ShareGPTReader {
    struct Turn: Decodable {
        var from: String
        var value: String
    }

    struct Conversation: Decodable {
        var id: String?
        var conversations: [Turn]
    }

    /// Loads a file, or every `*.json`, `*.jsonl`, `*.jsonl.gz` and `*.json.gz` file of a folder.
    /// `modelID`, when given, is attached to every example; `contextBytes > 0` prefixes each prompt
    /// text with up to that many trailing bytes of the previous reply (see `parse`).
    public static func load(path: String, modelID: String? = nil, contextBytes: Int = 0) throws(LengthDataError) -> LengthDataSet {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw .cannotRead(path: path, reason: "no such file or folder")
        }
        var files = [path]
        if isFolder.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.sorted().filter {
                $0.hasSuffix(".jsonl") || $0.hasSuffix(".jsonl.gz") || $0.hasSuffix(".json") || $0.hasSuffix(".json.gz")
            }.map { path + "/" + $0 }
            if files.isEmpty { throw .missingFile(folder: path, pattern: "*.json[l][.gz]") }
        }
        var all = LengthDataSet(examples: [])
        for file in files {
            let part = try parse(try CompressedFile.readAll(path: file), file: file, modelID: modelID,
                                 contextBytes: contextBytes)
            all.examples += part.examples
            all.skippedRecords += part.skippedRecords
        }
        return all
    }

    /// Parses one file's bytes. O(n) in its size.
    ///
    /// With `contextBytes > 0` the prompt text of a later turn starts with the last `contextBytes`
    /// bytes (cut at a character boundary) of the previous reply and a newline: the end of the
    /// conversation a server sees, where "continue" or "shorter please" find their referent.
    public static func parse(_ bytes: [UInt8], file: String, modelID: String? = nil,
                             contextBytes: Int = 0) throws(LengthDataError) -> LengthDataSet {
        var examples: [LengthExample] = []
        var skipped = 0
        var anonymous = 0
        func add(_ conversation: Conversation, number: Int) {
            let id = conversation.id ?? { anonymous += 1; return "\(file)#\(number)" }()
            let group = conversationGroup(id)
            let heldOut = LengthDataSet.hashSplitHeldOut(group)
            var contextTokens = 0
            let turns = conversation.conversations
            var produced = false
            for (i, turn) in turns.enumerated() {
                let tokens = ApproximateTokenCounter.count(turn.value)
                defer { contextTokens += tokens }
                guard isHuman(turn.from), i + 1 < turns.count, isAssistant(turns[i + 1].from) else { continue }
                let reply = ApproximateTokenCounter.count(turns[i + 1].value)
                var text = turn.value
                if contextBytes > 0 && i > 0 {
                    let previous = turns[i - 1].value.utf8
                    let tail = previous.index(previous.endIndex, offsetBy: -min(contextBytes, previous.count))
                    text = String(Substring(turns[i - 1].value.unicodeScalars[tail...])) + "\n" + text
                }
                let input = PredictionInput(promptTokens: contextTokens + tokens, promptText: text,
                                            modelID: modelID, maxTokens: LengthExample.unboundedMaxTokens)
                examples.append(LengthExample(input: input, target: Double(reply), samples: [Int32(clamping: reply)],
                                              group: group, heldOut: heldOut))
                produced = true
            }
            if !produced { skipped += 1 }
        }
        var first = 0
        while first < bytes.count && JSONLines.isSpace(bytes[first]) { first += 1 }
        if first < bytes.count && bytes[first] == UInt8(ascii: "[") {
            let all: [Conversation]
            do {
                all = try JSONDecoder().decode([Conversation].self, from: Data(bytes))
            } catch let DecodingError.keyNotFound(key, context) {
                throw .malformedLine(file: file, line: element(context) + 1, reason: "missing field \"\(key.stringValue)\" (array element)")
            } catch let DecodingError.typeMismatch(_, context) {
                throw .malformedLine(file: file, line: element(context) + 1, reason: "wrong type (array element)")
            } catch {
                throw .malformedLine(file: file, line: 1, reason: "not a JSON array of conversations")
            }
            for (i, conversation) in all.enumerated() { add(conversation, number: i + 1) }
        } else {
            try JSONLines.forEachLine(in: bytes) { (line, number) throws(LengthDataError) in
                add(try JSONLines.decode(Conversation.self, line, file: file, lineNumber: number), number: number)
            }
        }
        return LengthDataSet(examples: examples, skippedRecords: skipped)
    }

    /// The conversation an id belongs to: `abc_3` -> `abc`; ids without a numeric suffix are their own group.
    public static func conversationGroup(_ id: String) -> String {
        guard let underscore = id.lastIndex(of: "_") else { return id }
        let suffix = id[id.index(after: underscore)...]
        guard !suffix.isEmpty, suffix.allSatisfy({ $0.isASCII && $0.isNumber }) else { return id }
        return String(id[..<underscore])
    }

    /// Whether a turn's speaker (`from`/`role`, as written) is the user asking. O(1).
    public static func isHuman(_ from: String) -> Bool { from == "human" || from == "user" }
    /// Whether a turn's speaker (as written) is the model answering. O(1).
    public static func isAssistant(_ from: String) -> Bool {
        from == "gpt" || from == "assistant" || from == "chatgpt" || from == "bing" || from == "bard"
    }
    private static func element(_ context: DecodingError.Context) -> Int {
        context.codingPath.first?.intValue ?? 0
    }
}
