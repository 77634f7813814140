"""ChunkStore over kvcache_chunks_*: a plan's spans, recomputed positions and fresh ranges, the hold until
commit, and refused calls that change nothing."""
import contextlib
import ctypes as C
import math

import numpy as np
import pytest

import kvcache


def test_plan_holds_its_variants_until_commit():
    with kvcache.ChunkStore(16, block_tokens=4, max_variants=2, key_namespace="test") as store:
        a, b = store.key(range(10)), store.key(range(50, 56))
        va, blocks_a = store.insert(a, 10, 0)
        vb, _ = store.insert(b, 6, 3)
        assert len(blocks_a) == 3 and list(store.blocks(va)) == list(blocks_a)
        plan = store.plan([("prefix", 8), ("chunk", 6, b), ("chunk", 2, store.key([9, 9])), ("chunk", 10, a), ("fresh", 5)],
                          selection=kvcache.Selection.LEADING, ratio=0.25)
        assert plan.plan_id and plan.prompt_tokens == 31 and plan.prefix_tokens == 8 and plan.missing_chunks == 1
        assert [s.variant for s in plan.spans] == [vb, va] and [s.target_start for s in plan.spans] == [8, 16]
        assert list(plan.recompute) == [8, 9, 16, 17, 18] and plan.fresh == [(14, 16), (26, 31)]
        with pytest.raises(kvcache.BlocksInUseError):
            store.remove(va)
        store.commit(plan.plan_id)
        with pytest.raises(kvcache.InvalidArgumentError):
            store.commit(plan.plan_id)
        store.remove(va)
        assert store.stats().variants == 1 and store.stats().open_plans == 0
        store.validate()


def test_refused_calls_change_nothing():
    with kvcache.ChunkStore(8, block_tokens=4) as store:
        a = store.key(range(8))
        store.insert(a, 8, 0)
        before = store.stats()
        for segments, ratio in (([("chunk", 7, a)], 0.1), ([("fresh", 2), ("prefix", 3)], 0.1), ([("fresh", 0)], 0.1),
                                ([("fresh", 2)], 1.5)):
            with pytest.raises(kvcache.InvalidArgumentError):
                store.plan(segments, ratio=ratio)
        with pytest.raises(kvcache.InvalidArgumentError):
            store.plan([("nothing", 2)])
        with pytest.raises(kvcache.InsufficientBlocksError):
            store.insert(store.key([1]), 40, 0)
        assert store.stats() == before
        store.validate()


def test_tiered_store_serves_spilled_chunks_with_their_bytes(tmp_path):
    with kvcache.ChunkStore.tiered(layers=2, kv_heads=1, head_dim=8, block_tokens=4, device_blocks=4, host_blocks=2,
                                   disk_directory=str(tmp_path), disk_capacity_bytes=1 << 22, workers=1,
                                   spill_watermark=1.0, key_namespace="py-tiered") as store:
        bb = store.tier_stats().block_bytes
        assert bb == 256
        rng = np.random.default_rng(7)
        kv = [rng.integers(0, 256, 2 * bb, dtype=np.uint8) for _ in range(4)]
        keys = [store.key(range(100 * p, 100 * p + 8)) for p in range(4)]
        for p in range(4):
            variant, blocks = store.insert(keys[p], 8, 0)
            assert len(blocks) == 2
            with pytest.raises(kvcache.InvalidArgumentError):
                store.put(variant, kv[p][:-1])
            store.put(variant, kv[p])
            assert np.array_equal(store.fetch(variant), kv[p])
        # The pool holds passages 2 and 3, the host 1, the disk 0.
        assert store.tier_stats().spilled_variants == 2
        for p, tier in ((1, kvcache.Tier.HOST), (0, kvcache.Tier.DISK), (0, kvcache.Tier.DEVICE)):
            plan = store.plan([("fresh", 3), ("chunk", 8, keys[p])], selection=kvcache.Selection.NONE)
            assert len(plan.spans) == 1 and plan.spans[0].tier == tier and plan.missing_chunks == 0
            assert np.array_equal(store.fetch(plan.spans[0].variant), kv[p])
            store.commit(plan.plan_id)
        stats = store.tier_stats()
        assert stats.loaded_variants == 2 and stats.failed_loads == 0 and stats.tiers.disk.loaded_blocks >= 2
        store.validate()


@contextlib.contextmanager
def _four_passages_in_tiers(tmp_path, namespace):
    """A tiered store with passages 0...3 (8 tokens, KV bytes all p) put in order, and their keys: the pool
    holds passages 2 and 3, the host 1, the disk 0."""
    with kvcache.ChunkStore.tiered(layers=2, kv_heads=1, head_dim=8, block_tokens=4, device_blocks=4, host_blocks=2,
                                   disk_directory=str(tmp_path), disk_capacity_bytes=1 << 22, workers=1,
                                   spill_watermark=1.0, key_namespace=namespace) as store:
        keys = [store.key(range(100 * p, 100 * p + 8)) for p in range(4)]
        for p in range(4):
            variant, _ = store.insert(keys[p], 8, 0)
            store.put(variant, np.full(512, p, np.uint8))
        yield store, keys


