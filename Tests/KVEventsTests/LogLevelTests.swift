import KVTiers
import Testing

/// KVCACHE_LOG_LEVEL's values: swift-log's level names, any case; anything else is no level.
@Suite struct LogLevelTests {
    @Test func levelNames() {
        #expect(TierWarnings.level(from: "debug") == .debug)
        #expect(TierWarnings.level(from: "ERROR") == .error)
        #expect(TierWarnings.level(from: "loud") == nil)
        #expect(TierWarnings.level(from: nil) == nil)
    }
}
