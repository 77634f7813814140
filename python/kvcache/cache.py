"""`Cache`: one kvcache_t handle (KVCacheManager behind the C ABI) with Python types.

The contract is the header's (Sources/CKVCache/include/kvcache.h): a call that raises changed nothing;
a handle is single-threaded (never call one Cache from two threads at once); distinct caches are
independent. Arrays cross without a copy where the C call allows it: token ids that are already a
contiguous numpy uint32 array are read in place, and block tables, prompt keys and block copies are
written by the library straight into numpy arrays (a caller's own int32 row, for block_table).

Cost: every method is one C call (two for the results whose length the caller did not give:
block_table without `out`, prompt_keys, drain_copies and drain_events ask for the length first) plus
the Python argument checks; the hot methods (lookup, allocate, commit, append_tokens, free) allocate
only their small result objects. Measured by bench/lookup_overhead.py.
"""
import ctypes as C
import os
from operator import index

import numpy as np

from . import errors
from ._handle import OwnedHandle
from ._abi import (ABI_VERSION, Allocation, Config, EventKind, EventStruct, EvictionPolicy, MultimodalItem,
                   PrefixHitStruct, Status, StatsStruct, Tier, TierAdmissionStruct, library)
from .types import BLOCK_COPY_DTYPE, KEY_DTYPE, Event, PrefixHit, Stats, TierAdmission

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_OK, _TOO_SMALL, _INSUFFICIENT = Status.OK, Status.ERR_BUFFER_TOO_SMALL, Status.ERR_INSUFFICIENT_BLOCKS


def _invalid(message):
    """A refusal by the Python layer itself, before any C call (so nothing changed)."""
    return errors.InvalidArgumentError(Status.ERR_INVALID_ARGUMENT, "KVCACHE_ERR_INVALID_ARGUMENT", message)


def _i64(value, what):
    """`value` as an int64_t, refused (not truncated, as ctypes would) when it does not fit."""
    v = index(value)
    if _I64_MIN <= v <= _I64_MAX:
        return v
    raise _invalid(f"{what} {v} does not fit in int64_t")


def _text(value, what):
    """A str (or None) as NUL-terminated UTF-8 bytes for a `const char *`."""
    if value is None:
        return None
    b = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if b"\0" in b:
        raise _invalid(f"{what} contains a NUL character")
    return b


