/// A heap buffer owned by one transfer, freed when the last closure using it is gone. One allocation of
/// `bytes` (64-byte aligned) at init; nothing else.
final class StagingBuffer: @unchecked Sendable {
    // Sendable: written by one device copy per byte range, then read once; the steps are ordered by
    // the copies' completions.
    let buffer: UnsafeMutableRawBufferPointer
    init(bytes: Int) { buffer = .allocate(byteCount: bytes, alignment: 64) }
    deinit { buffer.deallocate() }
}
