extension DiskBlockStore {
    /// One codec and its output buffer (header + worst-case payload), reused across calls.
    final class CodecBuffers {
        let codec: KVByteCodec
        let buffer: UnsafeMutableRawBufferPointer
        init(_ c: DiskStoreConfig) throws(TierError) {
            codec = try KVByteCodec(elementSize: c.elementSize, maxInputBytes: c.maxBlockBytes)
            buffer = .allocate(byteCount: DiskRecordFormat.headerSize + KVByteCodec.maxEncodedSize(rawBytes: c.maxBlockBytes),
                               alignment: 64)
        }
        deinit { buffer.deallocate() }
    }
}
