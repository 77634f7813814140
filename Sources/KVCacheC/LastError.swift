#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The calling thread's most recent failed C ABI call, behind `kvcache_last_error`.
///
/// A failure stores only the function's static name and the `CAPIError` (no formatting, no
/// allocation: `allocate`'s insufficient-blocks refusal is on the scheduler's hot path); the
/// sentence is formatted into a thread-owned C buffer when the caller asks for it. One instance
/// per thread, reached through a pthread key whose destructor releases it at thread exit.
final class LastError {
    private var function: StaticString = ""
    private var error: CAPIError?
    /// malloc'd, NUL-terminated; valid until the next failure on this thread is formatted.
    private var text: UnsafeMutablePointer<CChar>
    private var textCapacity = 1
    private var formatted = true

    private init() {
        text = .allocate(capacity: 1)
        text[0] = 0
    }

    deinit { text.deallocate() }

    /// Records a failure of `function`. O(1); allocates nothing after the thread's first failure.
    static func record(_ error: CAPIError, in function: StaticString) {
        let slot = current
        slot.function = function
        slot.error = error
        slot.formatted = false
    }

    /// "function: sentence" for the last failure, or "" if none. O(message length).
    static func text() -> UnsafePointer<CChar> {
        let slot = current
        if !slot.formatted, let error = slot.error {
            slot.store("\(slot.function): \(error.message)")
            slot.formatted = true
        }
        return UnsafePointer(slot.text)
    }

    private func store(_ message: String) {
        let bytes = message.utf8.count + 1
        if bytes > textCapacity {
            text.deallocate()
            text = .allocate(capacity: bytes)
            textCapacity = bytes
        }
        var i = 0
        for b in message.utf8 { text[i] = CChar(bitPattern: b); i += 1 }
        text[i] = 0
    }

    /// This thread's slot, created on first use.
    private static var current: LastError {
        if let raw = pthread_getspecific(key) { return Unmanaged<LastError>.fromOpaque(raw).takeUnretainedValue() }
        let slot = LastError()
        pthread_setspecific(key, Unmanaged.passRetained(slot).toOpaque())
        return slot
    }

    /// The pthread key of the slots; its destructor releases a thread's slot when the thread ends.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let created = pthread_key_create(&key) { raw in
            let pointer: UnsafeMutableRawPointer? = raw
            if let pointer { Unmanaged<LastError>.fromOpaque(pointer).release() }
        }
        precondition(created == 0, "pthread_key_create failed: \(created)")  // only on key exhaustion
        return key
    }()
}
