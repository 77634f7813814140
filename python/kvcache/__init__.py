"""swift-kvcache's KV-cache manager for LLM serving, from Python: `Cache`, `TierManager` and `EventPublisher` over the C ABI
of the bundled libkvcache_c (kvcache.h). See docs/PYTHON.md."""
from ._abi import (ABI_VERSION, ChunkAction, EventKind, EvictionPolicy, LibraryNotFound, SegmentKind, Selection, Status, Tier,
                   library)
from ._version import __version__
from .cache import Cache
from .events import EventPublisher
from .chunks import ChunkLoad, ChunkPlan, ChunksStats, ChunkStore, ChunksTierStats, ReusedSpan
from .errors import (BlockPoolError, BlocksInUseError, BufferTooSmallError, ClosedCacheError, ConfigLibraryError, DuplicateSequenceError,
                     InsufficientBlocksError, InvalidArgumentError, InvariantViolationError, KVCacheError,
                     KVCacheMemoryError, TierSystemError, UnknownSequenceError)
from .tiers import TierCounters, TierLookup, TierManager, TierStats
from .types import BLOCK_COPY_DTYPE, KEY_DTYPE, Event, PrefixHit, Stats, TierAdmission, key_to_int


def version():
    """The loaded library's version, "MAJOR.MINOR.PATCH" (kvcache_version_string)."""
    return library().kvcache_version_string().decode()


def abi_version():
    """The loaded library's ABI version (kvcache_abi_version): ABI_VERSION, or it would not have loaded."""
    return library().kvcache_abi_version()


__all__ = [
    "ABI_VERSION", "BLOCK_COPY_DTYPE", "KEY_DTYPE", "BlockPoolError", "BlocksInUseError", "BufferTooSmallError", "Cache",
    "ChunkAction", "ChunkLoad", "ChunkPlan", "ChunkStore", "ChunksStats", "ChunksTierStats", "ReusedSpan", "SegmentKind", "Selection",
    "ClosedCacheError", "ConfigLibraryError", "DuplicateSequenceError", "Event", "EventKind", "EventPublisher", "EvictionPolicy", "InsufficientBlocksError",
    "InvalidArgumentError", "InvariantViolationError", "KVCacheError", "KVCacheMemoryError", "LibraryNotFound",
    "PrefixHit", "Stats", "Status", "Tier", "TierAdmission", "TierCounters", "TierLookup", "TierManager", "TierStats", "TierSystemError",
    "UnknownSequenceError", "__version__", "abi_version", "key_to_int",
    "version",
]
