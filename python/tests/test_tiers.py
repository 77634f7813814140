"""TierManager over kvcache_tiers_*: real bytes through host and disk, a random operation sequence
checked against a model of which keys the tiers hold, refused calls that change nothing, and an engine
whose copies go through Python callables with completion tokens (at once and deferred)."""
import ctypes as C
import random
import threading

import numpy as np
import pytest

import kvcache

GEOMETRY = dict(layers=2, kv_heads=1, head_dim=8, dtype_bytes=2, block_tokens=4)  # 256-byte blocks


def key(t, j):
    return (t * 100 + j + 1, 0xC0FFEE)


def block_bytes_of(k, n):
    return np.random.default_rng(k[0] * 31 + k[1]).integers(0, 256, n, dtype=np.uint8)


@pytest.fixture
def tiers(tmp_path):
    with kvcache.TierManager(**GEOMETRY, device_blocks=8, host_blocks=4, disk_directory=str(tmp_path / "disk"),
                             disk_capacity_bytes=1 << 22, layer_groups=2, workers=1, spill_watermark=1.0,
                             record_events=True, synchronous_eviction_copies=True) as t:
        yield t


def store(t, blocks, keys, first_parent=None):
    for b, k in zip(blocks, keys):
        t.device_block(b)[:] = block_bytes_of(k, t.block_bytes)
    return t.complete_store(t.prepare_store(blocks, keys, first_parent))


def test_bytes_survive_host_and_disk(tiers):
    assert tiers.block_bytes == 2 * 2 * 1 * 8 * 2 * 4
    keys = [key(1, j) for j in range(6)]
    # One store can fill only the free or evictable host slots (those being filled are pinned).
    stored, ok = store(tiers, [0, 1, 2, 3, 4, 5], keys)
    assert stored == 4 and list(ok) == [True] * 4 + [False] * 2
    stored, ok = store(tiers, [4, 5], keys[4:], first_parent=keys[3])
    assert stored == 2 and ok.all()
    # Six blocks through a four-block host tier: the two coldest went to disk.
    plan = tiers.lookup(keys)
    assert (plan.host_blocks, plan.disk_blocks, plan.load_blocks) == (4, 2, 6)
    assert list(plan.locations) == [kvcache.Tier.DISK] * 2 + [kvcache.Tier.HOST] * 4
    for b in range(8):
        tiers.device_block(b)[:] = 0
    prefix, ok = tiers.complete_load(tiers.prepare_load(keys, 0, [7, 6, 5, 4, 3, 2]))
    assert prefix == 6 and ok.all()
    for b, k in zip([7, 6, 5, 4, 3, 2], keys):
        assert np.array_equal(tiers.device_block(b), block_bytes_of(k, tiers.block_bytes))
    s = tiers.stats()
    assert s.host.stored_blocks >= 6 and s.disk.loaded_blocks == 2 and s.host.hits == 4 and s.disk.hits == 2
    events = tiers.take_events()
    assert {e.tier for e in events} == {kvcache.Tier.HOST, kvcache.Tier.DISK}
    assert tiers.take_events() == []
    tiers.validate()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_operations_keep_the_model(tiers, seed):
    rng = random.Random(seed)
    holds = {}          # device block -> key, as the engine knows it
    somewhere = set()   # keys stored at least once: on host or disk (the disk never fills here)
    for _ in range(150):
        t, n = rng.randrange(4), rng.randint(1, 4)
        keys = [key(t, j) for j in range(n)]
        op = rng.randrange(5)
        if op == 0:
            blocks = rng.sample(range(8), n)
            stored, ok = store(tiers, blocks, keys)
            assert ok.all() and stored == n
            holds.update(zip(blocks, keys))
            somewhere.update(keys)
        elif op == 1:
            plan = tiers.lookup(keys)
            expected = 0
            while expected < n and keys[expected] in somewhere:
                expected += 1
            assert plan.load_blocks == expected
        elif op == 2:
            first = rng.randrange(n)
            dst = rng.sample(range(8), n - first)
            prefix, ok = tiers.complete_load(tiers.prepare_load(keys, first, dst))
            expected = 0
            while first + expected < n and keys[first + expected] in somewhere:
                expected += 1
            assert prefix == expected
            for i, b in enumerate(dst):
                holds.pop(b, None)
                if i < prefix:
                    holds[b] = keys[first + i]
                    assert np.array_equal(tiers.device_block(b), block_bytes_of(keys[first + i], tiers.block_bytes))
        elif op == 3:
            assert tiers.touch(keys) <= n
            assert (tiers.loadable(keys[0]) is not None) == (keys[0] in somewhere)
        elif holds:
            b = rng.choice(sorted(holds))
            tiers.will_evict(b, holds.pop(b))
        tiers.validate()


