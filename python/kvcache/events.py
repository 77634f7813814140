"""`EventPublisher`: one kvcache_events_t handle, the KV event publisher of a configuration's `events:`
section (docs/CONFIGURATION.md, docs/EVENTS.md): a cache's events, and a tier manager's, as vLLM's msgpack
KVEventBatch over a ZMQ PUB socket with a replay socket, so a router written for vLLM subscribes unchanged.

The contract is the header's "Events to a ZMQ subscriber" section (Sources/CKVCache/include/kvcache.h): one
caller thread at a time, with its cache; a call that raises changed nothing. The sockets, the encoding and
the sending are libkvcache_config.so's (its own thread), which the library opens on the first
configuration call; publish() itself only drains the cache and queues the batch.
"""
import ctypes as C
import os

from ._abi import library
from ._handle import OwnedHandle
from .cache import _text


class EventPublisher(OwnedHandle):
    """The publisher of a cache's events (kvcache_events_open_from_config), made by EventPublisher.open.

    publish() once per scheduler step sends what the cache (and the tiers added with add_tiers) recorded
    since the last one as one batch and returns its sequence number. close() (or the end of a `with`
    block) publishes what is pending and closes the sockets; a closed publisher raises ClosedCacheError.
    The publisher keeps its cache and tiers alive (the Python objects too: their copy callables must
    outlive it) until it is closed.
    """
    _DESTROY = "kvcache_events_close"

    @classmethod
    def open(cls, cache, path=None):
        """The publisher that the `events:` section describes, read from the YAML file at `path` (str or
        os.PathLike) with the KVCACHE_* variables over it, or from the environment alone when `path` is None
        (as Cache.from_file and Cache.from_env), over the events of `cache` (which must record them: open
        it from the same configuration, or with record_events=True). None when events.enabled is false.
        InvalidArgumentError naming a bad key, or an address that cannot be bound as events.endpoint or
        events.replay_endpoint with libzmq's reason; ConfigLibraryError when libkvcache_config.so cannot
        be loaded. O(file)."""
        lib = library()
        handle = C.c_void_p()
        self = cls.__new__(cls)
        self._lib, self._handle = lib, None
        self._check(lib.kvcache_events_open_from_config(cache._handle, None if path is None else
                                                        _text(os.fspath(path), "path"), C.byref(handle)))
        if not handle:
            return None
        self._handle, self._cache, self._tiers = handle, cache, None
        self._seq = C.c_int64()
        self._seq_ref = C.byref(self._seq)
        return self

    def add_tiers(self, tiers):
        """Adds the events of TierManager `tiers` (host and disk, CPU and DISK on the wire; kept when it
        records events) to every batch from now on, after the cache's (kvcache_events_add_tiers); a second
        call replaces the first. Do not call into `tiers` from another thread during publish(). O(1)."""
        self._check(self._lib.kvcache_events_add_tiers(self._handle, tiers._handle))
        self._tiers = tiers

    def publish(self):
        """Drains the cache's events, then the added tiers' (so drain_events and take_events find none of
        them), and queues them as one batch stamped now: its sequence number, or None when there was
        nothing to publish. O(events + keys)."""
        self._check(self._lib.kvcache_events_publish(self._handle, self._seq_ref))
        return None if self._seq.value < 0 else self._seq.value
