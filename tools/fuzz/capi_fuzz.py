#!/usr/bin/env python3
"""Random C ABI calls with extreme arguments, for the fuzz harness (one process per seed).

    python3 tools/fuzz/capi_fuzz.py path/to/libkvcache_c.so SEED [CALLS]

The core calls (kvcache_*), then the tier manager's (kvcache_tiers_*, with a disk tier in a temporary
folder, and the tier leg through a cache of its geometry: attach, admit, record_stored, detach), the hybrid cache's (kvcache_hybrid_*) and the metrics text (kvcache_metrics_*), CALLS each,
with NULL and wrong-kind handles (a live handle of another kind) among them; then kvcache_create_from_file
on hostile YAML files (garbage bytes, deep nesting, huge and non-finite numbers, wrong types).

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
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "capi"))
from example import Allocation, BlockCopy, Config, Key, PrefixHit, Stats  # noqa: E402

I64 = [0, 1, 2, 15, 16, 17, 1000, -1, -2, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 48, 2 ** 48 + 1, 2 ** 62,
       2 ** 63 - 1, -2 ** 63]
SIZES = [0, 1, 2, 3, 16, 17, 2 ** 62, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1]
DOUBLES = [0.0, 1e-9, 2.7e-5, -1.0, float("nan"), float("inf"), -float("inf"), 1e308, 5e-324]
MAX_STATUS = 14   # the core's statuses; the tier calls may also return KVCACHE_ERR_TIER_SYSTEM (15)
TIER_SYSTEM = 15


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
        "kvcache_get_stats": (s, [v, v]), "kvcache_free_block_count": (s, [v, v]), "kvcache_block_tokens": (s, [v, v]),
        "kvcache_sequence_count": (s, [v, v]), "kvcache_reset": (s, [v]), "kvcache_validate": (s, [v]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def drain_events(lib, fn, handle, rng):
    """kvcache_drain_events or kvcache_tiers_take_events into buffers of 0 or 8 events and 0 or 64 keys."""
    ev = (C.c_byte * 64 * 8)()
    keys, ne, nk = (Key * 64)(), C.c_size_t(), C.c_size_t()
    return getattr(lib, fn)(handle, ev, rng.choice([0, 8]), C.byref(ne), keys, rng.choice([0, 64]), C.byref(nk))


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
            call = "kvcache_drain_events"
            st = drain_events(lib, call, hh, rng)
        else:
            fn = rng.choice(["kvcache_get_stats", "kvcache_free_block_count", "kvcache_block_tokens", "kvcache_sequence_count",
                             "kvcache_reset"])
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
    tiers, folder = tier_calls(lib, rng, calls, status_ok, h)
    hybrid = hybrid_calls(lib, rng, calls, status_ok, h, tiers)
    metrics_calls(lib, rng, calls, status_ok, h, tiers)
    config_files(lib, rng, max(1, calls // 100), status_ok, folder)
    # Destroying through the wrong kind of handle is refused and leaves the handle usable.
    for handle, destroy in ((h, "kvcache_tiers_destroy"), (tiers, "kvcache_hybrid_destroy"), (hybrid, "kvcache_destroy")):
        if status_ok(getattr(lib, destroy)(handle), destroy) != INVALID_ARGUMENT:
            fail(f"{destroy} of another kind of handle was not refused")
    for destroy, handle in (("kvcache_destroy", h), ("kvcache_tiers_destroy", tiers), ("kvcache_hybrid_destroy", hybrid)):
        if status_ok(getattr(lib, destroy)(handle), destroy) != 0:
            fail(f"{destroy} failed")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"capi-fuzz: {calls} calls each on the cache, the tiers, the hybrid cache and the metrics, {max(1, calls // 100)} "
          "configuration files, every contract held")


NULL_HANDLE, NULL_POINTER, INVALID_ARGUMENT, BUFFER_TOO_SMALL = 1, 2, 3, 8
U64 = [0, 1, 2, 3, 2 ** 32, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1]


class TiersConfig(C.Structure):
    _fields_ = [(n, C.c_int64) for n in ("layers", "kv_heads", "head_dim", "dtype_bytes", "block_tokens",
                                          "device_blocks", "host_blocks")] \
        + [("disk_directory", C.c_char_p), ("disk_capacity_bytes", C.c_int64), ("layer_groups", C.c_int64),
           ("workers", C.c_int64), ("spill_watermark", C.c_double), ("record_events", C.c_bool),
           ("lock_host_memory", C.c_bool), ("synchronous_eviction_copies", C.c_bool),
           ("device_to_host", C.c_void_p), ("host_to_device", C.c_void_p), ("copy_context", C.c_void_p)]


class TierLookup(C.Structure):
    _fields_ = [(n, C.c_int64) for n in ("device_blocks", "host_blocks", "disk_blocks", "load_blocks")]


class HybridPlan(C.Structure):
    _fields_ = [("hit_tokens", C.c_int64), ("restore_slot", C.c_int32), ("raw_tokens", C.c_int64),
                ("save_branch_at", C.c_int64), ("generation", C.c_uint64)]


def bind_more(lib):
    """The signatures of the tier, hybrid and metrics calls (pointers as void *)."""
    s, v, z, i64, u64, b = C.c_int32, C.c_void_p, C.c_size_t, C.c_int64, C.c_uint64, C.c_bool
    sigs = {
        "kvcache_abi_version": (C.c_uint32, []),
        "kvcache_tiers_config_init": (s, [v]), "kvcache_tiers_create_checked": (s, [C.c_uint32, z, v, v]),
        "kvcache_tiers_destroy": (s, [v]), "kvcache_tiers_lookup": (s, [v, v, z, i64, i64, v, z, v]),
        "kvcache_tiers_loadable": (s, [v, Key, v]), "kvcache_tiers_prepare_load": (s, [v, v, z, z, v, z, v]),
        "kvcache_tiers_is_complete": (s, [v, u64, v]), "kvcache_tiers_failed_blocks": (s, [v, u64, v, z, v]),
        "kvcache_tiers_complete_load": (s, [v, u64, v, z, v]), "kvcache_tiers_prepare_store": (s, [v, v, v, z, v, v]),
        "kvcache_tiers_complete_store": (s, [v, u64, v, z, v]), "kvcache_tiers_copy_done": (s, [v, u64, b]),
        "kvcache_tiers_touch": (s, [v, v, z, v]), "kvcache_tiers_will_evict": (s, [v, C.c_int32, Key]),
        "kvcache_tiers_disk_put": (s, [v, Key, v, v, z, v]), "kvcache_tiers_disk_get": (s, [v, Key, v, z, v]),
        "kvcache_tiers_disk_contains": (s, [v, v, z, v]), "kvcache_tiers_take_events": (s, [v, v, z, v, v, z, v]),
        "kvcache_tiers_get_stats": (s, [v, v]), "kvcache_tiers_device_block": (s, [v, C.c_int32, v, v]),
        "kvcache_tiers_validate": (s, [v]),
        "kvcache_tiers_attach": (s, [v, v]), "kvcache_tiers_detach": (s, [v]),
        "kvcache_tiers_admit": (s, [v, v, i64, i64, v]), "kvcache_tiers_record_stored": (s, [v, v, i64, i64]),
        "kvcache_hybrid_create": (s, [C.c_char_p, i64, b, b, v]), "kvcache_hybrid_destroy": (s, [v]),
        "kvcache_hybrid_plan_prefill": (s, [v, v, z, v]), "kvcache_hybrid_commit": (s, [v, v, z, v, b, b]),
        "kvcache_hybrid_drain_events": (s, [v, v, z, v]), "kvcache_hybrid_get_stats": (s, [v, v]),
        "kvcache_hybrid_validate": (s, [v]),
        "kvcache_metrics_text": (s, [v, v, z, v]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


def keys_array(rng, n):
    """n keys (at least one slot), a few of them the reserved zero key, most from a small set (so they hit)."""
    keys = (Key * max(n, 1))()
    for k in keys:
        k.lo, k.hi = (0, 0) if rng.random() < 0.03 else (rng.randrange(1, 24), rng.choice([0, 7]))
    return keys


def pick_handle(rng, own, others):
    """Mostly the call's own handle; sometimes NULL or a live handle of another kind."""
    r = rng.random()
    if r < 0.03:
        return None, NULL_HANDLE
    if r < 0.06 and others:
        return rng.choice(others), INVALID_ARGUMENT
    return own, None