def _tokens(tokens):
    """Token ids as a contiguous uint32 array: the caller's own when it already is one (read in place),
    else a checked copy (an id outside 0...2**32-1 is refused, not wrapped)."""
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.uint32 and tokens.ndim == 1 \
            and tokens.flags.c_contiguous:
        return tokens
    a = np.asarray(tokens)
    if a.ndim != 1:
        raise _invalid(f"token ids must be one-dimensional, not of shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise _invalid(f"token ids must be integers, not {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > 0xFFFF_FFFF):
        raise _invalid("a token id is outside 0...2**32-1")
    return np.ascontiguousarray(a, dtype=np.uint32)


def _keys(keys):
    """Block keys as a contiguous KEY_DTYPE array: the caller's own when it already is one, else from an
    (n, 2) array of (lo, hi) uint64 halves or a sequence of such pairs."""
    if isinstance(keys, np.ndarray) and keys.dtype == KEY_DTYPE and keys.ndim == 1 and keys.flags.c_contiguous:
        return keys
    a = np.asarray(keys, dtype=np.uint64)
    if a.size == 0:
        return np.empty(0, KEY_DTYPE)
    if a.ndim != 2 or a.shape[1] != 2:
        raise _invalid(f"keys must be KEY_DTYPE or (n, 2) (lo, hi) halves, not of shape {a.shape}")
    return np.ascontiguousarray(a).view(KEY_DTYPE).reshape(-1)


class Cache(OwnedHandle):
    """A KV block pool with its prefix cache and live sequences (kvcache_t).

    Cache(capacity_blocks, block_tokens=16, namespace="", policy="lru", prefix_caching=True,
    record_events=False, recompute_seconds_per_token=0, recompute_seconds_per_context_pair=0): the
    fields of kvcache_config; policy is an EvictionPolicy or its name: lru, fifo, lfu, pgdsf, probation,
    pgdsf-probation, marking (pgdsf and pgdsf-probation need both recompute costs; the others ignore them). Creation
    checks the library's ABI against this package's (kvcache_create_checked). O(capacity_blocks).
    Cache.from_env() and Cache.from_file(path) open one from a configuration instead (docs/CONFIGURATION.md).
    `block_tokens` and `capacity_blocks` are the pool's. Close it with close() or a `with` block; a closed
    cache raises ClosedCacheError.
    """
    _DESTROY = "kvcache_destroy"

    def __init__(self, capacity_blocks, *, block_tokens=16, namespace="", policy="lru", prefix_caching=True,
                 record_events=False, recompute_seconds_per_token=0.0, recompute_seconds_per_context_pair=0.0):
        self._lib = lib = library()
        self._handle = None
        config = Config()
        self._check(lib.kvcache_config_init(C.byref(config)))
        if isinstance(policy, str):
            try:
                policy = EvictionPolicy[policy.upper().replace("-", "_")]
            except KeyError:
                raise _invalid(f"policy {policy!r} is not one of "
                               f"{', '.join(p.name.lower().replace('_', '-') for p in EvictionPolicy)}") \
                    from None
        config.block_tokens = _i64(block_tokens, "block_tokens")
        config.capacity_blocks = _i64(capacity_blocks, "capacity_blocks")
        namespace_bytes = _text(namespace, "namespace")
        config.key_namespace = namespace_bytes
        config.eviction_policy = int(EvictionPolicy(policy))
        config.enable_prefix_caching = bool(prefix_caching)
        config.record_events = bool(record_events)
        config.recompute_seconds_per_token = float(recompute_seconds_per_token)
        config.recompute_seconds_per_context_pair = float(recompute_seconds_per_context_pair)
        handle = C.c_void_p()
        self._check(lib.kvcache_create_checked(ABI_VERSION, C.sizeof(Config), C.byref(config), C.byref(handle)))
        self._adopt(handle, config.block_tokens)

    @classmethod
    def from_env(cls):
        """A cache opened from the KVCACHE_* variables of the process environment over the YAML file that
        KVCACHE_CONFIG_FILE names, if set (kvcache_create_from_env; the keys are docs/CONFIGURATION.md's,
        KVCACHE_CAPACITY_BLOCKS required). It records its events when record_events or events.enabled is
        set. InvalidArgumentError naming the key and its variable for a bad setting; ConfigLibraryError
        when libkvcache_config.so, which reads them, cannot be loaded. O(capacity_blocks)."""
        return cls._opened("kvcache_create_from_env")

    @classmethod
    def from_file(cls, path):
        """A cache opened from the YAML file at `path` (str or os.PathLike), the environment's KVCACHE_*
        variables overriding its keys (kvcache_create_from_file); raises as from_env."""
        return cls._opened("kvcache_create_from_file", _text(os.fspath(path), "path"))

    @classmethod
    def _opened(cls, create, *args):
        """A Cache over the handle that the configuration call `create` opens."""
        self = cls.__new__(cls)
        self._lib, self._handle = library(), None
        handle = C.c_void_p()
        self._check(getattr(self._lib, create)(*args, C.byref(handle)))
        self._adopt(handle, None)
        return self

    def _adopt(self, handle, block_tokens):
        """Takes ownership of `handle` and sets up the out-parameters every call reuses (the handle is
        single-threaded). `block_tokens` None: asked of the cache (kvcache_block_tokens)."""
        self._handle = handle
        self._hit, self._alloc = PrefixHitStruct(), Allocation()
        self._size, self._size2, self._i64out = C.c_size_t(), C.c_size_t(), C.c_int64()
        self._hit_ref, self._alloc_ref = C.byref(self._hit), C.byref(self._alloc)
        self._size_ref, self._size2_ref, self._i64_ref = C.byref(self._size), C.byref(self._size2), C.byref(self._i64out)
        self.capacity_blocks = self.stats().capacity_blocks
        if block_tokens is None:
            self._check(self._lib.kvcache_block_tokens(self._handle, self._i64_ref))
            block_tokens = self._i64out.value
        self.block_tokens = block_tokens

    # MARK: sequences

    def add_sequence(self, seq, tokens, *, salt=None, lora=None, multimodal=()):
        """Registers sequence `seq` by its prompt token ids (uint32 array read in place, or any integer
        sequence) and keys its full blocks. `multimodal`: (hash, start, length) items, hash a (lo, hi)
        pair, whose content hash is mixed into the keys of the blocks covering tokens [start, start+length).
        O(tokens)."""
        t = _tokens(tokens)
        items, n_items = None, 0
        if multimodal:
            n_items = len(multimodal)
            items = (MultimodalItem * n_items)()
            for item, (h, start, length) in zip(items, multimodal):
                item.hash.lo, item.hash.hi = index(h[0]), index(h[1])
                item.start, item.length = _i64(start, "multimodal start"), _i64(length, "multimodal length")
        self._check(self._lib.kvcache_add_sequence(self._handle, _i64(seq, "seq"), t.ctypes.data, t.size,
                                                   _text(salt, "salt"), _text(lora, "lora"), items, n_items))

    def add_sequence_keys(self, seq, keys, prompt_tokens):
        """Registers sequence `seq` by precomputed block keys (KEY_DTYPE array or (lo, hi) pairs) of a
        prompt of `prompt_tokens` tokens; blocks past the keys are never cached. O(keys)."""
        k = _keys(keys)
        self._check(self._lib.kvcache_add_sequence_keys(self._handle, _i64(seq, "seq"), k.ctypes.data, k.size,
                                                        _i64(prompt_tokens, "prompt_tokens")))

    def lookup(self, seq):
        """The longest cached prefix of the sequence's prompt (PrefixHit); call before the first
        allocate. O(matched blocks) hash probes."""
        status = self._lib.kvcache_lookup(self._handle, _i64(seq, "seq"), self._hit_ref)
        if status != _OK:
            raise errors.from_status(self._lib, status)
        return PrefixHit(self._hit.cached_blocks, self._hit.cached_tokens)

    def match_length(self, keys):
        """How many leading `keys` are cached here (for a router); changes nothing. O(matched)."""
        k = _keys(keys)
        self._check(self._lib.kvcache_match_length(self._handle, k.ctypes.data, k.size, self._size_ref))
        return self._size.value

    def allocate(self, seq, new_tokens, lookahead=0):
        """Ensures slots for `new_tokens` tokens to compute now plus `lookahead`; returns the blocks it
        took. Raises InsufficientBlocksError (with .needed and .available) when the pool cannot supply
        them now: preempt or wait; nothing changed. O(new blocks x log cached)."""
        status = self._lib.kvcache_allocate(self._handle, _i64(seq, "seq"), _i64(new_tokens, "new_tokens"),
                                            _i64(lookahead, "lookahead"), self._alloc_ref)
        if status != _OK:
            e = errors.from_status(self._lib, status)
            if status == _INSUFFICIENT:
                e.needed, e.available = self._alloc.needed_blocks, self._alloc.available_blocks
            raise e
        return self._alloc.new_blocks

    def commit(self, seq, computed_tokens):
        """Records KV written for `computed_tokens` more tokens and publishes newly full blocks."""
        self._check(self._lib.kvcache_commit(self._handle, _i64(seq, "seq"), _i64(computed_tokens, "computed_tokens")))

    def append_tokens(self, seq, tokens):
        """Adds sampled token ids to the sequence. O(tokens)."""
        t = _tokens(tokens)
        self._check(self._lib.kvcache_append_tokens(self._handle, _i64(seq, "seq"), t.ctypes.data, t.size))

    def append_count(self, seq, count):
        """Adds `count` tokens whose ids are unknown (their blocks are never cached). O(1)."""
        self._check(self._lib.kvcache_append_count(self._handle, _i64(seq, "seq"), _i64(count, "count")))

    def free(self, seq):
        """Releases the sequence's blocks and forgets it; cached blocks stay cached."""
        self._check(self._lib.kvcache_free_sequence(self._handle, _i64(seq, "seq")))

    def fork(self, parent, child):
        """Starts `child` as a copy of `parent`, sharing its blocks (copy-on-write of the partial one)."""
        self._check(self._lib.kvcache_fork(self._handle, _i64(parent, "parent"), _i64(child, "child")))

    # MARK: a prompt's tier leg through the library

    def attach_tiers(self, tiers):
        """Wires TierManager `tiers` below this cache as the library's serving loop does
        (kvcache_tiers_attach): blocks the cache evicts are copied down to them, and drain_events also
        moves their events. The cache keeps them (and their copy callables) until detach_tiers or close.
        InvalidArgumentError when either is attached already, or the block sizes differ, or the tiers'
        device_blocks are fewer than capacity_blocks; nothing changed then."""
        self._check(self._lib.kvcache_tiers_attach(self._handle, tiers._handle))
        self._tiers = tiers

    def detach_tiers(self):
        """Unwires the attached tiers after their eviction copies finish (kvcache_tiers_detach)."""
        self._check(self._lib.kvcache_tiers_detach(self._handle))
        self._tiers = None

    def admit(self, seq, kv_tokens=None):
        """Admits sequence `seq` (added, not allocated) through the attached tiers (kvcache_tiers_admit):
        the device hit, the blocks after it found on host or disk loaded into its new blocks through the
        tiers' copies and committed, slots allocated for the rest. `kv_tokens`: the prompt tokens whose KV
        the sequence holds after its prefill (default: the whole prompt, token_count(seq)). Returns a
        TierAdmission; InsufficientBlocksError when the pool cannot take it now (the sequence as it was).
        O(prompt blocks) plus the copies."""
        tiers = self._attached()
        seq = _i64(seq, "seq")
        kv = self.token_count(seq) if kv_tokens is None else _i64(kv_tokens, "kv_tokens")
        out = TierAdmissionStruct()
        self._check(self._lib.kvcache_tiers_admit(self._handle, tiers._handle, seq, kv, C.byref(out)))
        return TierAdmission(out.device_tokens, out.loaded_tokens, out.compute_tokens, out.host_blocks,
                             out.disk_blocks, out.failed_blocks)

    def record_stored(self, seq, first_block=0):
        """Tells the attached tiers which device block holds each computed full prompt block of `seq` from
        `first_block` (kvcache_tiers_record_stored): call it after committing the computed prompt, with
        the admission's device_tokens // block_tokens, or 0. O(blocks)."""
        tiers = self._attached()
        self._check(self._lib.kvcache_tiers_record_stored(self._handle, tiers._handle, _i64(seq, "seq"),
                                                          _i64(first_block, "first_block")))

    def _attached(self):
        tiers = getattr(self, "_tiers", None)
        if tiers is None:
            raise _invalid("the cache has no tiers attached (attach_tiers)")
        return tiers

    # MARK: engine-side queries

    def block_table(self, seq, out=None):
        """The sequence's block table as an int32 array written by the library in place: into `out`
        when given (a writable contiguous int32 array, e.g. a row of the engine's block-table tensor;
        the result is out[:length], a view; BufferTooSmallError with .needed and nothing written when it
        is too short), else into a new array (one more call asks for the length first). O(length)."""
        seq = _i64(seq, "seq")
        lib, h = self._lib, self._handle
        if out is not None:
            if not (isinstance(out, np.ndarray) and out.dtype == np.int32 and out.ndim == 1
                    and out.flags.c_contiguous and out.flags.writeable):
                raise _invalid("out must be a writable contiguous one-dimensional int32 numpy array")
            status = lib.kvcache_block_table(h, seq, out.ctypes.data, out.size, self._size_ref)
            if status != _OK:
                e = errors.from_status(lib, status)
                if status == _TOO_SMALL:
                    e.needed = self._size.value
                raise e
            return out[:self._size.value]
        status = lib.kvcache_block_table(h, seq, None, 0, self._size_ref)
        if status != _OK and status != _TOO_SMALL:
            raise errors.from_status(lib, status)
        table = np.empty(self._size.value, np.int32)
        if table.size:
            self._check(lib.kvcache_block_table(h, seq, table.ctypes.data, table.size, self._size_ref))
        return table

    def prompt_keys(self, seq):
        """The keys of the sequence's full prompt blocks (KEY_DTYPE array), as lookup matches them."""
        seq = _i64(seq, "seq")
        status = self._lib.kvcache_prompt_keys(self._handle, seq, None, 0, self._size_ref)
        if status != _OK and status != _TOO_SMALL:
            raise errors.from_status(self._lib, status)
        keys = np.empty(self._size.value, KEY_DTYPE)
        if keys.size:
            self._check(self._lib.kvcache_prompt_keys(self._handle, seq, keys.ctypes.data, keys.size, self._size_ref))
        return keys

    def computed_tokens(self, seq):
        """Tokens of the sequence whose KV is written (cached prefix included). O(1)."""
        self._check(self._lib.kvcache_computed_tokens(self._handle, _i64(seq, "seq"), self._i64_ref))
        return self._i64out.value

    def token_count(self, seq):
        """Tokens known for the sequence (prompt plus appended). O(1)."""
        self._check(self._lib.kvcache_token_count(self._handle, _i64(seq, "seq"), self._i64_ref))
        return self._i64out.value

    def drain_copies(self):
        """The pending block copies (copy-on-write after a fork) as a BLOCK_COPY_DTYPE array of
        (src, dst), in order, moved out of the cache: perform them before the next engine step."""
        lib, h = self._lib, self._handle
        status = lib.kvcache_drain_copies(h, None, 0, self._size_ref)
        if status == _OK:
            return np.empty(0, BLOCK_COPY_DTYPE)
        if status != _TOO_SMALL:
            raise errors.from_status(lib, status)
        copies = np.empty(self._size.value, BLOCK_COPY_DTYPE)
        self._check(lib.kvcache_drain_copies(h, copies.ctypes.data, copies.size, self._size_ref))
        return copies

    def drain_events(self):
        """The recorded KV events (record_events=True), moved out of the cache, as a list of Event."""
        return _take_events(self._lib, self._lib.kvcache_drain_events, self._handle, self._size, self._size2)

    # MARK: cache-wide

    def stats(self):
        """The cache's counters (Stats). O(1)."""
        s = StatsStruct()
        self._check(self._lib.kvcache_get_stats(self._handle, C.byref(s)))
        return Stats(*(getattr(s, f) for f, _ in StatsStruct._fields_))

    def free_block_count(self):
        """Blocks an allocation can get now: free ones plus cached ones nobody holds. O(1)."""
        self._check(self._lib.kvcache_free_block_count(self._handle, self._i64_ref))
        return self._i64out.value

    def sequence_count(self):
        """Live sequences. O(1)."""
        self._check(self._lib.kvcache_sequence_count(self._handle, self._i64_ref))
        return self._i64out.value

    def reset(self):
        """Drops every cached block (vLLM's reset_prefix_cache); BlocksInUseError while any is held."""
        self._check(self._lib.kvcache_reset(self._handle))

    def validate(self):
        """Checks every internal invariant (tests, debugging); InvariantViolationError on a library bug."""
        self._check(self._lib.kvcache_validate(self._handle))

    def metrics_text(self):
        """The cache's metrics in the Prometheus text exposition format (kvcache_metrics_text), as str:
        the size first, then the text into a buffer of that size."""
        length = C.c_size_t()
        status = self._lib.kvcache_metrics_text(self._handle, None, 0, C.byref(length))
        if status != _OK and status != _TOO_SMALL:
            self._check(status)
        text = C.create_string_buffer(length.value + 1)
        self._check(self._lib.kvcache_metrics_text(self._handle, text, len(text), C.byref(length)))
        return text.value.decode()


def _take_events(lib, drain, handle, size, size2):
    """The events of kvcache_drain_events or kvcache_tiers_take_events (`drain`): the counts first, then
    the events into a ctypes array and their keys into one KEY_DTYPE array, as a list of Event."""
    status = drain(handle, None, 0, C.byref(size), None, 0, C.byref(size2))
    if status == _OK:
        return []
    if status != _TOO_SMALL:
        raise errors.from_status(lib, status)
    raw = (EventStruct * size.value)()
    keys = np.empty(size2.value, KEY_DTYPE)
    status = drain(handle, raw, len(raw), C.byref(size), keys.ctypes.data, keys.size, C.byref(size2))
    if status != _OK:
        raise errors.from_status(lib, status)
    return [Event(EventKind(e.kind), Tier(e.tier), e.block_tokens,
                  (e.parent.lo, e.parent.hi) if e.has_parent else None,
                  keys[e.first_key:e.first_key + e.key_count]) for e in raw]
