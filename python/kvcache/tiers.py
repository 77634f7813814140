"""`TierManager`: one kvcache_tiers_t handle (KVTierManager behind the C ABI): host memory and a disk
store below an engine's device pool, looked up by block key.

The contract is the header's "Tiers" section (Sources/CKVCache/include/kvcache.h): a call that raises
changed nothing; one thread at a time per handle, except copy_done, which any thread may call. The host
memory and the disk bytes are the library's. The device copies are the engine's when it passes
`device_to_host` and `host_to_device` callables: each is called (on a library thread) as
fn(block, offset, length, host_address, token) and the engine reports the copy with copy_done(token,
ok), at once or later. Without them the library keeps a stand-in device pool in host memory, whose
blocks device_block() exposes as numpy arrays (tests, CPU engines).

Keys are KEY_DTYPE arrays or (lo, hi) pairs, as for Cache. Cost: one C call per method plus the Python
argument checks (bench/lookup_overhead.py measures lookup).
"""
import ctypes as C
import dataclasses
import os
from operator import index
from typing import NamedTuple, Optional

import numpy as np

from . import errors
from ._handle import OwnedHandle
from ._abi import ABI_VERSION, CopyFn, Key, Status, Tier, TierLookupStruct, TiersConfig, TierStatsStruct, library
from .cache import _i64, _invalid, _keys, _take_events, _text

_OK = Status.OK


class TierLookup(NamedTuple):
    """kvcache_tier_lookup plus the load plan: `locations[i]` is the Tier of the i-th block to load."""
    device_blocks: int
    host_blocks: int
    disk_blocks: int
    load_blocks: int
    locations: np.ndarray


@dataclasses.dataclass(frozen=True)
class TierCounters:
    """kvcache_tier_counters of one tier."""
    hits: int
    stored_blocks: int
    removed_blocks: int
    bytes_in: int
    bytes_out: int
    occupancy: int
    capacity: int
    loaded_blocks: int
    not_stored: int
    failed_loads: int
    dropped_blocks: int


@dataclasses.dataclass(frozen=True)
class TierStats:
    """kvcache_tier_stats: the block size and the counters of the device, host and disk tiers."""
    block_bytes: int
    device: TierCounters
    host: TierCounters
    disk: TierCounters


def _tier_stats(s):
    """A kvcache_tier_stats struct as TierStats."""
    def counters(c):
        return TierCounters(**{name: getattr(c, name) for name, _ in c._fields_})
    return TierStats(s.block_bytes, counters(s.device), counters(s.host), counters(s.disk))


def _key(key):
    """One key (a KEY_DTYPE element, a (lo, hi) pair) as a kvcache_key struct."""
    if isinstance(key, np.void):
        return Key(int(key["lo"]), int(key["hi"]))
    lo, hi = key
    return Key(index(lo), index(hi))


def _blocks(blocks, what):
    """Device block ids as a contiguous int32 array (the caller's own when it already is one)."""
    a = np.asarray(blocks)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise _invalid(f"{what} must be a one-dimensional array of integers")
    if a.size and (a.min() < -(1 << 31) or a.max() >= 1 << 31):
        raise _invalid(f"a block id of {what} does not fit in int32_t")
    return np.ascontiguousarray(a, dtype=np.int32)


def _copy_callables(device_to_host, host_to_device):
    """The engine's copy callables (fn(block, offset, length, host_address, token)) as C function pointers:
    (keep, device_to_host, host_to_device), `keep` the ctypes objects, which must outlive the handle; all
    None when both callables are None (the library's stand-in device pool)."""
    if (device_to_host is None) != (host_to_device is None):
        raise _invalid("pass both copy callables or neither")
    if device_to_host is None:
        return None, None, None

    def wrap(fn):
        return CopyFn(lambda _ctx, block, offset, length, host, token: fn(block, offset, length, host, token))
    keep = (wrap(device_to_host), wrap(host_to_device))
    return keep, C.cast(keep[0], C.c_void_p), C.cast(keep[1], C.c_void_p)


