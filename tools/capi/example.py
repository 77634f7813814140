#!/usr/bin/env python3
"""A Python (ctypes) client of swift-kvcache's C ABI (Sources/CKVCache/include/kvcache.h).

Two requests share a system prompt; the second one hits the prefix cache; a fork for parallel
sampling needs one copy-on-write block copy; an oversized request is refused with nothing changed.
Exits non-zero on any status it did not expect.

    swift build --product kvcache_c                  # or -c release
    python3 tools/capi/example.py [path/to/libkvcache_c.so]
"""
import ctypes as C
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_LIB = os.path.join(HERE, "..", "..", ".build", "debug", "libkvcache_c.so")


class Key(C.Structure):
    _fields_ = [("lo", C.c_uint64), ("hi", C.c_uint64)]


class Config(C.Structure):
    _fields_ = [("block_tokens", C.c_int64), ("capacity_blocks", C.c_int64), ("key_namespace", C.c_char_p),
                ("eviction_policy", C.c_int32), ("enable_prefix_caching", C.c_bool), ("record_events", C.c_bool),
                ("recompute_seconds_per_token", C.c_double), ("recompute_seconds_per_context_pair", C.c_double)]


class PrefixHit(C.Structure):
    _fields_ = [("cached_blocks", C.c_int64), ("cached_tokens", C.c_int64)]


class Allocation(C.Structure):
    _fields_ = [("new_blocks", C.c_int64), ("needed_blocks", C.c_int64), ("available_blocks", C.c_int64)]


class BlockCopy(C.Structure):
    _fields_ = [("src", C.c_int32), ("dst", C.c_int32)]


class Stats(C.Structure):
    _fields_ = [(name, C.c_int64) for name in (
        "capacity_blocks", "used_blocks", "cached_blocks", "free_blocks", "lookups", "query_tokens", "hit_tokens",
        "inserted_blocks", "deduplicated_blocks", "evicted_blocks", "copied_blocks")] + [
        ("usage", C.c_double), ("hit_rate", C.c_double)]


# KVCACHE_ABI_VERSION of the kvcache.h these declarations follow.
ABI_VERSION = 1

# Statuses used below (enum kvcache_status_code).
OK, UNKNOWN_SEQUENCE, INSUFFICIENT_BLOCKS, BUFFER_TOO_SMALL = 0, 4, 6, 8


class KVCacheError(Exception):
    pass


