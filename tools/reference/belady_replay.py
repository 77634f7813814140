#!/usr/bin/env python3
"""Independent reference for `kvcache replay --mode sequential --policy belady` on a Mooncake JSONL trace.

Written from the documented semantics only (README, "Sequential replay" and "Eviction policies"): the
sequential replay's rules, with the victim being the unheld leaf not on the current chain whose next use
(the index of the next request whose hash_ids contain it) lies furthest ahead; a block never used again
goes first. Next uses come from one backward pass over the trace; leaves sit in a lazy-deletion heap keyed
by (-next use, -depth). Prints the same JSON keys as `kvcache replay --json` does per run:

    python3 tools/reference/belady_replay.py TRACE CAPACITY_BLOCKS [BLOCK_TOKENS] [FROM:TO [warm]]

FROM:TO replays the requests from fraction FROM to fraction TO of the trace (`--range`), as
`floor(FROM x n) ..< floor(TO x n)`; with `warm` (`--warm-up`), the requests before FROM are replayed
first without being counted.
"""
import heapq, json, math, sys

NEVER = 2**31 - 1

def load(path, B, frac, warm):
    reqs = []
    for line in open(path):
        if not line.strip():
            continue
        r = json.loads(line)
        assert len(r["hash_ids"]) == math.ceil(r["input_length"] / B)
        reqs.append((r["hash_ids"], r["input_length"]))
    lo, hi = math.floor(frac[0] * len(reqs)), math.floor(frac[1] * len(reqs))
    return reqs[0 if warm else lo:hi], (lo if warm else 0)

def next_uses(reqs):
    seen, out = {}, [None] * len(reqs)
    for i in range(len(reqs) - 1, -1, -1):
        ids = reqs[i][0]
        out[i] = [seen.get(h, NEVER) for h in ids]
        for h in ids:
            seen[h] = i
    return out

def replay(path, capacity, B=512, frac=(0.0, 1.0), warm=False):
    reqs, counted_from = load(path, B, frac, warm)
    nxt = next_uses(reqs)
    parent, nextuse, depth, children = {}, {}, {}, {}
    heap = []  # (-next use, -depth, id) for leaves; stale entries skipped
    hit = inp = evicted = peak = 0
    counted = 0
    for i, (ids, length) in enumerate(reqs):
        if i == counted_from and warm:  # the warm-up is over: count from here
            hit = inp = evicted = peak = 0
        counted += i >= counted_from
        k = 0
        while k < len(ids) and ids[k] in parent:
            k += 1
        hit += min(k * B, length)
        inp += length
        # A chain longer than the pool: its tail is cached and dropped at once (counted as evicted).
        dropped = max(0, len(ids) - capacity)
        chain_ids = ids[:len(ids) - dropped]
        evicted += dropped
        chain = set(chain_ids)
        for j, h in enumerate(chain_ids):
            if h not in parent:
                p = chain_ids[j - 1] if j else None
                parent[h], depth[h], children[h] = p, j + 1, 0
                if p is not None:
                    children[p] += 1
            nextuse[h] = nxt[i][j]
        for h in chain_ids:
            if children[h] == 0:
                heapq.heappush(heap, (-nextuse[h], -depth[h], h))
        size = len(parent)
        deferred = []
        while size > capacity:
            n, d, h = heapq.heappop(heap)
            if h not in parent or nextuse[h] != -n or children[h] != 0:
                continue
            if h in chain:
                deferred.append((n, d, h))
                continue
            p = parent.pop(h)
            del nextuse[h], depth[h], children[h]
            if p is not None:
                children[p] -= 1
                if children[p] == 0:
                    heapq.heappush(heap, (-nextuse[p], -depth[p], p))
            evicted += 1
            size -= 1
        for e in deferred:
            heapq.heappush(heap, e)
        peak = max(peak, len(parent))
    return {"requests": counted, "input_tokens": inp, "hit_tokens": hit,
            "token_hit_rate": hit / inp if inp else 0.0, "evicted_blocks": evicted, "peak_blocks": peak}

if __name__ == "__main__":
    B = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    frac = tuple(float(x) for x in sys.argv[4].split(":")) if len(sys.argv) > 4 else (0.0, 1.0)
    warm = len(sys.argv) > 5 and sys.argv[5] == "warm"
    print(json.dumps(replay(sys.argv[1], int(sys.argv[2]), B, frac, warm), sort_keys=True))