def test_loading_controller_leaves_a_slow_disk_chunk_to_be_recomputed(tmp_path):
    with _four_passages_in_tiers(tmp_path, "py-controlled") as (store, keys):
        # The pool holds passages 2 and 3, the host 1, the disk 0. Recomputing a passage: 0.8 ms; loading it
        # from a 1 B/s disk: 512 s; from 10 GB/s host memory: 51 ns.
        with pytest.raises(kvcache.InvalidArgumentError):
            store.set_loading_controller(1e-4, disk_bytes_per_second=-1)
        store.set_loading_controller(1e-4, host_bytes_per_second=10e9, disk_bytes_per_second=1)
        plan = store.plan([("fresh", 3), ("chunk", 8, keys[0]), ("chunk", 8, keys[1]), ("chunk", 8, keys[3])],
                          selection=kvcache.Selection.NONE)
        assert [s.tier for s in plan.spans] == [kvcache.Tier.HOST, kvcache.Tier.DEVICE] and plan.missing_chunks == 1
        loads = store.plan_loads(plan.plan_id)
        assert [(l.segment, l.action, l.tier) for l in loads] == [
            (1, kvcache.ChunkAction.RECOMPUTE, kvcache.Tier.DISK), (2, kvcache.ChunkAction.LOADED, kvcache.Tier.HOST),
            (3, kvcache.ChunkAction.IN_POOL, kvcache.Tier.DEVICE)]
        assert loads[0].decided and loads[0].load_seconds > loads[0].recompute_all_seconds and not loads[2].decided
        store.commit(plan.plan_id)
        with pytest.raises(kvcache.InvalidArgumentError):
            store.plan_loads(plan.plan_id)
        store.set_loading_controller(1e-4)  # the tiers' measured bandwidths
        store.set_loading_controller(None)
        plan = store.plan([("chunk", 8, keys[0])], selection=kvcache.Selection.NONE)
        assert plan.spans[0].tier == kvcache.Tier.DISK and np.array_equal(store.fetch(plan.spans[0].variant), np.zeros(512, np.uint8))
        assert store.plan_loads(plan.plan_id)[0].action == kvcache.ChunkAction.LOADED
        store.commit(plan.plan_id)
        store.validate()


def test_a_chunk_loaded_slower_than_its_recompute_gets_the_controllers_ratio(tmp_path):
    with _four_passages_in_tiers(tmp_path, "py-raised") as (store, keys):
        # The pool holds passages 2 and 3, the host 1, the disk 0. Loading a passage from a 1.28 MB/s disk
        # takes 0.4 ms: longer than recomputing 2 of its tokens (0.15's budget), shorter than all 8.
        store.set_loading_controller(1e-4, host_bytes_per_second=10e9, disk_bytes_per_second=1.28e6)
        plan = store.plan([("fresh", 3), ("chunk", 8, keys[0]), ("chunk", 8, keys[3])], ratio=0.15)
        loads = store.plan_loads(plan.plan_id)
        assert [s.tier for s in plan.spans] == [kvcache.Tier.DISK, kvcache.Tier.DEVICE]
        assert loads[0].action == kvcache.ChunkAction.LOADED and loads[0].ratio > 0.15
        assert plan.spans[0].recompute_budget == math.ceil(loads[0].ratio * 8) > 2
        assert plan.spans[1].recompute_budget == 2  # in the pool: 0.15's
        store.commit(plan.plan_id)
        store.validate()


def test_tiered_store_over_the_engines_memory_through_copy_callables(tmp_path):
    pool = np.zeros((4, 256), np.uint8)  # the engine's device memory
    holder = {}

    def to_host(block, offset, length, host, token):
        C.memmove(host, pool[block].ctypes.data + offset, length)
        holder["store"].copy_done(token)

    def to_device(block, offset, length, host, token):
        C.memmove(pool[block].ctypes.data + offset, host, length)
        holder["store"].copy_done(token)

    with kvcache.ChunkStore.tiered(layers=2, kv_heads=1, head_dim=8, block_tokens=4, device_blocks=4, host_blocks=2,
                                   disk_directory=str(tmp_path), disk_capacity_bytes=1 << 22, workers=1,
                                   spill_watermark=1.0, key_namespace="py-engine", device_to_host=to_host,
                                   host_to_device=to_device) as store:
        holder["store"] = store
        kv = [np.full(512, 10 + p, np.uint8) for p in range(4)]
        keys = [store.key(range(100 * p, 100 * p + 8)) for p in range(4)]
        for p in range(4):
            variant, blocks = store.insert(keys[p], 8, 0)
            with pytest.raises(kvcache.InvalidArgumentError):
                store.put(variant, kv[p])
            pool[blocks] = kv[p].reshape(2, 256)
            store.mark_written(variant)
        with pytest.raises(kvcache.InvalidArgumentError):
            store.copy_done(1 << 40)
        for p, tier in ((1, kvcache.Tier.HOST), (0, kvcache.Tier.DISK)):
            plan = store.plan([("chunk", 8, keys[p])], selection=kvcache.Selection.NONE)
            assert plan.spans[0].tier == tier
            assert np.array_equal(pool[store.blocks(plan.spans[0].variant)].reshape(-1), kv[p])
            store.commit(plan.plan_id)
        store.validate()


def test_put_and_fetch_need_a_tiered_store():
    with kvcache.ChunkStore(8, block_tokens=4) as store:
        variant, _ = store.insert(store.key(range(4)), 4, 0)
        with pytest.raises(kvcache.InvalidArgumentError):
            store.fetch(variant)
        with pytest.raises(kvcache.InvalidArgumentError):
            store.tier_stats()
