"""Exceptions for the statuses of kvcache.h: one class per status a caller can act on.

A call that raises changed nothing, in the cache or in the caller's arrays (the library's contract;
the Python layer checks its own arguments before calling). Each exception carries the status, its
name in the header and the library's sentence for it (kvcache_last_error, read on the failing
thread right after the call). Classes also derive from the matching built-in exception where one
fits (ValueError, KeyError, MemoryError), so generic handlers work.
"""
from ._abi import ConfigStatus, Status, TierStatus


class KVCacheError(Exception):
    """A refused call. `status` is the kvcache_status, `name` its constant, `message` the sentence."""

    def __init__(self, status, name, message):
        super().__init__(f"{name}: {message}")
        self.status, self.name, self.message = status, name, message


class ClosedCacheError(KVCacheError):
    """The cache was closed (KVCACHE_ERR_NULL_HANDLE)."""


class InvalidArgumentError(KVCacheError, ValueError):
    """An argument out of its documented range (KVCACHE_ERR_INVALID_ARGUMENT)."""


class UnknownSequenceError(KVCacheError, KeyError):
    """The sequence id was never added, or was freed (KVCACHE_ERR_UNKNOWN_SEQUENCE)."""

    def __str__(self):  # KeyError would quote the message
        return Exception.__str__(self)


class DuplicateSequenceError(KVCacheError, ValueError):
    """add_sequence or fork named a live sequence id (KVCACHE_ERR_DUPLICATE_SEQUENCE)."""


class InsufficientBlocksError(KVCacheError):
    """allocate cannot be served now: preempt or wait (KVCACHE_ERR_INSUFFICIENT_BLOCKS). `needed` and
    `available` are the blocks the call needed and could have had."""

    needed = None
    available = None


class BlocksInUseError(KVCacheError):
    """reset while sequences still hold blocks (KVCACHE_ERR_BLOCKS_IN_USE)."""


class BufferTooSmallError(KVCacheError, ValueError):
    """An `out` array is too short; `needed` is the length the call needs (KVCACHE_ERR_BUFFER_TOO_SMALL)."""

    needed = None


class BlockPoolError(KVCacheError):
    """The block pool's own misuse statuses (INVALID_BLOCK, DOUBLE_FREE, BLOCK_STILL_REFERENCED,
    BLOCK_NOT_REFERENCED); the sequence-level calls never produce them."""


class InvariantViolationError(KVCacheError, AssertionError):
    """validate found a broken internal invariant: a library bug (KVCACHE_ERR_INVARIANT_VIOLATION)."""


class KVCacheMemoryError(KVCacheError, MemoryError):
    """create: the index would not fit in memory; nothing allocated (KVCACHE_ERR_OUT_OF_MEMORY)."""


class TierSystemError(KVCacheError):
    """The tiers' system calls, zstd or the disk directory failed; the message names the call and the
    path (KVCACHE_ERR_TIER_SYSTEM)."""


class ConfigLibraryError(KVCacheError):
    """libkvcache_config.so, which the configuration and event calls need, could not be loaded; the message
    names the files tried (KVCACHE_ERR_CONFIG_LIBRARY)."""


# Status -> exception class; a status not listed (a newer library's) raises KVCacheError itself.
BY_STATUS = {
    Status.ERR_NULL_HANDLE: ClosedCacheError,
    Status.ERR_NULL_POINTER: KVCacheError,  # a binding bug: every pointer passed here is set
    Status.ERR_INVALID_ARGUMENT: InvalidArgumentError,
    Status.ERR_UNKNOWN_SEQUENCE: UnknownSequenceError,
    Status.ERR_DUPLICATE_SEQUENCE: DuplicateSequenceError,
    Status.ERR_INSUFFICIENT_BLOCKS: InsufficientBlocksError,
    Status.ERR_BLOCKS_IN_USE: BlocksInUseError,
    Status.ERR_BUFFER_TOO_SMALL: BufferTooSmallError,
    Status.ERR_INVALID_BLOCK: BlockPoolError,
    Status.ERR_DOUBLE_FREE: BlockPoolError,
    Status.ERR_BLOCK_STILL_REFERENCED: BlockPoolError,
    Status.ERR_BLOCK_NOT_REFERENCED: BlockPoolError,
    Status.ERR_INVARIANT_VIOLATION: InvariantViolationError,
    Status.ERR_OUT_OF_MEMORY: KVCacheMemoryError,
    TierStatus.ERR_TIER_SYSTEM: TierSystemError,
    ConfigStatus.ERR_CONFIG_LIBRARY: ConfigLibraryError,
}


def from_status(lib, status):
    """The exception for a failed call's status, with the calling thread's last-error sentence."""
    cls = BY_STATUS.get(status, KVCacheError)
    return cls(status, lib.kvcache_status_name(status).decode(), lib.kvcache_last_error().decode("utf-8", "replace"))