def tier_calls(lib, rng, calls, status_ok, cache):
    """kvcache_tiers_*: an extreme config refused cleanly (or opened), then random calls with extreme
    arguments on a small tier manager with host and disk tiers; validate after each. Returns the handle."""
    bind_more(lib)
    folder = tempfile.mkdtemp(prefix="capi-fuzz-")
    cfg = TiersConfig()
    status_ok(lib.kvcache_tiers_config_init(C.byref(cfg)), "kvcache_tiers_config_init")

    def sane():
        cfg.layers, cfg.kv_heads, cfg.head_dim, cfg.dtype_bytes, cfg.block_tokens = 2, 1, 8, 2, 2
        cfg.device_blocks, cfg.host_blocks, cfg.layer_groups, cfg.workers = 16, 8, 1, 2
        cfg.disk_directory, cfg.disk_capacity_bytes, cfg.spill_watermark = os.path.join(folder, "disk").encode(), 1 << 20, 0.9
        cfg.synchronous_eviction_copies, cfg.record_events = True, rng.random() < 0.5
    sane()
    field = rng.choice(["layers", "kv_heads", "head_dim", "dtype_bytes", "block_tokens", "device_blocks",
                        "host_blocks", "disk_capacity_bytes", "layer_groups", "workers", "spill_watermark",
                        "disk_directory"])
    if field == "spill_watermark":
        cfg.spill_watermark = rng.choice(DOUBLES)
    elif field == "disk_directory":
        cfg.disk_directory = rng.choice([b"\xff\xfe", b"", b"/proc/kvcache-fuzz-cannot-exist"])
    else:
        setattr(cfg, field, rng.choice(I64))
    out = C.c_void_p(0x5A5A)
    abi, size = lib.kvcache_abi_version(), C.sizeof(TiersConfig)
    if rng.random() < 0.1:
        abi, size = rng.choice([(abi + 1, size), (abi, size - 8), (abi, 2 ** 64 - 1)])
    st = lib.kvcache_tiers_create_checked(abi, size, C.byref(cfg), C.byref(out))
    if st not in (0, INVALID_ARGUMENT, NULL_POINTER, TIER_SYSTEM, 14):
        fail(f"kvcache_tiers_create_checked({field}={getattr(cfg, field)!r}) returned {st}")
    if st != 0:
        if not lib.kvcache_last_error() or b"\n" in lib.kvcache_last_error():
            fail(f"kvcache_tiers_create_checked: last error {lib.kvcache_last_error()!r} is not one line")
        if out.value != 0x5A5A:
            fail("kvcache_tiers_create_checked failed but wrote *out")
        sane()
        st = lib.kvcache_tiers_create_checked(lib.kvcache_abi_version(), C.sizeof(TiersConfig), C.byref(cfg), C.byref(out))
        if st != 0:
            fail(f"kvcache_tiers_create_checked of a sane config returned {st}: {lib.kvcache_last_error()!r}")
    t = out.value
    ids = [0, 1, 2, 3, 2 ** 63, 2 ** 64 - 1]   # load and store ids: the small ones are live now and then
    # A cache of the tiers' geometry for the tier leg (attach, admit, record_stored, detach).
    leg_cfg = Config()
    lib.kvcache_config_init(C.byref(leg_cfg))
    leg_cfg.block_tokens, leg_cfg.capacity_blocks = cfg.block_tokens, min(cfg.device_blocks, 64)
    leg_handle = C.c_void_p()
    status_ok(lib.kvcache_create(C.byref(leg_cfg), C.byref(leg_handle)), "kvcache_create")
    leg = leg_handle.value
    prompts = {}   # the leg cache's live sequences: their prompt lengths
    block_bytes = 2 * 2 * 1 * 8 * 2 * 2
    sentinel_tier = 0x5A5A5A5A5A5A5A5A
    for i in range(calls):
        hh, expect = pick_handle(rng, t, [cache])
        n = rng.choice([0, 1, 2, 5, 16])
        keys = keys_array(rng, n)
        huge = rng.choice([2 ** 63, 2 ** 64 - 1])
        op = rng.randrange(21)
        if op == 0:
            cap = rng.choice([0, 1, 16])
            locs, res = (C.c_int32 * max(cap, 1))(), TierLookup()
            count = huge if rng.random() < 0.1 else n
            st = lib.kvcache_tiers_lookup(hh, keys if rng.random() > 0.05 else None, count, rng.choice(I64[:9]),
                                          rng.choice(I64), locs if cap else None, cap, C.byref(res))
            call = "kvcache_tiers_lookup"
        elif op == 1:
            where = C.c_int32()
            st = lib.kvcache_tiers_loadable(hh, keys[0], C.byref(where) if rng.random() > 0.05 else None)
            call = "kvcache_tiers_loadable"
        elif op == 2:
            dst = (C.c_int32 * max(n, 1))(*[rng.choice([0, 1, 5, 15, 16, -1, 2 ** 31 - 1]) for _ in range(max(n, 1))])
            lid = C.c_uint64()
            first = rng.choice([0, 0, 1, 3, 2 ** 63, 2 ** 64 - 1]) if n else 0
            nb = rng.choice([0, n - first if 0 <= n - first <= n else 0, huge if rng.random() < 0.1 else 0])
            st = lib.kvcache_tiers_prepare_load(hh, keys, n, first, dst if rng.random() > 0.05 else None, nb, C.byref(lid))
            if st == 0:
                ids.append(lid.value)
            call = "kvcache_tiers_prepare_load"
        elif op == 3:
            done = C.c_bool()
            st = lib.kvcache_tiers_is_complete(hh, rng.choice(ids), C.byref(done))
            call = "kvcache_tiers_is_complete"
        elif op in (4, 5, 6):
            cap = rng.choice([0, 1, 16])
            buf, count = (C.c_uint8 * max(cap, 1))(), C.c_size_t()
            fn = ["kvcache_tiers_failed_blocks", "kvcache_tiers_complete_load", "kvcache_tiers_complete_store"][op - 4]
            st = getattr(lib, fn)(hh, rng.choice(ids), buf if cap else None, cap, C.byref(count))
            call = fn
        elif op == 7:
            blocks = (C.c_int32 * max(n, 1))(*[rng.choice([0, 1, 7, 15, 16, -1]) for _ in range(max(n, 1))])
            parent = Key(rng.randrange(0, 24), 0)
            sid = C.c_uint64()
            count = huge if rng.random() < 0.05 else n
            st = lib.kvcache_tiers_prepare_store(hh, blocks, keys, count, C.byref(parent) if rng.random() < 0.5 else None,
                                                 C.byref(sid))
            if st == 0:
                ids.append(sid.value)
            call = "kvcache_tiers_prepare_store"
        elif op == 8:
            st = lib.kvcache_tiers_copy_done(hh, rng.choice(U64), rng.random() < 0.5)
            call = "kvcache_tiers_copy_done"
        elif op == 9:
            found = C.c_size_t()
            st = lib.kvcache_tiers_touch(hh, keys if rng.random() > 0.05 else None, huge if rng.random() < 0.05 else n,
                                         C.byref(found) if rng.random() < 0.7 else None)
            call = "kvcache_tiers_touch"
        elif op == 10:
            st = lib.kvcache_tiers_will_evict(hh, rng.choice([0, 3, 15, 16, -1, 2 ** 31 - 1, -2 ** 31]), keys[0])
            call = "kvcache_tiers_will_evict"
        elif op in (11, 12):
            length = rng.choice([0, 1, block_bytes - 1, block_bytes, block_bytes + 1, huge])
            buf, flag = (C.c_uint8 * (block_bytes + 1))(), C.c_bool()
            pointer = buf if rng.random() > 0.05 else None
            if op == 11:
                parent = Key(rng.randrange(0, 24), 0)
                st = lib.kvcache_tiers_disk_put(hh, keys[0], C.byref(parent) if rng.random() < 0.5 else None, pointer,
                                                length, C.byref(flag))
                call = "kvcache_tiers_disk_put"
            else:
                st = lib.kvcache_tiers_disk_get(hh, keys[0], pointer, length, C.byref(flag))
                call = "kvcache_tiers_disk_get"
        elif op == 13:
            lead = C.c_size_t()
            st = lib.kvcache_tiers_disk_contains(hh, keys, huge if rng.random() < 0.05 else n, C.byref(lead))
            call = "kvcache_tiers_disk_contains"
        elif op == 14:
            call = "kvcache_tiers_take_events"
            st = drain_events(lib, call, hh, rng)
        elif op == 15:
            stats = (C.c_int64 * 64)()
            st = lib.kvcache_tiers_get_stats(hh, stats if rng.random() > 0.05 else None)
            call = "kvcache_tiers_get_stats"
        elif op == 16:
            data, length = C.c_void_p(), C.c_size_t()
            st = lib.kvcache_tiers_device_block(hh, rng.choice([0, 15, 16, -1]), C.byref(data), C.byref(length))
            call = "kvcache_tiers_device_block"
        elif op == 17:
            st = lib.kvcache_tiers_attach(leg if rng.random() > 0.1 else cache, hh)
            call = "kvcache_tiers_attach"
        elif op == 18:
            # A sequence of the leg cache (added now and then, freed now and then), admitted with extreme
            # kv_tokens; on failure the admission must be untouched.
            seq = rng.choice([1, 2, 3, -1, 2 ** 63 - 1])
            if seq not in prompts and rng.random() < 0.8:
                prompts[seq] = rng.choice([1, 2, 7, 40])
                toks = (C.c_uint32 * 40)(*[rng.randrange(0, 6) for _ in range(40)])
                status_ok(lib.kvcache_add_sequence(leg, seq, toks, prompts[seq], None, None, None, 0),
                          "kvcache_add_sequence")
            elif seq in prompts and rng.random() < 0.3:
                status_ok(lib.kvcache_free_sequence(leg, seq), "kvcache_free_sequence")
                del prompts[seq]
            res = (C.c_int64 * 6)(*[sentinel_tier] * 6)
            kv = prompts.get(seq, 40) if rng.random() < 0.7 else rng.choice(I64)
            st = lib.kvcache_tiers_admit(leg, hh, seq, kv, res if rng.random() > 0.05 else None)
            if st != 0 and list(res) != [sentinel_tier] * 6:
                fail(f"kvcache_tiers_admit failed ({st}) but wrote its admission")
            if st == 0:   # the engine computes what is left and commits it
                status_ok(lib.kvcache_commit(leg, seq, res[2]), "kvcache_commit")
            call = "kvcache_tiers_admit"
        elif op == 19:
            st = lib.kvcache_tiers_record_stored(leg, hh, rng.choice([1, 2, 3, -1]), rng.choice(I64))
            call = "kvcache_tiers_record_stored"
        else:
            st, expect = lib.kvcache_tiers_detach(leg if rng.random() > 0.05 else None), None
            call = "kvcache_tiers_detach"
        if not (0 <= st <= MAX_STATUS or st == TIER_SYSTEM):
            fail(f"{call}: status {st} is not a kvcache_status")
        if st != 0 and (not lib.kvcache_last_error() or b"\n" in lib.kvcache_last_error()):
            fail(f"{call}: last error {lib.kvcache_last_error()!r} is not one line")
        if expect is not None and st != expect:
            fail(f"{call} with a {'NULL' if hh is None else 'wrong-kind'} handle returned {st}, not {expect}")
        if lib.kvcache_tiers_validate(t) != 0 or lib.kvcache_validate(leg) != 0:
            fail(f"after {call} (call {i}): {lib.kvcache_last_error()!r}")
    # Complete what is still pending so that destroy does not wait on copies nobody reports.
    for lid in ids[6:]:
        buf, count = (C.c_uint8 * 64)(), C.c_size_t()
        lib.kvcache_tiers_complete_load(t, lid, buf, 64, C.byref(count))
        lib.kvcache_tiers_complete_store(t, lid, buf, 64, C.byref(count))
    # The leg cache goes first now and then: either destroy order is safe.
    if rng.random() < 0.5:
        status_ok(lib.kvcache_destroy(leg), "kvcache_destroy")
    else:
        status_ok(lib.kvcache_tiers_detach(leg) if rng.random() < 0.5 else 0, "kvcache_tiers_detach")
        status_ok(lib.kvcache_destroy(leg), "kvcache_destroy")
    return t, folder


