import Foundation

/// One inline SVG chart: lines (x, y points per series) or stacked bars (one bar per label, one segment
/// per layer), with axes, ticks, axis titles and a legend. Self-contained markup: no script, no external
/// font or style sheet. Rendering is O(points); non-finite points are left out.
struct SVGChart {
    /// A named line of (x, y) points, drawn in order.
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    /// One bar: a label and one value per layer (stacked bottom up).
    struct Bar {
        var label: String
        var values: [Double]
    }

    enum Kind {
        case lines([Series])
        case stackedBars(layers: [String], bars: [Bar])
    }

    var id: String
    var title: String
    var xTitle: String
    var yTitle: String
    var kind: Kind
    /// The y axis ends at most at 1 when set (rates, CDFs); otherwise at a round number over the largest value.
    var unitY = false
    /// Lines drawn as steps (a CDF) rather than straight segments.
    var steps = false

    static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                          "#bcbd22", "#17becf"]
    private static let width = 760.0, height = 400.0
    private static let left = 70.0, right = 210.0, top = 36.0, bottom = 92.0

    /// The chart's `<svg>` element.
    func svg() -> String {
        let w = Self.width, h = Self.height
        let plotW = w - Self.left - Self.right, plotH = h - Self.top - Self.bottom
        var out = "<svg id=\"\(HTMLText.escape(id))\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" role=\"img\" aria-label=\"\(HTMLText.escape(title))\">\n"
        out += "<title>\(HTMLText.escape(title))</title>\n"
        out += "<text x=\"\(Self.left)\" y=\"20\" class=\"chart-title\">\(HTMLText.escape(title))</text>\n"
        let (xs, ys, xLabels) = domain()
        let yMax = unitY ? min(1, Self.niceCeiling(ys.max() ?? 1)) : Self.niceCeiling(ys.max() ?? 1)
        let xMin = xs.min() ?? 0, xMax = max(xs.max() ?? 1, xMin + 1e-12)
        func px(_ x: Double) -> Double { Self.left + (x - xMin) / (xMax - xMin) * plotW }
        func py(_ y: Double) -> Double { Self.top + plotH - min(max(y / yMax, 0), 1) * plotH }
        // Axes and grid.
        out += "<g class=\"axes\">\n"
        for i in 0...4 {
            let y = yMax * Double(i) / 4
            out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(py(y)))\" x2=\"\(f(Self.left + plotW))\" y2=\"\(f(py(y)))\" class=\"grid\"/>"
            out += "<text x=\"\(f(Self.left - 6))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\">\(Self.tick(y))</text>\n"
        }
        out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(Self.top + plotH))\" x2=\"\(f(Self.left + plotW))\" y2=\"\(f(Self.top + plotH))\" class=\"axis\"/>\n"
        out += "<line x1=\"\(f(Self.left))\" y1=\"\(f(Self.top))\" x2=\"\(f(Self.left))\" y2=\"\(f(Self.top + plotH))\" class=\"axis\"/>\n"
        out += "<text x=\"\(f(Self.left + plotW / 2))\" y=\"\(f(Self.top + plotH + (isBars ? 80 : 38)))\" text-anchor=\"middle\" class=\"axis-title\">\(HTMLText.escape(xTitle))</text>\n"
        out += "<text transform=\"translate(16 \(f(Self.top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\" class=\"axis-title\">\(HTMLText.escape(yTitle))</text>\n"
        out += "</g>\n"
        var legend: [String] = []
        switch kind {
        case let .lines(series):
            for i in 0...4 {
                let x = xMin + (xMax - xMin) * Double(i) / 4
                out += "<text x=\"\(f(px(x)))\" y=\"\(f(Self.top + plotH + 18))\" text-anchor=\"middle\">\(Self.tick(x))</text>\n"
            }
            for (k, s) in series.enumerated() {
                let color = Self.palette[k % Self.palette.count]
                let points = s.points.filter { $0.x.isFinite && $0.y.isFinite }
                guard !points.isEmpty else { continue }
                var path = ""
                for (i, p) in points.enumerated() {
                    if i == 0 { path += "M\(f(px(p.x))) \(f(py(p.y)))" }
                    else if steps { path += " H\(f(px(p.x))) V\(f(py(p.y)))" }
                    else { path += " L\(f(px(p.x))) \(f(py(p.y)))" }
                }
                out += "<path class=\"series\" data-series=\"\(HTMLText.escape(s.name))\" d=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"/>\n"
                if !steps && points.count <= 40 {
                    for p in points {
                        out += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3\" fill=\"\(color)\"><title>\(HTMLText.escape(s.name)): \(Self.tick(p.x)), \(Self.tick(p.y))</title></circle>\n"
                    }
                }
                legend.append(s.name)
            }
        case let .stackedBars(layers, bars):
            let slot = plotW / Double(max(bars.count, 1))
            let barW = min(48, slot * 0.7)
            for (b, bar) in bars.enumerated() {
                let x = Self.left + slot * (Double(b) + 0.5)
                var base = 0.0
                for (k, v) in bar.values.enumerated() where v.isFinite && v > 0 {
                    let y0 = py(base), y1 = py(base + v)
                    out += "<rect class=\"bar\" x=\"\(f(x - barW / 2))\" y=\"\(f(y1))\" width=\"\(f(barW))\" height=\"\(f(max(0, y0 - y1)))\" fill=\"\(Self.palette[k % Self.palette.count])\"><title>\(HTMLText.escape(bar.label)) \(HTMLText.escape(layers[k])): \(Self.tick(v))</title></rect>\n"
                    base += v
                }
                out += "<text x=\"\(f(x))\" y=\"\(f(Self.top + plotH + 14))\" text-anchor=\"end\" transform=\"rotate(-30 \(f(x)) \(f(Self.top + plotH + 14)))\" class=\"bar-label\">\(HTMLText.escape(bar.label))</text>\n"
            }
            legend = layers
            _ = xLabels
        }
        for (k, name) in legend.enumerated() {
            let y = Self.top + 8 + Double(k) * 18
            let x = Self.left + plotW + 16
            out += "<rect x=\"\(f(x))\" y=\"\(f(y - 9))\" width=\"12\" height=\"12\" fill=\"\(Self.palette[k % Self.palette.count])\"/>"
            out += "<text x=\"\(f(x + 18))\" y=\"\(f(y + 2))\" class=\"legend\">\(HTMLText.escape(name))</text>\n"
        }
        out += "</svg>\n"
        return out
    }

    /// The x and y values the axes must hold, and the bar labels.
    private func domain() -> (xs: [Double], ys: [Double], labels: [String]) {
        switch kind {
        case let .lines(series):
            let points = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
            return (points.map(\.x), points.map(\.y), [])
        case let .stackedBars(_, bars):
            return ([0, 1], bars.map { $0.values.filter(\.isFinite).reduce(0, +) }, bars.map(\.label))
        }
    }

    private var isBars: Bool { if case .stackedBars = kind { true } else { false } }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }

    /// 1, 2 or 5 times a power of ten, at least `v` (an axis end).
    static func niceCeiling(_ v: Double) -> Double {
        guard v.isFinite, v > 0 else { return 1 }
        let p = pow(10, floor(log10(v)))
        for m in [1.0, 2, 5, 10] where m * p >= v { return m * p }
        return 10 * p
    }

    /// A short tick label: 3 significant digits, thousands as k / M.
    static func tick(_ v: Double) -> String {
        let a = abs(v)
        if a >= 1e6 { return String(format: "%.3gM", v / 1e6) }
        if a >= 1e3 { return String(format: "%.3gk", v / 1e3) }
        return String(format: "%.3g", v)
    }
}
