import Glibc

/// The trace file formats `kvcache replay` reads.
///
/// Room for more: a new format (the
/// hybrid-trace schema of Marconi: `session_id, turn_id, input_tokens, ...`) is one case here, one
/// reader in `Traces/` that yields `TraceRequest`s through `JSONLines` or `CSV`, and one line in
/// `TraceLoader.load`.
public enum TraceFormat: String, Sendable, CaseIterable {
    /// Mooncake JSONL: `timestamp` (ms), `input_length`, `output_length`, `hash_ids`.
    case mooncake
    /// Azure LLM inference trace CSV: `TIMESTAMP,ContextTokens,GeneratedTokens`.
    case azure
    /// Vidur / Splitwise CSV: `arrived_at,num_prefill_tokens,num_decode_tokens` (arrival optional).
    case vidur
    /// BurstGPT CSV: `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`.
    case burstgpt
    /// ShareGPT conversations, a JSON array or JSONL of `{id, conversations: [{from|role, value|content}]}`.
    case sharegpt
    /// CASTILLO lengths JSONL: `prompt_id, model, input_size, output_sizes[...]`.
    case castillo
    /// Marconi's hybrid-model trace JSONL: `session_id, turn_id, ts, num_input_tokens, ..., input_tokens, output_tokens`.
    case marconi
    /// RAGPulse JSONL: `hash_ids` as an object of segment ids per kind, lengths in side files (`RAGPulse`).
    case ragpulse

    /// Guesses the format from the first non-empty line (CSV header or first JSON record).
    ///
    /// - Returns: nil when nothing matches. O(length of the line).
    public static func detect(firstLine line: Substring) -> TraceFormat? {
        detect(firstLine: ArraySlice(line.utf8))
    }

    /// `detect(firstLine:)` on the line's UTF-8 bytes: the JSON keys are found by `memchr` and `memcmp`, so a first
    /// line of tens of MiB is judged in milliseconds. O(length of the line).
    public static func detect(firstLine bytes: ArraySlice<UInt8>) -> TraceFormat? {
        var t = bytes
        // Leading spaces, tabs and byte-order marks (U+FEFF, EF BB BF) are skipped.
        while true {
            if let b = t.first, b == 0x20 || b == 0x09 { t = t.dropFirst() } else if t.starts(with: [0xEF, 0xBB, 0xBF]) { t = t.dropFirst(3) } else { break }
        }
        if t.first == UInt8(ascii: "{") || t.first == UInt8(ascii: "[") {
            func has(_ key: StaticString) -> Bool { contains(t, key) }
            if has("\"conversations\"") || has("\"conversation\"") || t.first == UInt8(ascii: "[") { return .sharegpt }
            if has("\"output_sizes\"") || has("\"prompt_id\"") { return .castillo }
            if has("\"input_tokens\"") && has("\"turn_id\"") { return .marconi }
            if has("\"passages_ids\"") || has("\"sys_prompt\"") { return .ragpulse }
            if has("\"hash_ids\"") || has("\"input_length\"") { return .mooncake }
            return nil
        }
        let header = String(decoding: t, as: UTF8.self).lowercased()
        if header.contains("contexttokens") && header.contains("generatedtokens") { return .azure }
        if header.contains("num_prefill_tokens") && header.contains("num_decode_tokens") { return .vidur }
        if header.contains("request tokens") && header.contains("response tokens") { return .burstgpt }
        return nil
    }

    /// Whether `bytes` hold `key`: `memchr` finds each candidate's first byte, `memcmp` the rest.
    /// O(bytes).
    private static func contains(_ bytes: ArraySlice<UInt8>, _ key: StaticString) -> Bool {
        let n = key.utf8CodeUnitCount
        let first = Int32(key.utf8Start.pointee)
        return bytes.withUnsafeBytes { (line: UnsafeRawBufferPointer) -> Bool in
            guard let base = line.baseAddress, n <= line.count else { return false }
            var at = 0
            while at + n <= line.count {
                guard let hit = memchr(base + at, first, line.count - n + 1 - at) else { return false }
                if memcmp(hit, key.utf8Start, n) == 0 { return true }
                at = base.distance(to: UnsafeRawPointer(hit)) + 1
            }
            return false
        }
    }
}
