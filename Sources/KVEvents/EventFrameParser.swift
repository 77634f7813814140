extension EventRecording {
    /// The version (1 or 2) a recording's first 8 bytes name.
    /// - Throws: `EventRecordingError.malformed` when they are neither magic (or fewer than 8).
    public static func version(magic head: ArraySlice<UInt8>) throws(EventRecordingError) -> Int {
        if head.elementsEqual(magic) { return 1 }
        if head.elementsEqual(magicV2) { return 2 }
        throw .malformed("not a KV-event recording (it does not start with KVEVREC1 or KVEVREC2)")
    }

    /// Reads a recording's frames one at a time from its bytes handed over in pieces, so that a reader
    /// holds one frame (at most `maxFrameBytes`) and never the whole file.
    ///
    /// Made from the version its magic names (`version(magic:)`); `next` is given the unconsumed bytes
    /// after the magic (starting where the previous call stopped) and returns the first whole frame in
    /// them with how many bytes it took, or nil: more bytes are needed, or, with `atEnd`, the recording
    /// ended cleanly. Every check is made here: the length against `maxFrameBytes` before waiting for
    /// that many bytes, an empty frame, a kind byte, at most `maxFrames` frames; errors name the frame and
    /// its byte offset in the recording. O(1) per call; allocates nothing.
    public struct FrameParser: Sendable {
        /// 1 or 2.
        public let version: Int
        /// Frames returned so far.
        public private(set) var frames = 0
        /// Bytes of the recording consumed so far (the magic included).
        public private(set) var offset = EventRecording.magic.count

        public init(version: Int) {
            precondition(version == 1 || version == 2)
            self.version = version
        }

        /// The next frame at the front of `bytes` and the bytes it took, or nil (see the type's comment).
        /// - Throws: `EventRecordingError.malformed` naming the frame and its offset.
        public mutating func next(_ bytes: ArraySlice<UInt8>, atEnd: Bool) throws(EventRecordingError) -> (frame: Frame, consumed: Int)? {
            let left = bytes.count
            guard left > 0 else { return nil }
            let name = "frame \(frames + 1) (byte \(offset))"
            guard left >= 4 else {
                if atEnd { throw .malformed("\(name): truncated length") }
                return nil
            }
            let at = bytes.startIndex
            let n = bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
            guard n <= maxFrameBytes else { throw .malformed("\(name): \(n) bytes, over the \(maxFrameBytes) limit") }
            guard n >= 1 else { throw .malformed("\(name): empty") }
            guard left - 4 >= n else {
                if atEnd { throw .malformed("\(name): truncated (\(n) bytes announced, \(left - 4) left)") }
                return nil
            }
            guard frames < maxFrames else { throw .malformed("\(name): more than \(maxFrames) frames") }
            let body = at + 4
            let frame: Frame
            if version == 1 {
                frame = Frame(kind: .eventBatch, payload: bytes[body..<body + n])
            } else {
                guard let kind = Kind(rawValue: bytes[body]) else {
                    throw .malformed("\(name): unknown kind \(bytes[body]) (0: event batch, 1: request)")
                }
                frame = Frame(kind: kind, payload: bytes[body + 1..<body + n])
            }
            frames += 1
            offset += 4 + n
            return (frame, 4 + n)
        }
    }
}
