import Foundation

/// A report as CSV (RFC 4180): one row per run, the header's scalar fields repeated on every row.
///
/// Columns: the call-wide scalar fields, then the runs' scalar fields (a nested object's fields as
/// `outer.inner`), each group sorted, the union over all runs (an absent field is an empty cell). Arrays
/// (CDF points, samples) are left out: they stay in the JSON report and `--requests-out`. Built from the
/// JSON text `ReportEncoder` wrote, so both outputs hold the same figures. O(runs x columns).
public enum ReportCSV {
    /// The CSV text of the report whose JSON text is `json`.
    /// - Throws: `DataError.cannotWrite` when `json` is not a report object with a `runs` array.
    public static func render(json: String) throws(DataError) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let runs = object["runs"] as? [[String: Any]] else {
            throw .cannotWrite(path: "CSV report", reason: "not a report object with a runs array")
        }
        var top: [String: String] = [:]
        for (key, value) in object where key != "runs" { flatten(value, key, into: &top) }
        let rows = runs.map { run -> [String: String] in
            var cells: [String: String] = [:]
            for (key, value) in run { flatten(value, key, into: &cells) }
            return cells
        }
        let runColumns = Set(rows.flatMap(\.keys)).sorted()
        let topColumns = top.keys.filter { !runColumns.contains($0) }.sorted()
        let columns = topColumns + runColumns
        var out = columns.map(quote).joined(separator: ",") + "\n"
        for row in rows {
            out += columns.map { quote(row[$0] ?? top[$0] ?? "") }.joined(separator: ",") + "\n"
        }
        return out
    }

    private static func flatten(_ value: Any, _ key: String, into cells: inout [String: String]) {
        switch value {
        case let object as [String: Any]:
            for (inner, v) in object { flatten(v, key + "." + inner, into: &cells) }
        case is [Any]:
            return
        case is NSNull:
            cells[key] = ""
        case let n as NSNumber:
            // JSONSerialization reads true/false as NSNumber too, of the boolean subclass.
            if type(of: value) == booleanType { cells[key] = n.boolValue ? "true" : "false" }
            else { cells[key] = n.stringValue }
        case let s as String:
            cells[key] = s
        default:
            cells[key] = "\(value)"
        }
    }

    private static let booleanType = type(of: NSNumber(value: true) as Any)

    private static func quote(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
