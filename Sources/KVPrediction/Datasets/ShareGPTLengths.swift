import KVData
import KVScheduler

extension LengthDataSet {
    /// ShareGPT as length examples: one per turn of `KVData.ShareGPT` (a user message answered by the
    /// assistant), with no template tokens per message (`templateTokensPerMessage: 0`; the replay
    /// charges `ShareGPT.replayTemplateTokens`): the prompt length is the conversation so far, the target
    /// the reply's length, both counted by `ApproximateTokenCounter`.
    ///
    /// With `contextBytes > 0` the prompt text of a later turn starts with the last `contextBytes` bytes
    /// (cut at a character boundary) of the previous message and a newline: the end of the conversation
    /// a server sees, where "continue" or "shorter please" find their referent.
    ///
    /// Split: by conversation. ShareGPT ids such as `QWJhYvA_0`, `QWJhYvA_1` are parts of one
    /// conversation, so the group is the id without its `_N` suffix, and `hashSplitHeldOut` holds out
    /// one group in five. A conversation without a turn is counted in `skippedRecords`. `RecordBudget`
    /// bounds the examples and their text per file.
    ///
    /// - Parameter path: a file, or a folder whose `*.json`, `*.jsonl`, `*.jsonl.gz`, `*.json.gz` files
    ///   are read in name order.
    /// - Complexity: O(n) in the (inflated) size.
    public static func shareGPT(path: String, modelID: String? = nil, contextBytes: Int = 0) throws(DataError) -> LengthDataSet {
        var files = [path]
        if FolderListing.isFolder(path) {
            files = try FolderListing.files(in: path, suffixes: [".jsonl", ".jsonl.gz", ".json", ".json.gz"])
            if files.isEmpty { throw .missingFile(folder: path, pattern: "*.json[l][.gz]") }
        }
        var all = LengthDataSet(examples: [])
        for file in files {
            let part = try shareGPT(ByteSource(path: file), modelID: modelID, contextBytes: contextBytes)
            all.examples += part.examples
            all.skippedRecords += part.skippedRecords
        }
        return all
    }

    /// ShareGPT from one source (see `shareGPT(path:modelID:contextBytes:)`).
    public static func shareGPT(_ source: ByteSource, modelID: String? = nil, contextBytes: Int = 0) throws(DataError) -> LengthDataSet {
        var examples: [LengthExample] = []
        var skipped = 0
        var budget = RecordBudget(path: source.path)
        _ = try ShareGPT.forEachConversation(in: source) { (conversation, location) throws(DataError) in
            let group = conversationGroup(ShareGPT.name(of: conversation, path: source.path, location: location))
            let heldOut = hashSplitHeldOut(group)
            let messages = conversation.messages
            let turns = ShareGPT.turns(of: conversation, templateTokensPerMessage: 0)
            if turns.isEmpty { skipped += 1 }
            for turn in turns {
                var text = messages[turn.message].text
                if contextBytes > 0 && turn.message > 0 {
                    let previousText = messages[turn.message - 1].text
                    let previous = previousText.utf8
                    let tail = previous.index(previous.endIndex, offsetBy: -min(contextBytes, previous.count))
                    text = String(Substring(previousText.unicodeScalars[tail...])) + "\n" + text
                }
                try budget.add(line: location, textBytes: text.utf8.count)
                let input = PredictionInput(promptTokens: turn.promptTokens, promptText: text, modelID: modelID,
                                            maxTokens: LengthExample.unboundedMaxTokens)
                examples.append(LengthExample(input: input, target: Double(turn.replyTokens),
                                              samples: [Int32(clamping: turn.replyTokens)], group: group, heldOut: heldOut))
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
}