class KVCache:
    """One handle. Single-threaded, like the C handle it owns."""

    def __init__(self, lib_path, block_tokens=16, capacity_blocks=1024, namespace="", record_events=False):
        self.lib = lib = C.CDLL(lib_path)
        status = C.c_int32
        p = C.POINTER
        sigs = {
            "kvcache_version": (C.c_uint32, []),
            "kvcache_version_string": (C.c_char_p, []),
            "kvcache_abi_version": (C.c_uint32, []),
            "kvcache_status_name": (C.c_char_p, [status]),
            "kvcache_last_error": (C.c_char_p, []),
            "kvcache_config_init": (status, [p(Config)]),
            "kvcache_create_checked": (status, [C.c_uint32, C.c_size_t, p(Config), p(C.c_void_p)]),
            "kvcache_destroy": (status, [C.c_void_p]),
            "kvcache_add_sequence": (status, [C.c_void_p, C.c_int64, p(C.c_uint32), C.c_size_t, C.c_char_p,
                                              C.c_char_p, C.c_void_p, C.c_size_t]),
            "kvcache_lookup": (status, [C.c_void_p, C.c_int64, p(PrefixHit)]),
            "kvcache_allocate": (status, [C.c_void_p, C.c_int64, C.c_int64, C.c_int64, p(Allocation)]),
            "kvcache_commit": (status, [C.c_void_p, C.c_int64, C.c_int64]),
            "kvcache_append_tokens": (status, [C.c_void_p, C.c_int64, p(C.c_uint32), C.c_size_t]),
            "kvcache_free_sequence": (status, [C.c_void_p, C.c_int64]),
            "kvcache_fork": (status, [C.c_void_p, C.c_int64, C.c_int64]),
            "kvcache_block_table": (status, [C.c_void_p, C.c_int64, p(C.c_int32), C.c_size_t, p(C.c_size_t)]),
            "kvcache_drain_copies": (status, [C.c_void_p, p(BlockCopy), C.c_size_t, p(C.c_size_t)]),
            "kvcache_get_stats": (status, [C.c_void_p, p(Stats)]),
            "kvcache_validate": (status, [C.c_void_p]),
        }
        for name, (res, args) in sigs.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        config = Config()
        self._check(lib.kvcache_config_init(C.byref(config)))
        config.block_tokens, config.capacity_blocks = block_tokens, capacity_blocks
        config.key_namespace, config.record_events = namespace.encode(), record_events
        self.handle = C.c_void_p()
        # The ABI these declarations were written for: a library of another ABI refuses the handle.
        self._check(lib.kvcache_create_checked(ABI_VERSION, C.sizeof(Config), C.byref(config), C.byref(self.handle)))

    def _check(self, status, *allowed):
        if status != OK and status not in allowed:
            name = self.lib.kvcache_status_name(status).decode()
            raise KVCacheError(f"{name}: {self.lib.kvcache_last_error().decode()}")
        return status

    def close(self):
        if self.handle:
            self._check(self.lib.kvcache_destroy(self.handle))
            self.handle = None

    def add_sequence(self, seq, tokens, salt=""):
        arr = (C.c_uint32 * len(tokens))(*tokens)
        self._check(self.lib.kvcache_add_sequence(self.handle, seq, arr, len(tokens), salt.encode(), None, None, 0))

    def lookup(self, seq):
        hit = PrefixHit()
        self._check(self.lib.kvcache_lookup(self.handle, seq, C.byref(hit)))
        return hit.cached_tokens

    def allocate(self, seq, new_tokens, lookahead=0):
        """New blocks taken, or None when the pool cannot supply them (nothing changed)."""
        a = Allocation()
        if self._check(self.lib.kvcache_allocate(self.handle, seq, new_tokens, lookahead, C.byref(a)),
                       INSUFFICIENT_BLOCKS) == INSUFFICIENT_BLOCKS:
            return None
        return a.new_blocks

    def commit(self, seq, n):
        self._check(self.lib.kvcache_commit(self.handle, seq, n))

    def append(self, seq, tokens):
        arr = (C.c_uint32 * len(tokens))(*tokens)
        self._check(self.lib.kvcache_append_tokens(self.handle, seq, arr, len(tokens)))

    def free(self, seq):
        self._check(self.lib.kvcache_free_sequence(self.handle, seq))

    def fork(self, parent, child):
        self._check(self.lib.kvcache_fork(self.handle, parent, child))

    def block_table(self, seq):
        n = C.c_size_t()
        self._check(self.lib.kvcache_block_table(self.handle, seq, None, 0, C.byref(n)), BUFFER_TOO_SMALL)
        out = (C.c_int32 * n.value)()
        self._check(self.lib.kvcache_block_table(self.handle, seq, out, n.value, C.byref(n)))
        return list(out)

    def drain_copies(self):
        n = C.c_size_t()
        self._check(self.lib.kvcache_drain_copies(self.handle, None, 0, C.byref(n)), BUFFER_TOO_SMALL)
        out = (BlockCopy * n.value)()
        self._check(self.lib.kvcache_drain_copies(self.handle, out, n.value, C.byref(n)))
        return [(c.src, c.dst) for c in out]

    def stats(self):
        s = Stats()
        self._check(self.lib.kvcache_get_stats(self.handle, C.byref(s)))
        return {name: getattr(s, name) for name, _ in Stats._fields_}


def main():
    lib_path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KVCACHE_LIB", DEFAULT_LIB)
    cache = KVCache(lib_path, block_tokens=16, capacity_blocks=24, namespace="SmolLM2-135M")
    print(f"libkvcache_c {cache.lib.kvcache_version_string().decode()} (ABI {cache.lib.kvcache_abi_version()})")
    system = list(range(1000, 1048))
    a, b = system + list(range(5000, 5020)), system + list(range(7000, 7012))

    def prefill(seq, prompt):
        cache.add_sequence(seq, prompt)
        cached = cache.lookup(seq)
        assert cache.allocate(seq, len(prompt) - cached, lookahead=1) is not None
        cache.commit(seq, len(prompt) - cached)
        return cached

    assert prefill(1, a) == 0
    cached = prefill(2, b)
    print(f"request 2: {cached} of {len(b)} prompt tokens cached")
    assert cached == 48
    cache.fork(2, 3)
    cache.append(3, [99])
    assert cache.allocate(3, 1) is not None
    copies = cache.drain_copies()
    print(f"copy-on-write {copies}, request 3 block table {cache.block_table(3)}")
    assert len(copies) == 1 and cache.block_table(3)[-1] == copies[0][1]
    cache.add_sequence(4, a * 2)
    assert cache.allocate(4, 136, lookahead=400) is None  # refused, nothing changed
    try:
        cache.free(77)
        raise AssertionError("freeing an unknown sequence must fail")
    except KVCacheError as e:
        print(f"expected error: {e}")
    for seq in (1, 2, 3, 4):
        cache.free(seq)
    cache._check(cache.lib.kvcache_validate(cache.handle))
    stats = cache.stats()
    print(f"stats: hit rate {stats['hit_rate']:.3f}, {stats['cached_blocks']} cached blocks, "
          f"{stats['copied_blocks']} copied, {stats['used_blocks']} used")
    assert stats["used_blocks"] == 0 and stats["hit_tokens"] == 48
    cache.close()
    print("ok")


if __name__ == "__main__":
    main()
