#!/usr/bin/env python3
"""Independent reference for `kvcache replay --format ragpulse --capacity-tokens ... --policy lru,pgdsf --json`
(the finite RAG replay: a prefix tree and a chunk store sharing one pool of blocks).

Written from the documented semantics only (README, "Chunk reuse"; docs/ARCHITECTURE.md, the finite RAG
replay), with data structures of its own (dicts of node records and a lazily invalidated heap):
- a request's path is its segments in the order sys_prompt, passages_ids, history, web_search,
  user_input (one segment per id, its length from the side file N_<kind>.jsonl); template tokens are
  never cached;
- the capacity: N% is round-half-up(N / 100 x the tokens of the trace's distinct (kind, id) segments),
  at least 1 token; the pool holds capacity // block_tokens blocks and a node of t tokens takes
  ceil(t / block_tokens) of them;
- a node is (parent node, (kind, id)); serving a request: the longest cached run of leading nodes is the
  prefix hit; with chunk reuse, every later segment with a cached node of the same (kind, id) anywhere is a
  chunk hit (ceil(ratio x tokens) of it recomputed) and uses the most recently used such node; hits are
  counted before anything of the request is cached. Then each node of the path is cached in turn, evicting
  leaves that the request has not used; when no such leaf is left (or the node is larger than the pool)
  the rest of the path is not cached;
- LRU evicts the leaf used longest ago; PGDSF the leaf of smallest clock_at_last_use + uses x miss_cost /
  blocks, ties by least recent use, the clock becoming each victim's value. A node's uses restart at 0
  when it is cached again. miss_cost is the modelled seconds to compute the node's tokens after the tokens
  of the path before it (s_token x t + s_pair x t x (before + (t + 1) / 2)); with chunk reuse, while
  another node of the same (kind, id) is cached, the recompute ratio of that;
- a host tier (--host-capacity, chunk reuse runs only; default none): when the pool evicts the last
  cached node of a (kind, id), the chunk goes to host (ceil(t / block_tokens) host blocks, least recently
  used chunks dropped to make room, a chunk larger than the host dropped; one already there is only made
  most recently used). A later segment with no cached node of its (kind, id) but a host copy is a chunk
  hit from host (counted in chunk_hit_tokens and host_hit_tokens, ceil(ratio x tokens) recomputed), and
  makes the copy most recently used; the host keeps copies of chunks cached again.

    python3 tools/reference/ragpulse_finite_replay.py TRACE --capacity 5%,10%,20% --policy lru,pgdsf \
        --seconds-per-token S --seconds-per-pair P [--block-tokens 16] [--ratio 0.15] [--requests N]
        [--host-capacity TOKENS|N%]

Prints {"runs": [...]} with one run per capacity, policy and reuse (prefix only, then chunk reuse), in
that order: the integer figures of the kvcache report's runs.
"""
import argparse, heapq, json, math, os
from collections import OrderedDict

from ragpulse_replay import KINDS, lengths  # the side files, read as the unbounded reference reads them


def load(trace, side_dir):
    tables = lengths(side_dir)
    requests = []
    for line in open(trace):
        if line.strip():
            r = json.loads(line)
            segs = [((kind, i), tables[kind][i]) for kind, _, _ in KINDS for i in r["hash_ids"].get(kind, [])]
            requests.append((r["input_length"], segs))
    return requests


class Node:
    __slots__ = ("parent", "ident", "tokens", "blocks", "cached", "children_cached", "uses", "clock_at_use",
                 "cost", "last_use", "request", "stamp")

    def __init__(self, parent, ident, tokens, blocks):
        self.parent, self.ident, self.tokens, self.blocks = parent, ident, tokens, blocks
        self.cached = False
        self.children_cached = 0
        self.uses = 0
        self.clock_at_use = 0.0
        self.cost = 0.0
        self.last_use = 0
        self.request = -1
        self.stamp = 0


