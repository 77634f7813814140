import COpenBLAS

/// The thread count OpenBLAS uses inside each matrix call (it defaults to the number of cores).
public enum BLASThreads {
    /// Current thread count.
    public static var count: Int { Int(openblas_get_num_threads()) }

    /// Sets the thread count for all later calls; values below 1 are raised to 1.
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
}
