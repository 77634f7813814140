"""kvcache.integrations.sglang against SGLang's own HiCacheStorage and StorageBackendFactory (the wheel
installed without dependencies; stand-ins in engines.py): the backend is created by module path as
the factory creates a "dynamic" backend, then pages go through set / batch_set / exists /
batch_exists / get / batch_get byte for byte, survive a restart of the backend, and pages of another
size or TP rank stay apart."""
import numpy as np
import pytest

import engines

hicache, backends = engines.sglang()

PAGE = 4096


def storage_config(tmp_path, tp_rank=0, **extra):
    return hicache.HiCacheStorageConfig(
        tp_rank=tp_rank, tp_size=2, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1, is_mla_model=False,
        enable_storage_metrics=False, is_page_first_layout=True, model_name="org/model",
        extra_config={"backend_name": "kvcache", "module_path": "kvcache.integrations.sglang",
                      "class_name": "KVCacheHiCacheStorage", "disk_directory": str(tmp_path / "hicache"),
                      "disk_capacity_bytes": 1 << 24, **extra})


def create(tmp_path, **kw):
    return backends.StorageBackendFactory.create_backend("dynamic", storage_config(tmp_path, **kw), None)


def pages(n, seed):
    return [np.random.default_rng(seed + i).integers(0, 256, PAGE, dtype=np.uint8) for i in range(n)]


def test_the_factory_loads_it_by_module_path(tmp_path):
    store = create(tmp_path)
    assert isinstance(store, hicache.HiCacheStorage) and type(store).__name__ == "KVCacheHiCacheStorage"
    assert not type(store).__abstractmethods__
    store.close()


def test_pages_round_trip_and_survive_a_restart(tmp_path):
    store = create(tmp_path)
    keys = [f"hash{i:04d}" for i in range(5)]
    data = pages(5, 1)
    assert store.batch_exists(keys) == 0 and not store.exists(keys[0]) and store.get(keys[0]) is None
    assert store.set(keys[0], data[0])
    assert store.set(keys[0], data[0])  # stored already: still a success
    assert store.batch_set(keys[1:3], data[1:3])
    assert store.exists(keys[2]) and store.batch_exists(keys) == 3
    out = [np.zeros(PAGE, np.uint8) for _ in keys]
    got = store.batch_get(keys, out)
    assert all(g is o for g, o in zip(got[:3], out)) and got[3] is None and got[4] is None
    assert all(np.array_equal(out[i], data[i]) for i in range(3))
    assert np.array_equal(store.get(keys[1]), data[1])
    assert not store.set("odd", np.zeros(PAGE + 2, np.uint8))  # another page size
    stats = store.get_stats()
    assert stats.disk.stored_blocks == 3
    store.close()
    again = create(tmp_path)  # a new process's backend over the same folder
    assert again.batch_exists(keys) == 3 and np.array_equal(again.get(keys[2], np.zeros(PAGE, np.uint8)), data[2])
    other_rank = create(tmp_path, tp_rank=1)  # each TP rank's shard is its own page
    assert other_rank.batch_exists(keys) == 0
    other_rank.close()
    again.close()


def test_page_size_from_extra_config(tmp_path):
    store = create(tmp_path, page_bytes=PAGE)
    assert store.get("missing", None) is None and store.batch_exists(["missing"]) == 0
    assert store.set("k", pages(1, 9)[0].tobytes())
    assert store.exists("k")
    store.close()
