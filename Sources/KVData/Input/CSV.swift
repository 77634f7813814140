/// Comma-separated rows: fields split by commas, a field in double quotes may hold commas (the quotes
/// are dropped), and `YYYY-MM-DD HH:MM:SS[.fraction]` times. Lines come from `JSONLines`' walker.
public enum CSV {
    /// Splits one row into `fields` (cleared first, capacity kept). O(row length).
    public static func splitFields(_ line: Substring, into fields: inout [Substring]) {
        fields.removeAll(keepingCapacity: true)
        var start = line.startIndex
        var i = line.startIndex
        var quoted = false
        while i < line.endIndex {
            let c = line[i]
            if c == "\"" { quoted.toggle() } else if c == "," && !quoted {
                fields.append(unquote(line[start..<i]))
                start = line.index(after: i)
            }
            i = line.index(after: i)
        }
        fields.append(unquote(line[start..<line.endIndex]))
    }

    static func unquote(_ s: Substring) -> Substring {
        s.count >= 2 && s.first == "\"" && s.last == "\"" ? s.dropFirst().dropLast() : s
    }

    /// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`, optional `Z`), read as UTC;
    /// nil if malformed. O(length).
    public static func parseDateTime(_ s: String) -> Double? {
        let u = Array(s.utf8)
        guard u.count >= 19, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"),
              u[10] == UInt8(ascii: " ") || u[10] == UInt8(ascii: "T"),
              u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":") else { return nil }
        func num(_ a: Int, _ b: Int) -> Int? {
            var v = 0
            for k in a..<b { let d = Int(u[k]) - 48; guard d >= 0 && d <= 9 else { return nil }; v = v * 10 + d }
            return v
        }
        guard let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13),
              let mi = num(14, 16), let se = num(17, 19), (1...12).contains(mo), (1...31).contains(d),
              h < 24, mi < 60, se < 61 else { return nil }
        var fraction = 0.0
        if u.count > 19 {
            var end = u.count
            if u[end - 1] == UInt8(ascii: "Z") { end -= 1 }
            guard u[19] == UInt8(ascii: "."), end > 20 else { return end == 19 ? 0 : nil }
            var scale = 0.1
            for k in 20..<end {
                let digit = Int(u[k]) - 48
                guard digit >= 0 && digit <= 9 else { return nil }
                fraction += Double(digit) * scale
                scale /= 10
            }
        }
        // Days from civil (Howard Hinnant's algorithm).
        let yy = mo <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return Double(days * 86400 + h * 3600 + mi * 60 + se) + fraction
    }
}
