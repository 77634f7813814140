import Testing
@testable import KVScheduler
