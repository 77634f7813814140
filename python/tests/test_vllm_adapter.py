"""kvcache.integrations.vllm against vLLM's own classes (the wheel installed without dependencies; the
stand-ins are listed in engines.py): the spec is built by vLLM's OffloadingSpecFactory from
kv_connector_extra_config as users write it, the manager is driven in the order the offloading
connector's scheduler side calls it (on_new_request, lookup per key under `lock` until a MISS,
prepare_load / complete_load, prepare_store / complete_store, take_events, on_request_finished,
on_schedule_end, shutdown), and a stand-in worker copies the bytes between a fake GPU and the host
addresses of the specs, so what comes back is checked byte for byte."""
import ctypes as C
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import engines

base, factory, vconfig = engines.vllm()
from kvcache.integrations import key_of  # noqa: E402
from kvcache.integrations import vllm as adapter  # noqa: E402  (after the stand-ins)

CHUNK = 512  # bytes of one offloaded chunk on this worker


def offloading_config(tmp_path, **extra):
    extra = {"spec_name": "KVCacheOffloadingSpec", "spec_module_path": "kvcache.integrations.vllm", **extra}
    if "disk_directory" in extra:
        extra["disk_directory"] = str(tmp_path / extra["disk_directory"])
    return vconfig.OffloadingConfig(
        groups=(vconfig.OffloadingGroupConfig(tokens_per_block=16, layer_names=("layers.0",), group_id=0),),
        worker_kv_bytes_per_block=CHUNK, enable_kv_cache_events=True, extra_config=extra, engine_id="e0",
        model=vconfig.OffloadingModelConfig(name="test", dtype="float16"),
        cache=vconfig.OffloadingCacheConfig(tokens_per_hash=16, blocks_per_chunk=1),
        parallel=vconfig.OffloadingParallelConfig(rank=0, world_size=1, tp_size=1, pp_size=1, pcp_size=1, dcp_size=1,
                                                  data_parallel_index=0, data_parallel_size=1,
                                                  data_parallel_rank_local=None, is_parallelism_agnostic=True))


class Worker:
    """The GPU side: device memory as a numpy array; copies to and from the specs' host addresses."""

    def __init__(self, blocks):
        self.gpu = np.zeros((blocks, CHUNK), np.uint8)

    def store(self, spec, gpu_blocks):
        for addr, length, b in zip(spec.host_addresses, spec.lengths, gpu_blocks):
            C.memmove(addr, self.gpu[b].ctypes.data, length)

    def load(self, spec, gpu_blocks):
        for addr, length, b in zip(spec.host_addresses, spec.lengths, gpu_blocks):
            C.memmove(self.gpu[b].ctypes.data, addr, length)


def keys_of(prompt, n):
    return [base.make_offload_key(f"{prompt}-{i}".encode().ljust(32, b"."), 0) for i in range(n)]


def lookup_prefix(manager, keys, ctx, rounds=200):
    """The connector's maximal prefix lookup: HIT and HIT_PENDING count, a MISS ends it, and while any
    key was pending the lookup is deferred and asked again (here after a short sleep; the connector at a
    later step)."""
    for _ in range(rounds):
        hits, pending = 0, False
        for k in keys:
            r = manager.lookup(k, ctx)
            if r == base.LookupResult.MISS:
                break
            pending |= r == base.LookupResult.HIT_PENDING
            hits += 1
        if not pending:
            return hits
        manager.lock.release()
        try:
            time.sleep(0.005)
        finally:
            manager.lock.acquire()
    raise AssertionError("a lookup stayed pending")


def test_the_spec_is_what_vllms_factory_builds(tmp_path):
    spec = factory.OffloadingSpecFactory.create_spec(offloading_config(tmp_path, host_blocks=4))
    assert isinstance(spec, base.OffloadingSpec) and type(spec).__name__ == "KVCacheOffloadingSpec"
    manager = spec.get_manager()
    assert isinstance(manager, base.OffloadingManager) and not type(manager).__abstractmethods__
    assert spec.get_manager() is manager
    with pytest.raises(ValueError, match="KV caches"):
        spec.get_worker(None)
    manager.shutdown()


