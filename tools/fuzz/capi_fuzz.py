#!/usr/bin/env python3
"""Random C ABI calls with extreme arguments, for the fuzz harness (one process per seed).

    python3 tools/fuzz/capi_fuzz.py path/to/libkvcache_c.so SEED [CALLS]

Every argument is legal C: pointers are NULL or point at buffers at least as long as the count passed
(a too-short buffer is the caller's bug, as with memcpy), except the documented early refusals (a key
or token count past the library's limits is refused before the array is read). Counts, ids and
config fields take the extremes of their types. The library must answer every call with a status in
the header's enum, must leave out-parameters alone on failure, must say why in kvcache_last_error
(one line) and must pass kvcache_validate after every call. Exits 0 when all held, 1 with the first
broken contract otherwise (a trap or abort kills the process: the harness reports the signal).
"""
import ctypes as C
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "capi"))
from example import Allocation, BlockCopy, Config, Key, PrefixHit, Stats  # noqa: E402

I64 = [0, 1, 2, 15, 16, 17, 1000, -1, -2, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 48, 2 ** 48 + 1, 2 ** 62,
       2 ** 63 - 1, -2 ** 63]
SIZES = [0, 1, 2, 3, 16, 17, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1]
DOUBLES = [0.0, 1e-9, 2.7e-5, -1.0, float("nan"), float("inf"), -float("inf"), 1e308, 5e-324]
MAX_STATUS = 13


class Item(C.Structure):
    _fields_ = [("hash", Key), ("start", C.c_int64), ("length", C.c_int64)]


