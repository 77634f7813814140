"""SGLang's HiCache storage over the disk tier: `KVCacheHiCacheStorage`, a `HiCacheStorage` backend
(get / batch_get / set / batch_set / exists / batch_exists) whose pages are records of the library's
zstd-compressed, checksummed disk store, loaded by module path as SGLang's StorageBackendFactory loads
a "dynamic" backend (docs/INTEGRATION.md):

    --enable-hierarchical-cache --hicache-storage-backend dynamic \
    --hicache-storage-backend-extra-config '{"backend_name": "kvcache", "module_path":
        "kvcache.integrations.sglang", "class_name": "KVCacheHiCacheStorage",
        "disk_directory": "/nvme/kvcache", "disk_capacity_bytes": 200000000000}'

Keys are SGLang's page hashes (str), suffixed like HiCacheFile's with the model and the TP rank and
size, then hashed to 128-bit block keys. Each rank (a process of its own) has its own store under
disk_directory (tp<rank>_<size>): a store's folder is locked by the process that opens it, so an MLA
model's replicated pages are kept once per rank rather than shared as HiCacheFile shares them.
Values are the host pool's pages: torch tensors (read and written through their uint8 numpy view, no
copy) or anything numpy can view as bytes. Every page must have one size (the first one seen, or
extra_config "page_bytes"; recorded in the folder for the next run), the block size of the store. The v1/v2 zero-copy batch calls
(batch_get_v1 / batch_set_v1 over a registered host pool) are not provided: SGLang then uses these.
"""
import os
import threading

import numpy as np
from sglang.srt.mem_cache.hicache_storage import HiCacheStorage

from .. import TierManager
from . import key_of

__all__ = ["KVCacheHiCacheStorage"]


def _bytes_view(value):
    """A contiguous uint8 numpy view of a page (a torch tensor, a numpy array, a bytes-like object)."""
    if hasattr(value, "detach") and hasattr(value, "element_size"):  # a torch tensor, on the host
        import torch
        value = value.detach().contiguous().view(torch.uint8).numpy()
    if isinstance(value, np.ndarray):
        return value.reshape(-1).view(np.uint8) if value.flags.c_contiguous else np.ascontiguousarray(value).view(np.uint8).reshape(-1)
    return np.frombuffer(value, np.uint8)


class KVCacheHiCacheStorage(HiCacheStorage):
    """HiCache storage in the library's disk tier. Thread-safe (one lock around the handle: SGLang's
    prefetch and backup threads call it concurrently)."""

    def __init__(self, storage_config, kwargs=None):
        extra = dict(storage_config.extra_config or {})
        root = extra.get("disk_directory") or extra.get("file_storage_path") or "/tmp/kvcache-hicache"
        self.capacity_bytes = int(extra.get("disk_capacity_bytes", 64 << 30))
        model = "-".join((storage_config.model_name or "").split("/"))
        shard = f"_{storage_config.pp_size}_{storage_config.pp_rank}" if storage_config.pp_size > 1 else ""
        self.suffix = f"_{model}{shard}" if storage_config.is_mla_model else \
            f"_{model}_{storage_config.tp_rank}_{storage_config.tp_size}{shard}"
        # One disk store per rank (a store's folder belongs to one process): rank/size under the root.
        self.directory = os.path.join(root, f"tp{storage_config.tp_rank}_{storage_config.tp_size}{shard}")
        os.makedirs(self.directory, exist_ok=True)
        self._lock = threading.Lock()
        self._tiers = None
        # The page size: given, or the one a previous run recorded in the folder, or the first page seen.
        self._size_file = os.path.join(self.directory, "kvcache-page-bytes")
        self.page_bytes = int(extra["page_bytes"]) if "page_bytes" in extra else None
        if self.page_bytes is None and os.path.exists(self._size_file):
            with open(self._size_file) as f:
                self.page_bytes = int(f.read())
        if self.page_bytes:
            self._open(self.page_bytes)

    def _open(self, page_bytes):
        """Opens the disk tier for pages of `page_bytes` bytes (one opaque run: 1 layer, 1 head, 1 token,
        fp8, head_dim = bytes / 2). The lock is held."""
        if page_bytes % 2:
            raise ValueError(f"a page of {page_bytes} bytes: the disk tier stores an even number of bytes")
        self.page_bytes = page_bytes
        self._tiers = TierManager(layers=1, kv_heads=1, head_dim=page_bytes // 2, dtype_bytes=1, block_tokens=1,
                                  device_blocks=1, disk_directory=self.directory,
                                  disk_capacity_bytes=self.capacity_bytes)
        if not os.path.exists(self._size_file):
            with open(self._size_file, "w") as f:
                f.write(str(page_bytes))

    def _key(self, key):
        return key_of(key + self.suffix)

    def get(self, key, target_location=None, target_sizes=None):
        """The page `key` read into `target_location` (returned), or into a new uint8 array when none is
        given; None when it is not stored (or failed its checksum)."""
        with self._lock:
            out = None if target_location is None else _bytes_view(target_location)
            if self._tiers is None:
                if out is None:
                    return None
                self._open(out.nbytes)
            if out is not None and out.nbytes != self.page_bytes:
                return None
            got = self._tiers.disk_get(self._key(key), out)
            if got is None:
                return None
            return got if target_location is None else target_location

    def batch_get(self, keys, target_locations=None, target_sizes=None):
        return [self.get(k, t) for k, t in zip(keys, target_locations or [None] * len(keys))]

    def set(self, key, value=None, target_location=None, target_sizes=None):
        """Stores the page (True also when it was stored already); False when it has another size or the
        disk refused it."""
        data = _bytes_view(value if value is not None else target_location)
        with self._lock:
            if self._tiers is None:
                self._open(data.nbytes)
            if data.nbytes != self.page_bytes:
                return False
            try:
                self._tiers.disk_put(self._key(key), data)
            except Exception:  # the disk refused it (full, I/O): SGLang counts a failed backup
                return False
            return True

    def batch_set(self, keys, values=None, target_locations=None, target_sizes=None):
        values = values if values is not None else target_locations
        return all([self.set(k, v) for k, v in zip(keys, values)])

    def exists(self, key):
        with self._lock:
            return self._tiers is not None and self._tiers.disk_contains([self._key(key)]) == 1

    def batch_exists(self, keys, extra_info=None):
        """How many leading keys are stored (one C call)."""
        with self._lock:
            if self._tiers is None or not keys:
                return 0
            return self._tiers.disk_contains([self._key(k) for k in keys])

    def clear(self):
        """Not supported by the disk tier (it evicts by itself); a no-op, as the base class's."""

    def get_stats(self):
        with self._lock:
            return None if self._tiers is None else self._tiers.stats()

    def close(self):
        with self._lock:
            if self._tiers is not None:
                self._tiers.close()
                self._tiers = None
