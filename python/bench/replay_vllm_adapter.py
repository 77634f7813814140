#!/usr/bin/env python3
"""A Mooncake trace replayed through the vLLM adapter, beside `kvcache replay --mode sequential` with the
same device pool and host tier. The device pool is kvcache.Cache (LRU, as vLLM's GPU prefix cache);
below it, KVCacheOffloadingSpec's manager as vLLM's offloading connector drives it: per request the
device lookup, then `lookup(key)` per chunk after the device hit until a MISS, `prepare_load` /
`complete_load` of those chunks (loaded into the device and committed), the other chunks computed, and
`prepare_store` / `complete_store` of the computed chunks (vLLM's chunk-level policy: what a request
computed is offloaded, hits are not). Bytes are not copied (no worker): hits only. Prints one JSON object
with both runs' hit tokens per tier.

    .build/adapters-venv/bin/python python/bench/replay_vllm_adapter.py TRACE --capacity-blocks 1000 \
        --cpu-blocks 30000 [--kvcache .build/debug/kvcache]

The two write policies differ, which is the point of comparing them: `kvcache replay` copies a block to
host when the device pool evicts it (write-back), the connector when a request computes it (write-through).
With a host tier that holds every block of the trace the hits are the same; with a smaller one the
write-through host also holds blocks the device still has, so it keeps fewer of the evicted ones.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(here, ".."), os.path.join(here, "..", "tests")]

import engines  # noqa: E402
import kvcache  # noqa: E402


def adapter_replay(trace, capacity, host_blocks, block_tokens):
    base, factory, _ = engines.vllm()
    from test_vllm_adapter import offloading_config
    with tempfile.TemporaryDirectory() as tmp:
        config = offloading_config(pathlib.Path(tmp), host_blocks=host_blocks, transfer_lanes=capacity)
        config = type(config)(**{**config.__dict__, "worker_kv_bytes_per_block": 2})  # 2 bytes a chunk: hits only
        manager = factory.OffloadingSpecFactory.create_spec(config).get_manager()
        cache = kvcache.Cache(capacity, block_tokens=block_tokens, policy="lru")
        B = block_tokens
        totals = dict(requests=0, input_tokens=0, hit_tokens=0, hit_tokens_l1=0, hit_tokens_l2=0, hit_tokens_l3=0)
        with open(trace) as f:
            for seq, line in enumerate(f):
                r = json.loads(line)
                ids = r.get("hash_ids") or []
                offload = [base.make_offload_key(str(h).encode().ljust(16, b"."), 0) for h in ids][:capacity]
                keys = [(h + 1, 0x5EED) for h in ids][:capacity]
                n = len(keys)
                totals["requests"] += 1
                totals["input_tokens"] += r["input_length"]
                if n == 0:
                    continue
                ctx = base.ReqContext(req_id=str(seq))
                cache.add_sequence_keys(seq, keys, n * B + 1)
                first = cache.lookup(seq).cached_blocks
                with manager.lock:
                    manager.on_new_request(ctx)
                    t = 0
                    while first + t < n and manager.lookup(offload[first + t], ctx) == base.LookupResult.HIT:
                        t += 1
                    from_host = sum(manager.tiers.loadable(kvcache.integrations.key_of(k)) == kvcache.Tier.HOST
                                    for k in offload[first:first + t])
                    if t:
                        manager.prepare_load(offload[first:first + t], ctx)
                cache.allocate(seq, (n - first) * B)
                with manager.lock:
                    if t:
                        manager.complete_load(offload[first:first + t], ctx)
                cache.commit(seq, (n - first) * B)
                for k in offload[first + t:n]:
                    with manager.lock:
                        out = manager.prepare_store([k], ctx)
                        if out is not None and out.keys_to_store:
                            manager.complete_store(out.keys_to_store, ctx)
                with manager.lock:
                    manager.on_request_finished(ctx)
                cache.free(seq)
                inp = r["input_length"]
                l1 = min(first * B, inp)
                l12 = min((first + from_host) * B, inp)
                everything = min((first + t) * B, inp)
                totals["hit_tokens_l1"] += l1
                totals["hit_tokens_l2"] += l12 - l1
                totals["hit_tokens_l3"] += everything - l12
                totals["hit_tokens"] += everything
        manager.shutdown()
        cache.close()
        return totals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--capacity-blocks", type=int, default=1000)
    ap.add_argument("--cpu-blocks", type=int, default=30000)
    ap.add_argument("--block-tokens", type=int, default=512)
    ap.add_argument("--kvcache", default=".build/debug/kvcache")
    a = ap.parse_args()
    ours = adapter_replay(a.trace, a.capacity_blocks, a.cpu_blocks, a.block_tokens)
    cli = json.loads(subprocess.run([a.kvcache, "replay", "--mode", "sequential", "--trace", a.trace, "--policy", "lru",
                                     "--capacity-blocks", str(a.capacity_blocks), "--cpu-blocks", str(a.cpu_blocks),
                                     "--json"], check=True, capture_output=True, text=True).stdout)["runs"][0]
    keys = ["requests", "input_tokens", "hit_tokens", "hit_tokens_l1", "hit_tokens_l2", "hit_tokens_l3"]
    print(json.dumps({"capacity_blocks": a.capacity_blocks, "cpu_blocks": a.cpu_blocks,
                      "vllm_adapter": ours, "kvcache_replay": {k: cli[k] for k in keys},
                      "same_hits": all(ours[k] == cli[k] for k in keys)}))


if __name__ == "__main__":
    import kvcache.integrations  # noqa: F401
    main()