def bind(lib):
    s, p, v = C.c_int32, C.POINTER, C.c_void_p
    sigs = {
        "kvcache_status_name": (C.c_char_p, [s]), "kvcache_last_error": (C.c_char_p, []),
        "kvcache_config_init": (s, [p(Config)]), "kvcache_create": (s, [p(Config), p(v)]),
        "kvcache_destroy": (s, [v]),
        "kvcache_add_sequence": (s, [v, C.c_int64, v, C.c_size_t, C.c_char_p, C.c_char_p, v, C.c_size_t]),
        "kvcache_add_sequence_keys": (s, [v, C.c_int64, v, C.c_size_t, C.c_int64]),
        "kvcache_lookup": (s, [v, C.c_int64, v]), "kvcache_match_length": (s, [v, v, C.c_size_t, v]),
        "kvcache_allocate": (s, [v, C.c_int64, C.c_int64, C.c_int64, v]),
        "kvcache_commit": (s, [v, C.c_int64, C.c_int64]),
        "kvcache_append_tokens": (s, [v, C.c_int64, v, C.c_size_t]),
        "kvcache_append_count": (s, [v, C.c_int64, C.c_int64]),
        "kvcache_free_sequence": (s, [v, C.c_int64]), "kvcache_fork": (s, [v, C.c_int64, C.c_int64]),
        "kvcache_block_table": (s, [v, C.c_int64, v, C.c_size_t, v]),
        "kvcache_prompt_keys": (s, [v, C.c_int64, v, C.c_size_t, v]),
        "kvcache_computed_tokens": (s, [v, C.c_int64, v]), "kvcache_token_count": (s, [v, C.c_int64, v]),
        "kvcache_drain_copies": (s, [v, v, C.c_size_t, v]),
        "kvcache_drain_events": (s, [v, v, C.c_size_t, v, v, C.c_size_t, v]),
        "kvcache_get_stats": (s, [v, v]), "kvcache_free_block_count": (s, [v, v]),
        "kvcache_sequence_count": (s, [v, v]), "kvcache_reset": (s, [v]), "kvcache_validate": (s, [v]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def fail(msg):
    print(f"capi-fuzz: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    lib = C.CDLL(sys.argv[1])
    bind(lib)
    rng = random.Random(f"capi:{sys.argv[2]}")
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 3000

    def status_ok(st, call):
        if not 0 <= st <= MAX_STATUS:
            fail(f"{call}: status {st} is not a kvcache_status")
        if st != 0:
            text = lib.kvcache_last_error()
            if not text or b"\n" in text:
                fail(f"{call}: last error {text!r} is not one line")
        return st

    # A handle from an extreme config (must be refused cleanly or work), else a sane one.
    cfg = Config()
    lib.kvcache_config_init(C.byref(cfg))
    cfg.capacity_blocks = 64
    if rng.random() < 0.5:
        setattr(cfg, rng.choice(["block_tokens", "capacity_blocks", "eviction_policy"]),
                rng.choice(I64) if rng.random() < 0.8 else 0)
    if rng.random() < 0.3:
        cfg.recompute_seconds_per_token = rng.choice(DOUBLES)
    cfg.eviction_policy = max(-2 ** 31, min(2 ** 31 - 1, cfg.eviction_policy))
    handle = C.c_void_p()
    st = status_ok(lib.kvcache_create(C.byref(cfg), C.byref(handle)), "kvcache_create")
    if st != 0:
        if handle.value:
            fail("kvcache_create failed but wrote *out")
        cfg.block_tokens, cfg.capacity_blocks, cfg.eviction_policy = 4, 64, 0
        cfg.recompute_seconds_per_token = 2.7e-5
        status_ok(lib.kvcache_create(C.byref(cfg), C.byref(handle)), "kvcache_create")
    h = handle.value
    ids = [1, 2, 3, 0, -1, 2 ** 63 - 1, -2 ** 63]
    sentinel = 0x5A5A5A5A5A5A5A5A

    for i in range(calls):
        hh = h if rng.random() > 0.02 else None
        sid = rng.choice(ids)
        op = rng.randrange(16)
        n = rng.choice([0, 1, 3, 8, 40])
        if op == 0:
            toks = (C.c_uint32 * max(n, 1))(*[rng.choice([0, 1, 2, 7, 2 ** 32 - 1]) for _ in range(max(n, 1))])
            items = (Item * 2)()
            for it in items:
                it.hash.lo, it.hash.hi = rng.getrandbits(64), rng.getrandbits(64)
                it.start, it.length = rng.choice(I64), rng.choice(I64)
            salt = rng.choice([None, b"", b"x" * 40, b"\xff\xfe"])
            st = lib.kvcache_add_sequence(hh, sid, toks if rng.random() > 0.05 else None, n, salt, None,
                                          items, rng.choice([0, 0, 1, 2]))
            call = "kvcache_add_sequence"
        elif op == 1:
            absurd = rng.random() < 0.3
            count = rng.choice([2 ** 48 + 1, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1]) if absurd else n
            keys = (Key * max(n, 1))()
            for k in keys:
                k.lo, k.hi = rng.choice([0, 1, rng.getrandbits(64)]), rng.getrandbits(64)
            st = lib.kvcache_add_sequence_keys(hh, sid, keys, count, rng.choice(I64))
            if absurd and st == 0:
                fail(f"kvcache_add_sequence_keys accepted {count} keys")
            call = "kvcache_add_sequence_keys"
        elif op == 2:
            hit = PrefixHit(sentinel, sentinel)
            st = lib.kvcache_lookup(hh, sid, C.byref(hit))
            if st != 0 and (hit.cached_blocks != sentinel or hit.cached_tokens != sentinel):
                fail("kvcache_lookup wrote *out on failure")
            call = "kvcache_lookup"
        elif op == 3:
            a = Allocation()
            st = lib.kvcache_allocate(hh, sid, rng.choice(I64), rng.choice(I64), C.byref(a))
            call = "kvcache_allocate"
        elif op == 4:
            st = lib.kvcache_commit(hh, sid, rng.choice(I64))
            call = "kvcache_commit"
        elif op == 5:
            toks = (C.c_uint32 * max(n, 1))()
            st = lib.kvcache_append_tokens(hh, sid, toks, n)
            call = "kvcache_append_tokens"
        elif op == 6:
            st = lib.kvcache_append_count(hh, sid, rng.choice(I64))
            call = "kvcache_append_count"
        elif op == 7:
            st = lib.kvcache_free_sequence(hh, sid)
            call = "kvcache_free_sequence"
        elif op == 8:
            st = lib.kvcache_fork(hh, sid, rng.choice(ids))
            call = "kvcache_fork"
        elif op in (9, 10):
            cap = rng.choice([0, 1, 4, 64])
            length = C.c_size_t(sentinel)
            if op == 9:
                buf = (C.c_int32 * max(cap, 1))()
                st = lib.kvcache_block_table(hh, sid, buf if rng.random() > 0.05 else None, cap, C.byref(length))
                call = "kvcache_block_table"
            else:
                buf = (Key * max(cap, 1))()
                st = lib.kvcache_prompt_keys(hh, sid, buf, cap, C.byref(length))
                call = "kvcache_prompt_keys"
        elif op == 11:
            keys = (Key * max(n, 1))()
            out = C.c_size_t()
            st = lib.kvcache_match_length(hh, keys, n, C.byref(out))
            call = "kvcache_match_length"
        elif op == 12:
            out = C.c_int64()
            fn = rng.choice(["kvcache_computed_tokens", "kvcache_token_count"])
            st = getattr(lib, fn)(hh, sid, C.byref(out) if rng.random() > 0.05 else None)
            call = fn
        elif op == 13:
            cap = rng.choice([0, 2, 64])
            copies, count = (BlockCopy * max(cap, 1))(), C.c_size_t()
            st = lib.kvcache_drain_copies(hh, copies, cap, C.byref(count))
            call = "kvcache_drain_copies"
        elif op == 14:
            ev = (C.c_byte * 64 * 8)()
            keys, ne, nk = (Key * 64)(), C.c_size_t(), C.c_size_t()
            st = lib.kvcache_drain_events(hh, ev, rng.choice([0, 8]), C.byref(ne), keys, rng.choice([0, 64]), C.byref(nk))
            call = "kvcache_drain_events"
        else:
            fn = rng.choice(["kvcache_get_stats", "kvcache_free_block_count", "kvcache_sequence_count", "kvcache_reset"])
            if fn == "kvcache_reset":
                st = lib.kvcache_reset(hh)
            else:
                out = Stats()
                st = getattr(lib, fn)(hh, C.byref(out))
            call = fn
        status_ok(st, call)
        if hh is None and st != 1:
            fail(f"{call} with a NULL handle returned {st}")
        if lib.kvcache_validate(h) != 0:
            fail(f"after {call} (call {i}): {lib.kvcache_last_error()!r}")
    lib.kvcache_destroy(h)
    print(f"capi-fuzz: {calls} calls, every contract held")


if __name__ == "__main__":
    main()