@pytest.mark.parametrize("disk", [False, True])
def test_scheduler_call_order_with_real_bytes(tmp_path, disk):
    extra = {"host_blocks": 4} | ({"disk_directory": "disk", "disk_capacity_bytes": 1 << 22} if disk else {})
    spec = factory.OffloadingSpecFactory.create_spec(offloading_config(tmp_path, **extra))
    manager = spec.get_manager()
    worker = Worker(16)
    keys = keys_of("a", 6)
    ctx = base.ReqContext(req_id="r1")

    # Request 1: nothing offloaded; its six chunks are computed, then stored one by one.
    with manager.lock:
        assert isinstance(manager.on_new_request(ctx), base.RequestOffloadingContext)
        assert lookup_prefix(manager, keys, ctx) == 0
    evicted = []
    for i, k in enumerate(keys):
        worker.gpu[i] = 40 + i
        with manager.lock:
            out = manager.prepare_store([k], ctx)
        assert out.keys_to_store == [k] and isinstance(out.store_spec, base.LoadStoreSpec)
        evicted += out.evicted_keys
        worker.store(out.store_spec, [i])
        with manager.lock:
            manager.complete_store([k], ctx)
            assert manager.prepare_store([k], ctx).keys_to_store == []  # stored already
    with manager.lock:
        events = list(manager.take_events())
        manager.on_request_finished(ctx)
        manager.on_schedule_end(base.ScheduleEndContext(new_req_ids=["r1"], preempted_req_ids=[]))
    stored = [k for e in events if not e.removed and e.medium == base.Medium.CPU for k in e.keys]
    assert stored == keys
    # Four host slots: with a disk the two coldest went there, without one they left the tiers.
    assert evicted == ([] if disk else keys[:2])
    assert any(e.removed for e in events)

    # Request 2, same prompt: the connector looks up, loads what hit into fresh GPU blocks.
    ctx2 = base.ReqContext(req_id="r2")
    with manager.lock:
        manager.on_new_request(ctx2)
        hit = lookup_prefix(manager, keys, ctx2)
        assert hit == (6 if disk else 0)
        # Without a disk the first two chunks are gone, so the connector's prefix is empty: load the
        # rest directly to check the bytes anyway.
        load_keys = keys[:hit] if disk else keys[2:]
        src = manager.prepare_load(load_keys, ctx2)
    dst = list(range(8, 8 + len(load_keys)))
    worker.load(src, dst)
    with manager.lock:
        manager.complete_load(load_keys, ctx2)
    first = 0 if disk else 2
    for j, b in enumerate(dst):
        assert (worker.gpu[b] == 40 + first + j).all()
    with manager.lock:
        manager.on_request_finished(ctx2)
        manager.tiers.validate()
    manager.shutdown()


def test_a_failed_store_is_not_loadable(tmp_path):
    manager = factory.OffloadingSpecFactory.create_spec(offloading_config(tmp_path, host_blocks=2)).get_manager()
    ctx = base.ReqContext(req_id="r")
    k = keys_of("b", 1)
    with manager.lock:
        out = manager.prepare_store(k, ctx)
        manager.complete_store(out.keys_to_store, ctx, success=False)
        assert manager.lookup(k[0], ctx) == base.LookupResult.MISS
    manager.shutdown()


def kv_caches(page=CHUNK):
    """vLLM's canonical KV caches of one group with one layer reference of `page` bytes per block (the
    worker reads only the references; the tensors are the fake GPU's numpy arrays)."""
    ref = base.CanonicalKVCacheRef(tensor_idx=0, page_size_bytes=page)
    return base.CanonicalKVCaches(tensors=[], group_data_refs=[[ref]])


def device_pointers(gpu, blocks):
    """vLLM's DevicePointers of `blocks` of the fake GPU (one group, one layer reference)."""
    return base.DevicePointers(ptrs=np.array([gpu[b].ctypes.data for b in blocks], np.uint64),
                               sizes=np.full(len(blocks), gpu.shape[1], np.uint64), group_block_counts=(len(blocks),),
                               group_data_ref_counts=(1,), block_indices=(0,))


def worker_load(tmp, region_file, offsets, expected):
    """In a separate worker process: vLLM's factory builds the spec from the same config, its worker maps
    the published host region and loads the chunks at `offsets` into its own fake GPU; the bytes must be
    `expected[i]` in block i."""
    spec = factory.OffloadingSpecFactory.create_spec(offloading_config(Path(tmp), region_file=region_file))
    worker = spec.get_worker(kv_caches())
    gpu = np.zeros((len(offsets), CHUNK), np.uint8)
    src = adapter.KVCacheTransferSpec([], [], [CHUNK] * len(offsets), host_offsets=offsets)
    assert worker.submit_load(7, src, device_pointers(gpu, range(len(offsets))))
    assert [(r.job_id, r.success, r.transfer_size) for r in worker.get_finished()] == [(7, True, CHUNK * len(offsets))]
    for i, value in enumerate(expected):
        assert (gpu[i] == value).all(), f"block {i}: {gpu[i][:4]} instead of {value}"
    worker.shutdown()
    print("worker loaded", len(offsets), "blocks")