class Pool:
    def __init__(self, capacity_blocks, block_tokens, policy, chunk_reuse, ratio, s_token, s_pair, host_blocks=0):
        self.host_capacity = host_blocks
        self.host = OrderedDict()  # ident -> blocks, least recently used first
        self.host_used = 0
        self.capacity, self.block_tokens, self.policy = capacity_blocks, block_tokens, policy
        self.chunk_reuse, self.ratio, self.s_token, self.s_pair = chunk_reuse, ratio, s_token, s_pair
        self.root = Node(None, None, 0, 0)
        self.root.cached = True
        self.children = {}     # (id(parent node), ident) -> node
        self.copies = {}       # ident -> set of cached nodes
        self.heap = []         # (value, last_use, seq, node, stamp); stale entries skipped
        self.seq = 0
        self.used = 0
        self.clock = 0.0
        self.now = 0
        self.request = 0
        self.evicted = 0

    def seconds(self, tokens, before):
        t = float(tokens)
        return self.s_token * t + self.s_pair * (t * (float(before) + (t + 1) / 2))

    def value(self, n):
        if self.policy == "lru":
            return float(n.last_use)
        cost = n.cost
        if self.chunk_reuse and len(self.copies.get(n.ident, ())) >= 2:
            cost = self.ratio * n.cost
        return n.clock_at_use + n.uses * cost / float(n.blocks)

    def is_leaf(self, n):
        return n is not self.root and n.cached and n.children_cached == 0

    def push(self, n):
        """n's value may have changed: older heap entries of n are stale from now on."""
        n.stamp += 1
        if self.is_leaf(n):
            self.seq += 1
            heapq.heappush(self.heap, (self.value(n), n.last_use, self.seq, n, n.stamp))

    def reprice(self, ident):
        for m in self.copies.get(ident, ()):
            self.push(m)

    def use(self, n):
        self.now += 1
        n.last_use = self.now
        n.uses += 1
        n.clock_at_use = self.clock
        n.request = self.request
        self.push(n)

    def make_room(self, need):
        if need > self.capacity:
            return False
        skipped = []
        ok = True
        while self.used + need > self.capacity:
            while self.heap:
                value, _, _, n, stamp = self.heap[0]
                if stamp != n.stamp or not self.is_leaf(n):
                    heapq.heappop(self.heap)
                    continue
                if n.request == self.request:
                    skipped.append(heapq.heappop(self.heap))
                    continue
                break
            if not self.heap:
                ok = False
                break
            value, _, _, victim, _ = heapq.heappop(self.heap)
            if self.policy == "pgdsf":
                self.clock = value
            self.evict(victim)
        for entry in skipped:
            heapq.heappush(self.heap, entry)
        return ok

    def evict(self, n):
        n.cached = False
        n.stamp += 1
        self.used -= n.blocks
        self.evicted += 1
        self.copies[n.ident].discard(n)
        if not self.copies[n.ident]:
            del self.copies[n.ident]
            if self.chunk_reuse and self.host_capacity > 0:
                self.spill(n.ident, n.blocks)
        self.reprice(n.ident)
        n.parent.children_cached -= 1
        self.push(n.parent)

    def spill(self, ident, blocks):
        if blocks > self.host_capacity:
            return
        if ident not in self.host:
            while self.host_used + blocks > self.host_capacity:
                _, dropped = self.host.popitem(last=False)
                self.host_used -= dropped
            self.host[ident] = blocks
            self.host_used += blocks
        self.host.move_to_end(ident)

    def serve(self, segs):
        self.request += 1
        prefix = chunk = recomputed = from_host = 0
        node, k = self.root, 0
        while k < len(segs):
            child = self.children.get((id(node), segs[k][0]))
            if child is None or not child.cached:
                break
            prefix += segs[k][1]
            self.use(child)
            node = child
            k += 1
        if self.chunk_reuse:
            for ident, tokens in segs[k:]:
                held = self.copies.get(ident)
                if held:
                    chunk += tokens
                    recomputed += math.ceil(self.ratio * tokens)
                    self.use(max(held, key=lambda m: m.last_use))
                elif ident in self.host:
                    chunk += tokens
                    from_host += tokens
                    recomputed += math.ceil(self.ratio * tokens)
                    self.host.move_to_end(ident)
        position = prefix
        for ident, tokens in segs[k:]:
            child = self.children.get((id(node), ident))
            if child is None:
                child = Node(node, ident, tokens, -(-tokens // self.block_tokens))
                self.children[(id(node), ident)] = child
            if not self.make_room(child.blocks):
                break
            self.used += child.blocks
            child.cached = True
            node.children_cached += 1
            self.push(node)
            self.copies.setdefault(ident, set()).add(child)
            self.reprice(ident)
            child.cost = self.seconds(tokens, position)
            child.uses = 0
            self.use(child)
            position += tokens
            node = child
        return prefix, chunk, recomputed, from_host


def capacity_tokens(item, unique):
    if item.endswith("%"):
        return max(1, math.floor(float(item[:-1]) / 100 * unique + 0.5))
    return int(item)


def main():
    a = argparse.ArgumentParser()
    a.add_argument("trace")
    a.add_argument("--side-files")
    a.add_argument("--capacity", required=True)
    a.add_argument("--policy", default="lru,pgdsf")
    a.add_argument("--block-tokens", type=int, default=16)
    a.add_argument("--ratio", type=float, default=0.15)
    a.add_argument("--seconds-per-token", type=float, required=True)
    a.add_argument("--seconds-per-pair", type=float, required=True)
    a.add_argument("--requests", type=int, help="only the first N requests (default: all)")
    a.add_argument("--host-capacity", help="a host tier of this many tokens, or N%% of the unique tokens (default: none)")
    o = a.parse_args()
    requests = load(o.trace, o.side_files or os.path.dirname(os.path.abspath(o.trace)))
    unique, seen = 0, set()
    for _, segs in requests:
        for ident, tokens in segs:
            if ident not in seen:
                seen.add(ident)
                unique += tokens
    if o.requests is not None:
        requests = requests[:o.requests]
    host_tokens = capacity_tokens(o.host_capacity, unique) if o.host_capacity else 0
    runs = []
    for item in o.capacity.split(","):
        tokens = capacity_tokens(item, unique)
        for policy in o.policy.split(","):
            for chunk_reuse in (False, True):
                pool = Pool(tokens // o.block_tokens, o.block_tokens, policy, chunk_reuse, o.ratio,
                            o.seconds_per_token, o.seconds_per_pair, host_tokens // o.block_tokens)
                r = dict(policy=policy, capacity_tokens=tokens, capacity_blocks=tokens // o.block_tokens,
                         chunk_reuse=chunk_reuse, requests=0, input_tokens=0, prefix_hit_tokens=0,
                         chunk_hit_tokens=0, host_hit_tokens=0, recomputed_tokens=0)
                for input_length, segs in requests:
                    p, c, rc, h = pool.serve(segs)
                    r["requests"] += 1
                    r["input_tokens"] += input_length
                    r["prefix_hit_tokens"] += p
                    r["chunk_hit_tokens"] += c
                    r["recomputed_tokens"] += rc
                    r["host_hit_tokens"] += h
                    assert pool.used <= pool.capacity and pool.host_used <= pool.host_capacity
                r["reused_tokens"] = r["prefix_hit_tokens"] + r["chunk_hit_tokens"]
                r["saved_prefill_tokens"] = r["reused_tokens"] - r["recomputed_tokens"]
                r["evicted_nodes"] = pool.evicted
                runs.append(r)
    print(json.dumps({"unique_segment_tokens": unique, "runs": runs}))


if __name__ == "__main__":
    main()