def hybrid_calls(lib, rng, calls, status_ok, cache, tiers):
    """kvcache_hybrid_*: an extreme create refused cleanly (or opened), then plans and commits with
    extreme lengths, stale plans and bad branch points; validate after each. Returns the handle."""
    out = C.c_void_p(0x5A5A)
    model = rng.choice([b"hybrid-7b", b"jamba-1.5-mini", b"nemotron-h-8b", b"", b"no-such-model", b"\xff", None])
    capacity = rng.choice(I64)
    st = status_ok(lib.kvcache_hybrid_create(model, capacity, rng.random() < 0.5, rng.random() < 0.2, C.byref(out)),
                   "kvcache_hybrid_create")
    if st != 0:
        if out.value != 0x5A5A:
            fail("kvcache_hybrid_create failed but wrote *out")
        if status_ok(lib.kvcache_hybrid_create(b"hybrid-7b", 1 << 30, True, False, C.byref(out)), "kvcache_hybrid_create"):
            fail(f"kvcache_hybrid_create of a sane config failed: {lib.kvcache_last_error()!r}")
    hy = out.value
    plans = [HybridPlan(0, -1, 0, -1, 0)]
    for i in range(calls):
        hh, expect = pick_handle(rng, hy, [cache, tiers])
        n = rng.choice([0, 1, 5, 40, 300])
        toks = (C.c_int32 * max(n, 1))(*[rng.choice([0, 1, 2, 3, -1, 2 ** 31 - 1]) for _ in range(max(n, 1))])
        count = rng.choice([2 ** 30 + 1, 2 ** 63, 2 ** 64 - 1]) if rng.random() < 0.05 else n
        op = rng.randrange(5)
        if op == 0:
            plan = HybridPlan()
            st = lib.kvcache_hybrid_plan_prefill(hh, toks if rng.random() > 0.05 else None, count,
                                                 C.byref(plan) if rng.random() > 0.05 else None)
            if st == 0:
                plans.append(plan)
            call = "kvcache_hybrid_plan_prefill"
        elif op == 1:
            plan = rng.choice(plans)
            if rng.random() < 0.2:
                plan = HybridPlan(plan.hit_tokens, plan.restore_slot, plan.raw_tokens,
                                  rng.choice([-2, -1, 0, 1, n, n + 1, 2 ** 62]), plan.generation)
            st = lib.kvcache_hybrid_commit(hh, toks if rng.random() > 0.05 else None, count, C.byref(plan),
                                           rng.random() < 0.7, rng.random() < 0.7)
            call = "kvcache_hybrid_commit"
        elif op == 2:
            cap = rng.choice([0, 1, 16])
            ev, cnt = (C.c_int64 * 2 * 16)(), C.c_size_t()
            st = lib.kvcache_hybrid_drain_events(hh, ev if cap else None, cap, C.byref(cnt))
            call = "kvcache_hybrid_drain_events"
        elif op == 3:
            stats = (C.c_int64 * 16)()
            st = lib.kvcache_hybrid_get_stats(hh, stats if rng.random() > 0.05 else None)
            call = "kvcache_hybrid_get_stats"
        else:
            st = lib.kvcache_hybrid_validate(hh)
            call = "kvcache_hybrid_validate"
        status_ok(st, call)
        if expect is not None and st != expect:
            fail(f"{call} with a {'NULL' if hh is None else 'wrong-kind'} handle returned {st}, not {expect}")
        if lib.kvcache_hybrid_validate(hy) != 0:
            fail(f"after {call} (call {i}): {lib.kvcache_last_error()!r}")
    return hy


