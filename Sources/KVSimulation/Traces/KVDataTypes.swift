/// The replay drivers take KVData's trace types (`TraceRequest`, `LoadedTrace`, `TraceFormat`); a
/// client of the simulator sees them through this module, as if they were its own.
@_exported import KVData
