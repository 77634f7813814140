import Testing
@testable import KVSimulation
