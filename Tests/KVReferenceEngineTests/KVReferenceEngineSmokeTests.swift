import Testing
@testable import KVReferenceEngine
