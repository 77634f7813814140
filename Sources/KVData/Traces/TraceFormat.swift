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
        let t = line.drop { $0 == " " || $0 == "\t" || $0 == "\u{FEFF}" }
        if t.hasPrefix("{") || t.hasPrefix("[") {
            if t.contains("\"conversations\"") || t.contains("\"conversation\"") || t.hasPrefix("[") { return .sharegpt }
            if t.contains("\"output_sizes\"") || t.contains("\"prompt_id\"") { return .castillo }
            if t.contains("\"input_tokens\"") && t.contains("\"turn_id\"") { return .marconi }
            if t.contains("\"passages_ids\"") || t.contains("\"sys_prompt\"") { return .ragpulse }
            if t.contains("\"hash_ids\"") || t.contains("\"input_length\"") { return .mooncake }
            return nil
        }
        let header = t.lowercased()
        if header.contains("contexttokens") && header.contains("generatedtokens") { return .azure }
        if header.contains("num_prefill_tokens") && header.contains("num_decode_tokens") { return .vidur }
        if header.contains("request tokens") && header.contains("response tokens") { return .burstgpt }
        return nil
    }
}
