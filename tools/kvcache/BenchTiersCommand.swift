import ArgumentParser
import Foundation
import KVCache
import KVPlan
import KVReferenceEngine
import KVSimulation
import KVTiers

/// `kvcache bench tiers`: measures the tier data path on KV-like data (normal values with per-channel
/// scales, Llama-3-8B block shape, 2 MiB per fp16 block) for fp16 and bf16: memcpy as the reference,
/// L1 -> L2 and L2 -> L1 through the transfer engine, disk tier writes and cold reads, and the codec.
/// With `--kv-dir`, the codec is also measured on real KV written by `kvcache kv-dump` (`real_kv`).
struct BenchTiersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiers", abstract: "Measure host/disk tier bandwidth and the KV codec on fp16 and bf16 data.")
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Option(help: "Directory for the disk tier (default: a temporary directory under /tmp, removed after).") var diskDir: String?
    @Option(help: "A directory written by `kvcache kv-dump`: also measure the codec on that real KV, as fp16.") var kvDir: String?
    @Option(help: "Blocks per measurement (2 MiB each for fp16).") var blocks: Int = 48
    @Option(help: "Repetitions per measurement; the best is reported.") var repeats: Int = 3

    func validate() throws {
        guard (4 ... 4096).contains(blocks) else { throw ValidationError("--blocks must be in 4...4096") }
        guard (1 ... 20).contains(repeats) else { throw ValidationError("--repeats must be in 1...20") }
    }

    func run() throws {
        // Real KV first: a bad --kv-dir fails before the minute of synthetic measurements.
        var realKV: [String: Any]?
        if let kvDir {
            note("bench tiers: real KV from \(kvDir) ...")
            realKV = try measureRealKV(directory: kvDir)
        }
        var perDType: [String: [String: Any]] = [:]
        for dtype in [KVDType.fp16, .bf16] {
            note("bench tiers: \(dtype) ...")
            perDType[dtype.rawValue] = try measure(dtype: dtype)
        }
        var report: [String: Any] = perDType["fp16"]!
        report["fp16"] = perDType["fp16"]
        report["bf16"] = perDType["bf16"]
        report["blocks"] = blocks
        // Figures on a shared machine move with its load: record it beside them.
        if let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
           let first = text.split(separator: " ").first, let l = Double(first) { report["loadavg_1m"] = l }
        report["cpus"] = ProcessInfo.processInfo.activeProcessorCount
        if let realKV { report["real_kv"] = realKV }
        for d in ["fp16", "bf16"] {
            let r = perDType[d]!
            func f(_ k: String) -> Double { r[k] as? Double ?? 0 }
            note(String(format: "%@: memcpy %.1f GB/s, L1->L2 %.1f (%.2fx), L2->L1 %.1f (%.2fx), disk write %.2f, disk read %.2f GB/s, "
                        + "zstd x%.3f plain / x%.3f codec (%.3fx), codec %.2f / %.2f GB/s (per CPU second %.2f / %.2f), disk tier used: %@",
                        d, f("memcpy_gbps"), f("l1_to_l2_gbps"), f("l1_to_l2_gbps") / f("memcpy_gbps"), f("l2_to_l1_gbps"),
                        f("l2_to_l1_gbps") / f("memcpy_gbps"), f("disk_write_gbps"), f("disk_read_gbps"), f("zstd_ratio_plain"),
                        f("zstd_ratio_codec"), f("zstd_ratio_codec") / f("zstd_ratio_plain"), f("codec_compress_gbps"),
                        f("codec_decompress_gbps"), f("codec_compress_gbps_per_cpu_second"), f("codec_decompress_gbps_per_cpu_second"), (r["disk_tier_used_llama3_8b_h100"] as? Bool ?? false) ? "yes" : "no"))
        }
        if let r = report["real_kv"] as? [String: Any] {
            func f(_ k: String) -> Double { r[k] as? Double ?? 0 }
            let synthetic = f("zstd_ratio_codec") / f("zstd_ratio_plain")
            note(String(format: "real KV (%@, %d blocks of %d B as fp16): zstd x%.3f plain / x%.3f codec (%.3fx), codec %.2f / %.2f GB/s "
                        + "(per CPU second %.2f / %.2f)", r["model"] as? String ?? "?", r["blocks"] as? Int ?? 0, r["block_bytes"] as? Int ?? 0,
                        f("zstd_ratio_plain"), f("zstd_ratio_codec"), synthetic, f("codec_compress_gbps"), f("codec_decompress_gbps"),
                        f("codec_compress_gbps_per_cpu_second"), f("codec_decompress_gbps_per_cpu_second")))
        }
        if json { try JSONReport.print(report) }
    }

    private static func gbps(_ bytes: Int, _ nanos: UInt64) -> Double { Double(bytes) / Double(max(nanos, 1)) }

    /// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in nanoseconds: on a shared machine it
    /// says what one core does, whatever else runs.
    private static func threadCPUNanos() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Best (shortest) thread CPU time of `repeats` runs of `body`, in nanoseconds.
    private func bestCPU(_ body: () throws -> Void) rethrows -> UInt64 {
        var bestNanos = UInt64.max
        for _ in 0 ..< repeats {
            let t0 = Self.threadCPUNanos()
            try body()
            bestNanos = min(bestNanos, Self.threadCPUNanos() - t0)
        }
        return bestNanos
    }

    /// Best (shortest) time of `repeats` runs of `body`, in nanoseconds.
    private func best(_ body: () throws -> Void) rethrows -> UInt64 {
        var bestNanos = UInt64.max
        for _ in 0 ..< repeats {
            let t0 = KVClock.monotonicNanos()
            try body()
            bestNanos = min(bestNanos, KVClock.monotonicNanos() - t0)
        }
        return bestNanos
    }

    private func measure(dtype: KVDType) throws -> [String: Any] {
        let layout = KVGeometry.llama3_8B(dtype: dtype)
        let B = layout.bytesPerBlock
        let total = B * blocks
        // L1 stand-in with 2 x blocks: the first half holds data, loads go into the second half.
        let device = try HostDeviceMemory(layout: layout, capacityBlocks: 2 * blocks)
        for b in 0 ..< blocks { _ = device.withBlock(BlockID(b)) { SyntheticKV.fill($0, layout: layout, seed: UInt64(b)) } }

        // memcpy of the same sizes: block by block, one thread.
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 4096)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 4096)
        defer { src.deallocate(); dst.deallocate() }
        for b in 0 ..< blocks { _ = device.withBlock(BlockID(b)) { (src.baseAddress! + b * B).copyMemory(from: $0.baseAddress!, byteCount: B) } }
        memset(dst.baseAddress!, 0, total)
        let memcpyNanos = best {
            for b in 0 ..< blocks { memcpy(dst.baseAddress! + b * B, src.baseAddress! + b * B, B) }
        }

        // L1 -> L2 (eviction copies) and L2 -> L1 (loads) through the tier manager.
        var cfg = TierConfig(layout: layout, hostBlocks: blocks)
        cfg.layerGroups = 4
        let keys = (0 ..< blocks).map { BlockKey(lo: UInt64($0) &+ 1, hi: 0xBE9C_4000 | UInt64(dtype == .fp16 ? 1 : 2)) }
        var l1ToL2 = UInt64.max, l2ToL1 = UInt64.max
        var placement: HostPlacementReport?
        for _ in 0 ..< repeats {
            let tiers = try KVTierManager(config: cfg, device: device)
            placement = tiers.host?.placement
            let t0 = KVClock.monotonicNanos()
            for (b, k) in keys.enumerated() {
                tiers.noteStored(block: BlockID(b), key: k)
                tiers.willEvict(block: BlockID(b), key: k)
            }
            tiers.waitForEvictionCopies()
            l1ToL2 = min(l1ToL2, KVClock.monotonicNanos() - t0)
            let plan = tiers.lookup(keys: keys, deviceBlocks: 0)
            guard plan.hostBlocks == blocks else { throw CLIError("host tier lost blocks") }
            let t1 = KVClock.monotonicNanos()
            let h = try tiers.load(plan, keys: keys, into: (0 ..< blocks).map { BlockID(blocks + $0) })
            h.wait()
            l2ToL1 = min(l2ToL1, KVClock.monotonicNanos() - t1)
            guard h.loadedPrefixBlocks == blocks else { throw CLIError("load failed") }
        }
        // The loaded copies must equal the originals.
        for b in 0 ..< blocks {
            let same = device.withBlock(BlockID(blocks + b)) { l in device.withBlock(BlockID(b)) { o in memcmp(l.baseAddress!, o.baseAddress!, B) == 0 } ?? false } ?? false
            guard same else { throw CLIError("block \(b) differs after the round trip") }
        }

        // Codec: plain zstd level 1 vs byte planes, one thread, reused contexts.
        let codecFigures = try measureCodec(UnsafeRawBufferPointer(src), blockBytes: B, layout: layout)

        // Disk tier: write every block (compressed, fsync at the end), drop the files from the page
        // cache, then read them all back (cold, decompressed, checksums verified).
        let dir = diskDir ?? NSTemporaryDirectory() + "kvcache-bench-\(getpid())-\(dtype)"
        defer { if diskDir == nil { try? FileManager.default.removeItem(atPath: dir) } }
        var writeNanos = UInt64.max, readNanos = UInt64.max
        for r in 0 ..< repeats {
            let sub = dir + "/run\(r)"
            try? FileManager.default.removeItem(atPath: sub)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let store = try DiskBlockStore(DiskStoreConfig(directory: sub, capacityBytes: 2 * total + (64 << 20), layout: layout))
            let t0 = KVClock.monotonicNanos()
            for b in 0 ..< blocks {
                guard store.put(keys[b], bytes: UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B])) == .stored else {
                    throw CLIError("disk write failed: \(store.statistics)")
                }
            }
            store.close()   // fsync
            writeNanos = min(writeNanos, KVClock.monotonicNanos() - t0)
            Self.dropFromPageCache(directory: sub)
            memset(dst.baseAddress!, 0, total)   // the round trip check below must see the read's bytes
            let t1 = KVClock.monotonicNanos()
            for b in 0 ..< blocks {
                guard store.read(keys[b], into: UnsafeMutableRawBufferPointer(rebasing: dst[b * B ..< (b + 1) * B])) == .hit else {
                    throw CLIError("disk read failed")
                }
            }
            readNanos = min(readNanos, KVClock.monotonicNanos() - t1)
            guard memcmp(src.baseAddress!, dst.baseAddress!, total) == 0 else { throw CLIError("disk round trip differs") }
            if diskDir == nil || r < repeats - 1 { try? FileManager.default.removeItem(atPath: sub) }
        }

        let diskBW = Self.gbps(total, readNanos) * 1e9
        let hostBW = Self.gbps(total, l2ToL1) * 1e9
        let recompute = RooflineCostModel(model: ModelSpec.preset(named: "llama3-8b")!,
                                          hardware: HardwareSpec.preset(named: "h100")!).prefillSecondsPerToken()
        let adm = LoadOrRecompute(recompute: try RecomputeCost(secondsPerToken: recompute, secondsPerContextPair: 0),
                                  host: .init(latencySeconds: 5e-6, bytesPerSecond: hostBW),
                                  disk: .init(latencySeconds: 100e-6, bytesPerSecond: diskBW))
        var r: [String: Any] = [
            "dtype": dtype.rawValue,
            "block_bytes": B,
            "memcpy_gbps": Self.gbps(total, memcpyNanos),
            "l1_to_l2_gbps": Self.gbps(total, l1ToL2),
            "l2_to_l1_gbps": Self.gbps(total, l2ToL1),
            "disk_write_gbps": Self.gbps(total, writeNanos),
            "disk_read_gbps": Self.gbps(total, readNanos),
            "recompute_ms_per_block_llama3_8b_h100": recompute * Double(layout.blockTokens) * 1e3,
            "host_load_ms_per_block": adm.loadSeconds(tier: .host, bytes: B) * 1e3,
            "disk_load_ms_per_block": adm.loadSeconds(tier: .disk, bytes: B) * 1e3,
            "disk_tier_used_llama3_8b_h100": adm.worthLoading(tier: .disk, layout: layout),
            "host_tier_used_llama3_8b_h100": adm.worthLoading(tier: .host, layout: layout),
        ]
        r.merge(codecFigures) { a, _ in a }
        if let p = placement {
            r["host_numa_node"] = p.verifiedNode ?? -1
            r["host_numa_verified"] = p.bindingVerified
            r["host_mlocked"] = p.locked
            r["host_placement_note"] = p.fallbackReason ?? ""
        }
        return r
    }

    /// The codec on `src` (whole blocks of `blockBytes`): plain zstd level 1 against the byte-plane codec,
    /// one thread, reused contexts; every block decoded back and compared. Keys: `zstd_ratio_plain`,
    /// `zstd_ratio_codec`, `codec_(de)compress_gbps` (best wall time) and `..._per_cpu_second` (best
    /// thread CPU time).
    private func measureCodec(_ src: UnsafeRawBufferPointer, blockBytes B: Int, layout: KVGeometry) throws -> [String: Any] {
        let blocks = src.count / B
        let total = blocks * B
        let plain = try KVByteCodec(elementSize: layout.dtype.size, bytePlanes: false, maxInputBytes: B)
        let codec = try KVByteCodec(elementSize: layout.dtype.size, bytePlanes: true, maxInputBytes: B)
        let encCap = KVByteCodec.maxEncodedSize(rawBytes: B)
        let enc = UnsafeMutableRawBufferPointer.allocate(byteCount: encCap * blocks, alignment: 64)
        let dst = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 4096)
        defer { enc.deallocate(); dst.deallocate() }
        memset(dst.baseAddress!, 0, total)
        var plainBytes = 0, codecBytes = 0
        var modes = [KVCodecMode](repeating: .raw, count: blocks), sizes = [Int](repeating: 0, count: blocks)
        for b in 0 ..< blocks {
            plainBytes += try plain.encode(UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B]),
                                           into: UnsafeMutableRawBufferPointer(rebasing: enc[0 ..< encCap])).count
        }
        func encodeAll() throws {
            codecBytes = 0
            for b in 0 ..< blocks {
                let (m, n) = try codec.encode(UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B]),
                                              into: UnsafeMutableRawBufferPointer(rebasing: enc[b * encCap ..< (b + 1) * encCap]))
                modes[b] = m; sizes[b] = n; codecBytes += n
            }
        }
        func decodeAll() throws {
            for b in 0 ..< blocks {
                let stored = modes[b] == .raw ? UnsafeRawBufferPointer(rebasing: src[b * B ..< (b + 1) * B])
                                              : UnsafeRawBufferPointer(rebasing: enc[b * encCap ..< b * encCap + sizes[b]])
                try codec.decode(stored, mode: modes[b], into: UnsafeMutableRawBufferPointer(rebasing: dst[b * B ..< (b + 1) * B]))
            }
        }
        let compressNanos = try best(encodeAll)
        let decompressNanos = try best(decodeAll)
        guard memcmp(src.baseAddress!, dst.baseAddress!, total) == 0 else { throw CLIError("codec round trip differs") }
        let compressCPU = try bestCPU(encodeAll)
        let decompressCPU = try bestCPU(decodeAll)
        return [
            "zstd_ratio_plain": Double(total) / Double(plainBytes),
            "zstd_ratio_codec": Double(total) / Double(codecBytes),
            "codec_compress_gbps": Self.gbps(total, compressNanos),
            "codec_decompress_gbps": Self.gbps(total, decompressNanos),
            "codec_compress_gbps_per_cpu_second": Self.gbps(total, compressCPU),
            "codec_decompress_gbps_per_cpu_second": Self.gbps(total, decompressCPU),
            "codec_raw_blocks": modes.count { $0 == .raw },
        ]
    }

    /// The codec on the real KV blocks of a `kvcache kv-dump` directory, as fp16 (an f32 dump is rounded
    /// to fp16 the way `kv-dump --dtype f16` does it). Only full blocks count: a partial last block's
    /// zeroed slots would flatter the ratio (unless no block is full).
    private func measureRealKV(directory: String) throws -> [String: Any] {
        let url = URL(fileURLWithPath: directory)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("manifest.json").path) else {
            throw CLIError("\(directory) has no manifest.json (write one with kvcache kv-dump)")
        }
        let m: KVDump.Manifest
        do { m = try KVDump.readManifest(in: url) } catch { throw CLIError("cannot read \(directory)/manifest.json: \(error)") }
        guard m.format == "kvcache-kv-dump-v1" else { throw CLIError("unknown KV dump format \(m.format)") }
        let layout: KVGeometry
        do { layout = try KVGeometry(layers: m.layers, kvHeads: m.kvHeads, headDim: m.headDim, dtype: .fp16, blockTokens: m.blockTokens) }
        catch { throw CLIError("bad KV dump shape: \(error)") }
        guard m.bytesPerBlock == layout.bytesPerBlock / 2 * m.dtype.bytes else {
            throw CLIError("manifest says \(m.bytesPerBlock) bytes per block, its shape gives \(layout.bytesPerBlock / 2 * m.dtype.bytes)")
        }
        let full = m.blocks.filter { $0.tokens == m.blockTokens }
        let chosen = full.isEmpty ? m.blocks : full
        guard !chosen.isEmpty else { throw CLIError("the KV dump has no blocks") }
        let B = layout.bytesPerBlock
        let src = UnsafeMutableRawBufferPointer.allocate(byteCount: B * chosen.count, alignment: 4096)
        defer { src.deallocate() }
        for (i, block) in chosen.enumerated() {
            let path = url.appendingPathComponent(block.file).path
            guard let data = FileManager.default.contents(atPath: path), data.count == m.bytesPerBlock else {
                throw CLIError("cannot read \(path) as a block of \(m.bytesPerBlock) bytes")
            }
            let out = UnsafeMutableRawBufferPointer(rebasing: src[i * B ..< (i + 1) * B])
            data.withUnsafeBytes { raw in
                switch m.dtype {
                case .f16: out.copyMemory(from: raw)
                case .f32:
                    for j in 0 ..< B / 2 {
                        let v = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * j, as: UInt32.self)))
                        out.storeBytes(of: Float16(v).bitPattern.littleEndian, toByteOffset: 2 * j, as: UInt16.self)
                    }
                }
            }
        }
        var r = try measureCodec(UnsafeRawBufferPointer(src), blockBytes: B, layout: layout)
        if m.dtype == .f32 {
            // As the reference engine's disk tier stores its fp32 pool: each fp32 value as two 16-bit words.
            let words = try KVGeometry(layers: m.layers, kvHeads: m.kvHeads, headDim: 2 * m.headDim, dtype: .fp16,
                                     blockTokens: m.blockTokens)
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: words.bytesPerBlock * chosen.count, alignment: 4096)
            defer { raw.deallocate() }
            for (i, block) in chosen.enumerated() {
                let data = FileManager.default.contents(atPath: url.appendingPathComponent(block.file).path) ?? Data()
                guard data.count == words.bytesPerBlock else { throw CLIError("\(block.file) changed while reading") }
                data.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: raw[i * words.bytesPerBlock ..< (i + 1) * words.bytesPerBlock]).copyMemory(from: $0) }
            }
            r["engine_fp32_words"] = try measureCodec(UnsafeRawBufferPointer(raw), blockBytes: words.bytesPerBlock, layout: words)
        }
        r["dtype"] = "fp16"
        r["source_dtype"] = m.dtype.rawValue
        r["model"] = m.model
        r["blocks"] = chosen.count
        r["block_bytes"] = B
        r["prompt_tokens"] = m.promptTokens
        return r
    }

    /// Asks the kernel to drop the directory's files from the page cache (`posix_fadvise(DONTNEED)`
    /// after they were fsynced), so the read measurement hits the disk.
    static func dropFromPageCache(directory: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for n in names where n.hasSuffix(".kvlog") {
            let fd = open(directory + "/" + n, O_RDONLY)
            guard fd >= 0 else { continue }
            _ = fdatasync(fd)
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
            close(fd)
        }
    }
}
