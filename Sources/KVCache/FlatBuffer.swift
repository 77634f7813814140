/// A growable run of plain values that empties in O(1) and takes a run of them with one copy: the
/// first `count` elements of an array that keeps its elements past `count` (stale, never read) when
/// emptied, so refilling writes over them in place instead of appending, and a run copied in is one
/// `memcpy` (no per-element loop, no zero fill before a run written in place). Value semantics come
/// from the array (copy on write). Elements are plain values (`BitwiseCopyable`): a stale one holds
/// nothing alive. Memory is the largest count it has held.
struct FlatBuffer<Element: BitwiseCopyable> {
    /// Elements `0 ..< count` are the buffer's; those after are stale.
    private var storage: [Element] = []
    /// Elements held.
    private(set) var count = 0

    init() {}

    /// Room for `capacity` elements before the first growth.
    init(reservingCapacity capacity: Int) { storage.reserveCapacity(capacity) }

    var isEmpty: Bool { count == 0 }

    /// The last element, or nil when empty. O(1).
    var last: Element? { count > 0 ? storage[count - 1] : nil }

    /// Appends `element`. O(1) amortized; allocates only while the array grows past its largest count.
    @inline(__always)
    mutating func append(_ element: Element) {
        if count < storage.count { storage[count] = element } else { storage.append(element) }
        count += 1
    }

    /// Appends the elements of `run`, which must not be this buffer's memory, with one copy of the
    /// part that fits the stale room. O(run) amortized.
    mutating func append(contentsOf run: UnsafeBufferPointer<Element>) {
        guard let source = run.baseAddress, !run.isEmpty else { return }
        let fits = min(run.count, storage.count - count)
        if fits > 0 {
            let at = count
            storage.withUnsafeMutableBufferPointer { d in
                UnsafeMutableRawPointer(d.baseAddress! + at)
                    .copyMemory(from: source, byteCount: fits * MemoryLayout<Element>.stride)
            }
        }
        if fits < run.count { storage.append(contentsOf: UnsafeBufferPointer(rebasing: run[fits...])) }
        count += run.count
    }

    /// Appends up to `n` elements written in place by `fill` into a buffer of `n` (stale or `filler`
    /// values until written); `fill` returns how many it wrote, those first in the buffer, and only
    /// they are kept. Grows by doubling (filled with `filler`) when the room is short. O(n) amortized.
    @inline(__always)
    mutating func append(count n: Int, filler: Element, _ fill: (UnsafeMutableBufferPointer<Element>) -> Int) {
        let short = count + n - storage.count
        if short > 0 { storage.append(contentsOf: repeatElement(filler, count: max(short, storage.count))) }
        let at = count
        let written = storage.withUnsafeMutableBufferPointer { fill(UnsafeMutableBufferPointer(rebasing: $0[at ..< at + n])) }
        precondition(written >= 0 && written <= n, "FlatBuffer.append(count:): fill wrote \(written) of \(n)")
        count += written
    }

    /// Forgets every element, keeping the memory. O(1).
    mutating func removeAll() { count = 0 }

    /// Forgets the first `n` elements, moving the rest to the front. O(count - n).
    mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count, "FlatBuffer.removeFirst beyond the count")
        let rest = count - n
        if rest > 0 && n > 0 {
            storage.withUnsafeMutableBufferPointer { d in
                UnsafeMutableRawPointer(d.baseAddress!)
                    .copyMemory(from: d.baseAddress! + n, byteCount: rest * MemoryLayout<Element>.stride)
            }
        }
        count = rest
    }

    /// Calls `body` with the held elements (`0 ..< count`), valid only inside the call.
    func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer { try body(UnsafeBufferPointer(rebasing: $0[..<count])) }
    }
}

extension FlatBuffer: Sendable where Element: Sendable {}
