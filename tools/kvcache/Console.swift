import Foundation
import KVData

/// Human output and progress go to stderr, so stdout stays machine-readable.
func note(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}