YAML_VALUES = [b"1", b"-1", b"0", b"1e400", b"-1e400", b".nan", b".inf", b"nan", b"9" * 40, b"0x10", b"true",
               b"[1, 2]", b"{a: 1}", b"~", b"''", b"\"\\xff\"", b"\xff\xfe", b"&a 1", b"*a", b"!!binary AAAA"]
YAML_KEYS = [b"capacity_blocks", b"block_tokens", b"policy", b"first_use_weight", b"recompute_seconds_per_token",
             b"tiers", b"events", b"namespace", b"prefix_caching", b"\xff", b"", b"capacity_blocks.x"]


def config_files(lib, rng, count, status_ok, folder):
    """kvcache_create_from_file on random and hostile YAML: OK (a cache that validates) or INVALID_ARGUMENT
    with one line of error, never a crash; deep nesting must not exhaust the stack."""
    fn = lib.kvcache_create_from_file
    fn.restype, fn.argtypes = C.c_int32, [C.c_char_p, C.c_void_p]
    path = os.path.join(folder, "fuzz.yaml")
    for i in range(count):
        kind = rng.randrange(4)
        if kind == 0:
            text = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 16, 300])))
        elif kind == 1:
            depth = rng.choice([10, 1000, 100000])
            text = b"capacity_blocks: 8\nx: " + (b"[" * depth if rng.random() < 0.5 else b"{a: " * depth)
        else:
            lines = [b"capacity_blocks: " + rng.choice([b"8", b"64"] + YAML_VALUES)]
            for _ in range(rng.randrange(6)):
                lines.append(rng.choice(YAML_KEYS) + b": " + rng.choice(YAML_VALUES + [b"lru", b"marking", b"pgdsf"]))
            text = b"\n".join(lines) + b"\n"
        with open(path, "wb") as f:
            f.write(text)
        out = C.c_void_p(0x5A5A)
        st = status_ok(fn(path.encode(), C.byref(out)), "kvcache_create_from_file")
        if st == 0:
            if lib.kvcache_validate(out.value) != 0:
                fail(f"a cache from {text[:80]!r} does not validate")
            lib.kvcache_destroy(out.value)
        elif st != INVALID_ARGUMENT or out.value != 0x5A5A:
            fail(f"kvcache_create_from_file({text[:80]!r}) returned {st} or wrote *out")
    if os.path.exists(path):
        os.unlink(path)


