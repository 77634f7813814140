import CZstd

/// The one wrapper around libzstd: turns zstd's size_t error codes into `TierError.zstd`.
enum Zstd {
    /// Returns `code` when it is a size, throws when it is a zstd error code.
    @inline(__always)
    static func check(_ code: Int, _ call: String) throws(TierError) -> Int {
        if ZSTD_isError(code) != 0 {
            let name = String(cString: ZSTD_getErrorName(code))
            throw .zstd(call: call, code: Int(ZSTD_getErrorCode(code).rawValue), name: name)
        }
        return code
    }

    /// The largest compressed size of `rawBytes` input bytes (`ZSTD_compressBound`).
    static func bound(_ rawBytes: Int) -> Int { ZSTD_compressBound(rawBytes) }
}

/// A reusable compression context (`ZSTD_CCtx`) at a fixed level. Not thread-safe: one per worker.
final class ZstdCompressor {
    private let cctx: OpaquePointer

    init(level: Int32) throws(TierError) {
        guard let c = ZSTD_createCCtx() else { throw .zstd(call: "ZSTD_createCCtx", code: 64, name: "memory allocation") }
        cctx = c
        do {
            _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level), "ZSTD_CCtx_setParameter")
            _ = try Zstd.check(ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0), "ZSTD_CCtx_setParameter")
        } catch { ZSTD_freeCCtx(c)
        throw error }
    }

    deinit { ZSTD_freeCCtx(cctx) }

    /// Compresses `src` into `dst` as one frame; returns the compressed size. `dst` should hold
    /// `Zstd.bound(src.count)` bytes; a smaller one may throw `dstSize_tooSmall`.
    func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(TierError) -> Int {
        try Zstd.check(ZSTD_compress2(cctx, dst.baseAddress, dst.count, src.baseAddress, src.count), "ZSTD_compress2")
    }
}

/// A reusable decompression context (`ZSTD_DCtx`). Not thread-safe: one per worker.
final class ZstdDecompressor {
    private let dctx: OpaquePointer

    init() throws(TierError) {
        guard let d = ZSTD_createDCtx() else { throw .zstd(call: "ZSTD_createDCtx", code: 64, name: "memory allocation") }
        dctx = d
    }

    deinit { ZSTD_freeDCtx(dctx) }

    /// Decompresses one frame from `src` into `dst`; returns the decompressed size.
    func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(TierError) -> Int {
        try Zstd.check(ZSTD_decompressDCtx(dctx, dst.baseAddress, dst.count, src.baseAddress, src.count), "ZSTD_decompressDCtx")
    }
}
