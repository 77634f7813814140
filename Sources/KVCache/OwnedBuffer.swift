/// A fixed number of elements in memory that one owner holds outright: a final class that allocates
/// them once, in `init`, and frees them in `deinit`. Elements are read and written through the
/// subscript's addressors, so an update in place pays no copy-on-write uniqueness check (an `Array`
/// element update pays one per access, through a runtime call).
///
/// A struct that keeps its per-block state in such buffers gets value semantics by calling
/// `makeUnique(_:)` once per mutating call, before it writes: a buffer that another value shares is
/// copied then (O(count)), one that only this value holds is left alone (O(1)). Indices are not
/// checked: the owner's ids index its dense arrays by its own invariants (`validate()`), as with the
/// unchecked buffer pointers this replaces. Not thread-safe: the owner serializes access.
final class OwnedBuffer<Element> {
    /// Number of elements.
    let count: Int
    /// The first element; the memory belongs to this object until `deinit`.
    let base: UnsafeMutablePointer<Element>

    /// `count` (>= 0) copies of `value`.
    init(repeating value: Element, count: Int) {
        self.count = count
        base = .allocate(capacity: Swift.max(count, 1))
        base.initialize(repeating: value, count: count)
    }

    private init(copying other: OwnedBuffer) {
        count = other.count
        base = .allocate(capacity: Swift.max(count, 1))
        base.initialize(from: other.base, count: count)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    /// Element `i` in place. Precondition (unchecked): `0 <= i < count`.
    @inline(__always)
    subscript(i: Int) -> Element {
        unsafeAddress { UnsafePointer(base + i) }
        unsafeMutableAddress { base + i }
    }

    /// The elements as a buffer (for whole-array passes: validation, reset).
    var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: base, count: count) }

    /// Makes `buffer` a buffer that no other value shares, copying it when another does. O(1) when
    /// unshared, else O(count).
    @inline(__always)
    static func makeUnique(_ buffer: inout OwnedBuffer) {
        if !isKnownUniquelyReferenced(&buffer) { buffer = OwnedBuffer(copying: buffer) }
    }
}