def metrics_calls(lib, rng, calls, status_ok, cache, tiers):
    """kvcache_metrics_text with every buffer size around the text's, NULL buffers and wrong handles:
    *length is always the text's length, the text is written whole with its NUL or not at all."""
    for i in range(max(1, calls // 10)):
        hh, expect = pick_handle(rng, cache, [tiers])
        need = C.c_size_t(2 ** 64 - 1)
        st = status_ok(lib.kvcache_metrics_text(hh, None, 0, C.byref(need)), "kvcache_metrics_text")
        if expect is not None:
            if st != expect:
                fail(f"kvcache_metrics_text with a bad handle returned {st}, not {expect}")
            continue
        if st != BUFFER_TOO_SMALL or need.value == 2 ** 64 - 1:  # capacity 0: the size, nothing written
            fail(f"kvcache_metrics_text sizing returned {st}, length {need.value}")
        cap = rng.choice([0, 1, need.value - 1, need.value, need.value + 1, need.value + 100])
        buf = (C.c_char * (max(cap, 1)))(*([b"#"] * max(cap, 1)))
        length = C.c_size_t(2 ** 64 - 1)
        st = status_ok(lib.kvcache_metrics_text(hh, buf if rng.random() > 0.05 or cap == 0 else None, cap,
                                                C.byref(length) if rng.random() > 0.05 else None), "kvcache_metrics_text")
        if st == 0:
            if cap < need.value + 1 or buf.raw[need.value:need.value + 1] != b"\0":
                fail(f"kvcache_metrics_text wrote {need.value} bytes into {cap} or without its NUL")
        elif st == BUFFER_TOO_SMALL:
            if cap >= need.value + 1 or (cap > 0 and buf.raw[:1] != b"#"):
                fail(f"kvcache_metrics_text refused a buffer of {cap} for {need.value} bytes, or wrote into it")
        elif st != NULL_POINTER:
            fail(f"kvcache_metrics_text returned {st}")


if __name__ == "__main__":
    main()
