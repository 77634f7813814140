#!/usr/bin/env python3
"""Cost of the tiers from Python for a 32-block prompt: TierManager.lookup (one C call over the key array),
and the vLLM adapter's lookup as vLLM's offloading connector calls it (one OffloadingManager.lookup per
key, each hashing vLLM's OffloadKey to a block key and asking the tiers where it is), every key on host.
Medians of per-call times over batches; prints one JSON object. Run with a Python that has the vllm wheel
(tools/capi/adapters.sh makes .build/adapters-venv):

    KVCACHE_LIB=$(swift build -c release --show-bin-path)/libkvcache_c.so \
      .build/adapters-venv/bin/python python/bench/adapter_overhead.py [--blocks 32] [--batches 200] [--calls 200]

Measured wall time on whatever machine runs it. vLLM's own pure-Python managers are not measured beside
it: CPUOffloadingManager imports vllm.config, which needs torch (not installed here).
"""
import argparse
import json
import os
import platform
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [here, os.path.join(here, ".."), os.path.join(here, "..", "tests")]
import numpy as np  # noqa: E402

import engines  # noqa: E402
import kvcache  # noqa: E402
from lookup_overhead import per_call_median_us  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args()
    base, factory, vconfig = engines.vllm()
    sys.path.insert(0, os.path.join(here, "..", "tests"))
    from test_vllm_adapter import CHUNK, offloading_config
    import pathlib
    with tempfile.TemporaryDirectory() as tmp:
        manager = factory.OffloadingSpecFactory.create_spec(
            offloading_config(pathlib.Path(tmp), host_blocks=4 * a.blocks)).get_manager()
        ctx = base.ReqContext(req_id="bench")
        keys = [base.make_offload_key(f"block-{i}".encode().ljust(32, b"."), 0) for i in range(a.blocks)]
        for k in keys:  # every block on host (the worker's copy is not needed for a lookup)
            with manager.lock:
                out = manager.prepare_store([k], ctx)
                manager.complete_store(out.keys_to_store, ctx)

        def adapter_lookup():
            with manager.lock:
                for k in keys:
                    if manager.lookup(k, ctx) != base.LookupResult.HIT:
                        break
        kv = np.array([kvcache.integrations.key_of(k) for k in keys], np.uint64)
        tiers = manager.tiers

        def tiers_lookup():
            tiers.lookup(kv)
        assert tiers.lookup(kv).host_blocks == a.blocks
        result = {
            "blocks": a.blocks, "chunk_bytes": CHUNK,
            "tiers_lookup_us": round(per_call_median_us(tiers_lookup, a.batches, a.calls), 2),
            "vllm_adapter_lookup_us": round(per_call_median_us(adapter_lookup, a.batches, a.calls), 2),
            "library": kvcache.library().path, "python": platform.python_version(), "machine": platform.machine(),
            "measured": True,
        }
        manager.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    import kvcache.integrations  # noqa: F401
    main()