def test_refused_calls_change_nothing(tiers):
    store(tiers, [0, 1], [key(2, 0), key(2, 1)])
    before = tiers.stats()
    with pytest.raises(kvcache.InvalidArgumentError, match="kvcache_tiers_prepare_load"):
        tiers.prepare_load([key(2, 0)], 1, [3])
    with pytest.raises(kvcache.InvalidArgumentError):
        tiers.prepare_store([8], [key(2, 5)])  # a block outside the device pool
    with pytest.raises(kvcache.InvalidArgumentError):
        tiers.prepare_store([1], [(0, 0)])     # the reserved zero key
    with pytest.raises(kvcache.InvalidArgumentError):
        tiers.complete_load(12345)
    with pytest.raises(kvcache.InvalidArgumentError):
        tiers.copy_done(999)
    with pytest.raises(kvcache.InvalidArgumentError):
        tiers.disk_put(key(2, 9), b"short")
    assert tiers.stats() == before
    tiers.close()
    with pytest.raises(kvcache.ClosedCacheError):
        tiers.stats()


def test_disk_put_get_contains(tmp_path):
    with kvcache.TierManager(**GEOMETRY, device_blocks=1, disk_directory=str(tmp_path / "d"),
                             disk_capacity_bytes=1 << 20) as t:
        page = np.arange(t.block_bytes, dtype=np.uint8)
        assert t.disk_put(key(3, 0), page) and not t.disk_put(key(3, 0), page.tobytes())
        assert t.disk_contains([key(3, 0), key(3, 1)]) == 1
        assert np.array_equal(t.disk_get(key(3, 0)), page)
        assert t.disk_get(key(3, 1)) is None
    # The records outlive the process's handle: a new manager over the same folder finds them.
    with kvcache.TierManager(**GEOMETRY, device_blocks=1, disk_directory=str(tmp_path / "d"),
                             disk_capacity_bytes=1 << 20) as t:
        assert np.array_equal(t.disk_get(key(3, 0)), page)


class Engine:
    """Device memory owned by "the engine"; copies arrive through the callables with tokens."""

    def __init__(self, blocks, block_bytes, deferred):
        self.memory = np.zeros((blocks, block_bytes), np.uint8)
        self.deferred, self.pending, self.lock = deferred, [], threading.Lock()
        self.tiers = None

    def copy(self, to_host, block, offset, length, host, token):
        dev = self.memory[block].ctypes.data + offset

        def apply():
            C.memmove(host, dev, length) if to_host else C.memmove(dev, host, length)
        if self.deferred:
            with self.lock:
                self.pending.append((token, apply))
        else:
            apply()
            self.tiers.copy_done(token)

    def drain(self, fail=()):
        with self.lock:
            work, self.pending = self.pending, []
        for i, (token, apply) in enumerate(work):
            if i not in fail:
                apply()
            self.tiers.copy_done(token, i not in fail)
        return len(work)


@pytest.mark.parametrize("deferred", [False, True])
def test_engine_copies_through_callables(deferred):
    engine = Engine(8, 256, deferred)
    with kvcache.TierManager(**GEOMETRY, device_blocks=8, host_blocks=4,
                             device_to_host=lambda *a: engine.copy(True, *a),
                             host_to_device=lambda *a: engine.copy(False, *a)) as t:
        engine.tiers = t
        keys = [key(5, j) for j in range(3)]
        for i, b in enumerate([0, 1, 2]):
            engine.memory[b] = 10 + i
        sid = t.prepare_store([0, 1, 2], keys)
        if deferred:
            assert not t.is_complete(sid)
            copies = 0
            while copies < 3:  # one layer group per block; the callables run on the library's threads
                copies += engine.drain()
        assert t.complete_store(sid)[0] == 3
        lid = t.prepare_load(keys, 0, [5, 6, 7])
        if deferred:
            copies, seen = 0, 0
            while copies < 3:  # the second copy handed out fails
                n = engine.drain(fail={1 - seen} if seen <= 1 else ())
                copies, seen = copies + n, seen + n
        prefix, ok = t.complete_load(lid)
        if deferred:
            assert prefix == 1 and list(ok) == [True, False, True]
        else:
            assert prefix == 3 and ok.all()
        assert (engine.memory[5] == 10).all() and (engine.memory[7] == 12).all()
        with pytest.raises(kvcache.InvalidArgumentError):
            t.device_block(0)  # the engine owns the device pool
