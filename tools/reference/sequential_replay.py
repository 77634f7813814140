#!/usr/bin/env python3
"""Independent reference for `kvcache replay --mode sequential --policy lru` on a Mooncake JSONL trace.

Written from the documented semantics only (README, "Sequential replay"), with a lazy-deletion heap of
leaves keyed by (last stamp, -depth). Prints the same JSON keys, so the two can be compared:

    python3 tools/reference/sequential_replay.py TRACE CAPACITY_BLOCKS [BLOCK_TOKENS]
"""
import heapq, json, math, sys

def replay(path, capacity, B=512):
    parent, stamp, depth, children = {}, {}, {}, {}
    heap = []  # (stamp, -depth, id) for leaves; stale entries skipped
    hit = inp = evicted = peak = n = 0
    for now, line in enumerate(open(path), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        ids = r["hash_ids"]
        assert len(ids) == math.ceil(r["input_length"] / B)
        n += 1
        k = 0
        while k < len(ids) and ids[k] in parent:
            k += 1
        hit += min(k * B, r["input_length"])
        inp += r["input_length"]
        chain = set(ids)
        for i, h in enumerate(ids):
            if h not in parent:
                p = ids[i - 1] if i else None
                parent[h], depth[h], children[h] = p, i + 1, 0
                if p is not None:
                    children[p] += 1
            stamp[h] = now
        for h in ids:
            if children[h] == 0:
                heapq.heappush(heap, (now, -depth[h], h))
        size = len(parent)
        deferred = []
        while size > capacity:
            if not heap:  # only the current chain is left: drop its tail
                h = next(x for x in reversed(ids) if x in parent)
            else:
                s, d, h = heapq.heappop(heap)
                if h not in parent or stamp[h] != s or children[h] != 0:
                    continue
                if h in chain:
                    deferred.append((s, d, h))
                    continue
            p = parent.pop(h)
            del stamp[h], depth[h], children[h]
            if p is not None:
                children[p] -= 1
                if children[p] == 0:
                    heapq.heappush(heap, (stamp[p], -depth[p], p))
            evicted += 1
            size -= 1
        for e in deferred:
            heapq.heappush(heap, e)
        peak = max(peak, len(parent))
    return {"requests": n, "input_tokens": inp, "hit_tokens": hit, "token_hit_rate": hit / inp,
            "evicted_blocks": evicted, "peak_blocks": peak}

if __name__ == "__main__":
    print(json.dumps(replay(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 512), sort_keys=True))
