#!/usr/bin/env python3
"""Tokens per second of vLLM's default block hashing path, rebuilt from its definition: each full block's
hash is sha256 over the pickle of (parent hash, the block's token ids, extra keys), chained from a zero
parent. The yardstick for `kvcache bench core`'s `hash_tokens_per_s` (one core each):

    python3 tools/reference/sha256_block_rate.py [BLOCK_TOKENS]

Hashes a 32k-token prompt of random ids below 128,000, 15 times, and prints the median rate.
"""
import hashlib, pickle, random, sys, time

def main():
    block = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    rng = random.Random(1)
    tokens = [rng.randrange(128_000) for _ in range(32_768)]
    def run():
        parent = bytes(32)
        for i in range(0, len(tokens) - block + 1, block):
            data = pickle.dumps((parent, tuple(tokens[i:i + block]), None), protocol=pickle.HIGHEST_PROTOCOL)
            parent = hashlib.sha256(data).digest()
    times = []
    for _ in range(15):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"sha256 over pickle, {block}-token blocks: {len(tokens) / times[len(times) // 2]:.3e} tokens/s (median of 15)")

if __name__ == "__main__":
    main()
