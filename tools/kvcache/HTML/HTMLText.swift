/// Text made safe for HTML and SVG markup (element content and quoted attribute values).
enum HTMLText {
    /// `&`, `<`, `>`, `"` and `'` as entities; control characters other than tab and newline dropped.
    /// O(length).
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                if u.value < 0x20 && u != "\n" && u != "\t" { continue }
                out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