def _tiers_config(lib, check, *, layers, kv_heads, head_dim, dtype_bytes, block_tokens, device_blocks, host_blocks,
                  disk_directory, disk_capacity_bytes, layer_groups, workers, spill_watermark, record_events,
                  lock_host_memory, synchronous_eviction_copies):
    """A kvcache_tiers_config of these fields (the copy callbacks left NULL), the defaults from the library."""
    config = TiersConfig()
    check(lib.kvcache_tiers_config_init(C.byref(config)))
    for name, value in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim),
                        ("dtype_bytes", dtype_bytes), ("block_tokens", block_tokens),
                        ("device_blocks", device_blocks), ("host_blocks", host_blocks),
                        ("disk_capacity_bytes", disk_capacity_bytes), ("layer_groups", layer_groups),
                        ("workers", workers)):
        setattr(config, name, _i64(value, name))
    directory = _text(disk_directory, "disk_directory")
    config.disk_directory = directory
    config.spill_watermark = float(spill_watermark)
    config.record_events = bool(record_events)
    config.lock_host_memory = bool(lock_host_memory)
    config.synchronous_eviction_copies = bool(synchronous_eviction_copies)
    return config


class TierManager(OwnedHandle):
    """Host and disk tiers below a device pool of `device_blocks` blocks of `block_bytes` bytes
    (layers x 2 x kv_heads x head_dim x dtype_bytes x block_tokens).

    TierManager(layers=, kv_heads=, head_dim=, dtype_bytes=2, block_tokens=16, device_blocks=, host_blocks=0,
    disk_directory=None, disk_capacity_bytes=0, layer_groups=1, workers=2, spill_watermark=0.9,
    record_events=False, lock_host_memory=False, synchronous_eviction_copies=False, device_to_host=None,
    host_to_device=None): the fields of kvcache_tiers_config; TierManager.from_config() opens one from a
    configuration instead (docs/CONFIGURATION.md). Close it with close() or a `with` block.
    """
    _DESTROY = "kvcache_tiers_destroy"

    def __init__(self, *, layers, kv_heads, head_dim, device_blocks, dtype_bytes=2, block_tokens=16, host_blocks=0,
                 disk_directory=None, disk_capacity_bytes=0, layer_groups=1, workers=2, spill_watermark=0.9,
                 record_events=False, lock_host_memory=False, synchronous_eviction_copies=False,
                 device_to_host=None, host_to_device=None):
        self._lib = lib = library()
        self._handle = None
        config = _tiers_config(lib, self._check, layers=layers, kv_heads=kv_heads, head_dim=head_dim, dtype_bytes=dtype_bytes,
                               block_tokens=block_tokens, device_blocks=device_blocks, host_blocks=host_blocks,
                               disk_directory=disk_directory, disk_capacity_bytes=disk_capacity_bytes,
                               layer_groups=layer_groups, workers=workers, spill_watermark=spill_watermark,
                               record_events=record_events, lock_host_memory=lock_host_memory,
                               synchronous_eviction_copies=synchronous_eviction_copies)
        callbacks, config.device_to_host, config.host_to_device = _copy_callables(device_to_host, host_to_device)
        handle = C.c_void_p()
        self._check(lib.kvcache_tiers_create_checked(ABI_VERSION, C.sizeof(TiersConfig), C.byref(config),
                                                     C.byref(handle)))
        self._adopt(handle, callbacks)

    @classmethod
    def from_config(cls, path=None, *, device_to_host=None, host_to_device=None):
        """The tier manager that the `tiers:` and `layout:` sections describe (kvcache_tiers_create_from_config),
        read from the YAML file at `path` with the KVCACHE_* variables over it, or from the environment alone
        when `path` is None (as Cache.from_file and Cache.from_env), below a device pool of capacity_blocks
        blocks; None when the configuration names no tier (neither tiers.host_blocks nor tiers.disk_path).
        The copy callables as for TierManager(). InvalidArgumentError naming a bad key, TierSystemError,
        ConfigLibraryError as Cache.from_env."""
        self = cls.__new__(cls)
        self._lib, self._handle = library(), None
        callbacks, d2h, h2d = _copy_callables(device_to_host, host_to_device)
        handle = C.c_void_p()
        self._check(self._lib.kvcache_tiers_create_from_config(None if path is None else _text(os.fspath(path), "path"),
                                                               d2h, h2d, None, C.byref(handle)))
        if not handle:
            return None
        self._adopt(handle, callbacks)
        return self

    def _adopt(self, handle, callbacks):
        """Takes ownership of `handle`, keeps the copy callables' C function pointers (they must outlive it)
        and sets up the out-parameters every call reuses (the handle is single-threaded)."""
        self._handle, self._callbacks = handle, callbacks
        self._lookup, self._u64, self._size, self._size2 = TierLookupStruct(), C.c_uint64(), C.c_size_t(), C.c_size_t()
        self._i32, self._bool = C.c_int32(), C.c_bool()
        self._lookup_ref, self._u64_ref, self._size_ref = C.byref(self._lookup), C.byref(self._u64), C.byref(self._size)
        self._locations = np.empty(0, np.int32)
        self._locations_address = 0
        self._i32_ref, self._bool_ref = C.byref(self._i32), C.byref(self._bool)
        self._pending = {}  # load or store id -> its block count
        stats = self.stats()
        self.block_bytes, self.device_blocks = stats.block_bytes, stats.device.capacity

    # MARK: lookup and load

    def lookup(self, keys, device_blocks=0, max_blocks=None):
        """The longest prefix of `keys` available: `device_blocks` leading ones are in the device pool (the
        caller's own lookup said so), the following ones on host or disk (TierLookup, with the load plan's
        tiers). Counts hits per tier. O(len(keys))."""
        k = _keys(keys)
        most = k.size if max_blocks is None else _i64(max_blocks, "max_blocks")
        room = max(0, min(k.size, most) - max(0, index(device_blocks)))
        if room > self._locations.size:   # the plan's buffer, kept (its address taken once per growth)
            self._locations = np.empty(max(room, 2 * self._locations.size), np.int32)
            self._locations_address = self._locations.ctypes.data
        self._check(self._lib.kvcache_tiers_lookup(self._handle, k.ctypes.data, k.size, _i64(device_blocks, "device_blocks"),
                                                   most, self._locations_address, room, self._lookup_ref))
        r = self._lookup
        return TierLookup(r.device_blocks, r.host_blocks, r.disk_blocks, r.load_blocks,
                          self._locations[:r.load_blocks].copy())

    def loadable(self, key):
        """Tier.HOST or Tier.DISK when `key` can be loaded from there now, else None. Counts nothing."""
        self._check(self._lib.kvcache_tiers_loadable(self._handle, _key(key), self._i32_ref))
        return None if self._i32.value < 0 else Tier(self._i32.value)

    def prepare_load(self, keys, first, dst_blocks):
        """Starts loading keys[first:first + len(dst_blocks)] into device blocks `dst_blocks` (keys before
        `first` name the parents); returns the load's id for complete_load."""
        k, dst = _keys(keys), _blocks(dst_blocks, "dst_blocks")
        self._check(self._lib.kvcache_tiers_prepare_load(self._handle, k.ctypes.data, k.size, index(first),
                                                         dst.ctypes.data, dst.size, self._u64_ref))
        self._pending[self._u64.value] = dst.size
        return self._u64.value

    def is_complete(self, transfer_id):
        """Whether every copy of a load or store has finished (does not wait)."""
        self._check(self._lib.kvcache_tiers_is_complete(self._handle, index(transfer_id), self._bool_ref))
        return self._bool.value

    def failed_blocks(self, transfer_id):
        """Which blocks of a load or store have failed so far (bool array), without waiting: right after
        prepare_*, the blocks for which no copy will be asked."""
        failed = np.zeros(self._pending.get(transfer_id, 0), np.uint8)
        self._check(self._lib.kvcache_tiers_failed_blocks(self._handle, index(transfer_id), failed.ctypes.data,
                                                          failed.size, self._size_ref))
        return failed.astype(bool)

    def complete_load(self, load_id):
        """Waits for a load and forgets it: (loaded_prefix, ok), ok[i] True when block i arrived."""
        ok = np.zeros(self._pending.get(load_id, 0), np.uint8)
        self._check(self._lib.kvcache_tiers_complete_load(self._handle, index(load_id), ok.ctypes.data, ok.size,
                                                          self._size_ref))
        del self._pending[load_id]
        return self._size.value, ok.astype(bool)

    # MARK: store

    def prepare_store(self, blocks, keys, first_parent=None):
        """Offloads device blocks `blocks` holding `keys` (a chain after `first_parent`, None for a first
        block); returns the store's id for complete_store."""
        b, k = _blocks(blocks, "blocks"), _keys(keys)
        if b.size != k.size:
            raise _invalid(f"{b.size} blocks but {k.size} keys")
        parent = None if first_parent is None else C.byref(_key(first_parent))
        self._check(self._lib.kvcache_tiers_prepare_store(self._handle, b.ctypes.data, k.ctypes.data, k.size, parent,
                                                          self._u64_ref))
        self._pending[self._u64.value] = k.size
        return self._u64.value

    def complete_store(self, store_id):
        """Waits for a store and forgets it: (stored, ok), ok[i] True when key i is on host now."""
        ok = np.zeros(self._pending.get(store_id, 0), np.uint8)
        self._check(self._lib.kvcache_tiers_complete_store(self._handle, index(store_id), ok.ctypes.data, ok.size,
                                                           self._size_ref))
        del self._pending[store_id]
        return self._size.value, ok.astype(bool)

    def copy_done(self, token, ok=True):
        """The engine finished the copy of `token` (any thread)."""
        self._check(self._lib.kvcache_tiers_copy_done(self._handle, index(token), bool(ok)))

    def touch(self, keys):
        """Marks the host copies of `keys` as just used; returns how many are on host."""
        k = _keys(keys)
        self._check(self._lib.kvcache_tiers_touch(self._handle, k.ctypes.data, k.size, self._size_ref))
        return self._size.value

    def prefetch(self, keys):
        """Starts bringing the disk blocks among `keys` up to host in the background (nothing waits for the
        disk); returns how many of `keys` are on their way up now."""
        k = _keys(keys)
        self._check(self._lib.kvcache_tiers_prefetch(self._handle, k.ctypes.data, k.size, self._size_ref))
        return self._size.value

    def will_evict(self, block, key):
        """The device pool is about to reuse `block`, which held `key` (copied to host first if needed)."""
        self._check(self._lib.kvcache_tiers_will_evict(self._handle, index(block), _key(key)))

    # MARK: the disk tier's bytes

    def disk_put(self, key, data, parent=None):
        """Writes one block of bytes (a bytes-like object or a contiguous numpy array of block_bytes
        bytes) under `key` to the disk tier; True when written now, False when it was there."""
        buf = np.ascontiguousarray(np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data)
        p = None if parent is None else C.byref(_key(parent))
        self._check(self._lib.kvcache_tiers_disk_put(self._handle, _key(key), p, buf.ctypes.data, buf.nbytes,
                                                     self._bool_ref))
        return self._bool.value

    def disk_get(self, key, out=None):
        """The disk tier's block `key` as a uint8 array (into `out` when given, a writable contiguous
        array of block_bytes bytes), or None when it is not there or failed its checks."""
        buf = np.empty(self.block_bytes, np.uint8) if out is None else out
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.flags.writeable):
            raise _invalid("out must be a writable contiguous numpy array")
        self._check(self._lib.kvcache_tiers_disk_get(self._handle, _key(key), buf.ctypes.data, buf.nbytes,
                                                     self._bool_ref))
        return buf if self._bool.value else None

    def disk_contains(self, keys):
        """How many leading `keys` the disk tier holds."""
        k = _keys(keys)
        self._check(self._lib.kvcache_tiers_disk_contains(self._handle, k.ctypes.data, k.size, self._size_ref))
        return self._size.value

    # MARK: events, counters, the stand-in device pool

    def take_events(self):
        """The tier events (record_events=True) since the last call, as a list of Event (tiers HOST, DISK)."""
        return _take_events(self._lib, self._lib.kvcache_tiers_take_events, self._handle, self._size, self._size2)

    def stats(self):
        """The counters (TierStats). O(1)."""
        s = TierStatsStruct()
        self._check(self._lib.kvcache_tiers_get_stats(self._handle, C.byref(s)))
        return _tier_stats(s)

    def device_block(self, block):
        """The stand-in device pool's block `block` as a writable uint8 array over the library's memory
        (only without copy callables; valid while the manager is open)."""
        data, length = C.c_void_p(), C.c_size_t()
        self._check(self._lib.kvcache_tiers_device_block(self._handle, index(block), C.byref(data), C.byref(length)))
        return np.ctypeslib.as_array((C.c_uint8 * length.value).from_address(data.value))

    def host_region(self):
        """The host tier's shared memory: (fd, base, size): the memfd holding the host blocks (owned by the
        manager, open while it is), its address in this process and its size. Another process maps it
        through /proc/<pid>/fd/<fd> (HostRegion.open) and copies a block at `host address - base`."""
        fd, base, size = C.c_int32(), C.c_void_p(), C.c_size_t()
        self._check(self._lib.kvcache_tiers_host_region(self._handle, C.byref(fd), C.byref(base), C.byref(size)))
        return fd.value, base.value, size.value

    def validate(self):
        """Checks the tier index's invariants; raises InvariantViolationError when one is broken."""
        self._check(self._lib.kvcache_tiers_validate(self._handle))