def test_worker_process_loads_what_the_scheduler_process_stored(tmp_path):
    region_file = str(tmp_path / "region.json")
    spec = factory.OffloadingSpecFactory.create_spec(offloading_config(tmp_path, host_blocks=4, region_file=region_file))
    manager = spec.get_manager()
    assert json.loads(Path(region_file).read_text())["pid"] == os.getpid()
    # The store, through the worker side in this (the scheduler's) process.
    worker = spec.get_worker(kv_caches())
    assert isinstance(worker, base.OffloadingWorker) and not type(worker).__abstractmethods__
    gpu = np.zeros((8, CHUNK), np.uint8)
    keys = keys_of("w", 3)
    ctx = base.ReqContext(req_id="w")
    for i in range(3):
        gpu[i] = 90 + i
    with manager.lock:
        out = manager.prepare_store(keys, ctx)
    assert out.keys_to_store == keys and all(o >= 0 for o in out.store_spec.host_offsets)
    assert worker.submit_store(1, device_pointers(gpu, [0, 1, 2]), out.store_spec)
    assert [(r.job_id, r.success) for r in worker.get_finished()] == [(1, True)]
    with manager.lock:
        manager.complete_store(keys, ctx)
        assert lookup_prefix(manager, keys, ctx) == 3
        src = manager.prepare_load(keys, ctx)
    # The load, in another process that maps the host blocks itself.
    child = subprocess.run(
        [sys.executable, "-c", "import sys, json, test_vllm_adapter as t; t.worker_load(*json.loads(sys.argv[1]))",
         json.dumps([str(tmp_path), region_file, src.host_offsets, [90, 91, 92]])],
        cwd=Path(__file__).parent, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr
    assert "worker loaded 3 blocks" in child.stdout
    with manager.lock:
        manager.complete_load(keys, ctx)
        manager.tiers.validate()
    worker.shutdown()
    manager.shutdown()
    assert not Path(region_file).exists()


def test_a_load_whose_block_left_fails_the_job(tmp_path):
    spec = factory.OffloadingSpecFactory.create_spec(
        offloading_config(tmp_path, host_blocks=2, region_file=str(tmp_path / "r.json")))
    manager = spec.get_manager()
    worker = spec.get_worker(kv_caches())
    gpu = np.zeros((2, CHUNK), np.uint8)
    src = adapter.KVCacheTransferSpec([], [0, 0], [CHUNK, CHUNK], host_offsets=[0, -1])
    assert worker.submit_load(3, src, device_pointers(gpu, [0, 1]))
    assert [(r.job_id, r.success) for r in worker.get_finished()] == [(3, False)]
    worker.shutdown()
    manager.shutdown()


def test_a_disk_hit_is_pending_until_it_is_on_host(tmp_path):
    """A lookup that finds a key on disk only starts bringing it up (HIT_PENDING until it is on host);
    once the lookup says HIT, prepare_load reads nothing from disk."""
    spec = factory.OffloadingSpecFactory.create_spec(
        offloading_config(tmp_path, host_blocks=2, disk_directory="disk", disk_capacity_bytes=1 << 22, spill_watermark=1))
    manager = spec.get_manager()
    worker = Worker(8)
    keys = keys_of("p", 4)
    ctx = base.ReqContext(req_id="p")
    for i, k in enumerate(keys):   # four chunks through two host slots: the first two end on disk only
        worker.gpu[i] = 60 + i
        with manager.lock:
            out = manager.prepare_store([k], ctx)
        worker.store(out.store_spec, [i])
        with manager.lock:
            manager.complete_store([k], ctx)
    with manager.lock:
        assert manager.tiers.loadable(key_of(keys[0])) == adapter.Tier.DISK
        # Pending, or HIT when the background read has already finished (the block is tiny).
        assert manager.lookup(keys[0], ctx) in (base.LookupResult.HIT_PENDING, base.LookupResult.HIT)
        assert lookup_prefix(manager, keys[:1], ctx) == 1
        assert manager.tiers.loadable(key_of(keys[0])) == adapter.Tier.HOST
        disk_reads = manager.tiers.stats().disk.loaded_blocks
        src = manager.prepare_load(keys[:1], ctx)
        assert manager.tiers.stats().disk.loaded_blocks == disk_reads
    worker.load(src, [7])
    with manager.lock:
        manager.complete_load(keys[:1], ctx)
        manager.tiers.validate()
    assert (worker.gpu[7] == 60).all()
    manager.shutdown()
