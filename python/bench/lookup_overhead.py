#!/usr/bin/env python3
"""Cost of one Python call into the cache: lookup of a 32-block prompt, through kvcache.Cache, beside the
bare ctypes call underneath it and ctypes' cheapest call, and one admission (add_sequence + lookup +
free_sequence, hashing the prompt). Medians of per-call times over batches; prints one JSON object.

    bash tools/python/build.sh release            # the release library into python/kvcache/_lib
    python3 python/bench/lookup_overhead.py [--blocks 32] [--block-tokens 16] [--batches 200] [--calls 200]

Measured wall time on whatever machine runs it (no model); the prompt is fully cached, so lookup matches
every block.
"""
import argparse
import ctypes as C
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import numpy as np  # noqa: E402

import kvcache  # noqa: E402
from kvcache import _abi  # noqa: E402


def per_call_median_us(fn, batches, calls):
    """Median over `batches` of the mean time of `calls` back-to-back calls, in microseconds."""
    for _ in range(calls):  # warm up
        fn()
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - t0) / calls / 1000)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--block-tokens", type=int, default=16)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--calls", type=int, default=200)
    a = ap.parse_args()
    tokens = a.blocks * a.block_tokens + 1  # every block full; the last token is never a hit
    prompt = np.arange(1000, 1000 + tokens, dtype=np.uint32)
    prompt_list = prompt.tolist()
    cache = kvcache.Cache(4 * a.blocks + 8, block_tokens=a.block_tokens, namespace="bench")
    # Publish the prompt's blocks, then keep one registered sequence to look up.
    cache.add_sequence(1, prompt)
    cache.allocate(1, tokens)
    cache.commit(1, tokens)
    cache.free(1)
    cache.add_sequence(2, prompt)
    hit = cache.lookup(2)
    assert hit.cached_blocks == a.blocks, hit

    lib, handle, out = cache._lib, cache._handle, _abi.PrefixHitStruct()
    out_ref = C.byref(out)
    raw_lookup = lib.kvcache_lookup
    abi_version = lib.kvcache_abi_version
    seq = [3]

    def admission(tokens_arg):
        def run():
            s = seq[0] = seq[0] + 1
            cache.add_sequence(s, tokens_arg)
            cache.lookup(s)
            cache.free(s)
        return run

    results = {
        "Cache.lookup": per_call_median_us(lambda: cache.lookup(2), a.batches, a.calls),
        "ctypes kvcache_lookup": per_call_median_us(lambda: raw_lookup(handle, 2, out_ref), a.batches, a.calls),
        "ctypes kvcache_abi_version (no arguments)": per_call_median_us(abi_version, a.batches, a.calls),
        "add_sequence(uint32 array) + lookup + free": per_call_median_us(admission(prompt), a.batches, a.calls // 4),
        "add_sequence(list) + lookup + free": per_call_median_us(admission(prompt_list), a.batches, a.calls // 4),
    }
    cache.validate()
    print(json.dumps({
        "what": f"median microseconds per call, prompt of {a.blocks} blocks x {a.block_tokens} tokens, all cached",
        "library": lib.path, "library_version": kvcache.version(), "python": platform.python_version(),
        "numpy": np.__version__, "batches": a.batches, "calls_per_batch": a.calls,
        "median_us": {k: round(v, 3) for k, v in results.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
