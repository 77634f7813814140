import Testing
@testable import KVTiers
