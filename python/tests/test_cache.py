"""kvcache.Cache over the bundled library: the serving cycle, the numpy paths (arrays read and written
in place), every status as its exception, and random operation sequences checked against a model of
the sequences' lifecycle, with nothing changed by any refused call."""
import random

import numpy as np
import pytest

import kvcache
from kvcache import Cache

B = 16


def snapshot(cache, live):
    """Everything a refused call must leave as it was."""
    return (cache.stats(), cache.free_block_count(), cache.sequence_count(),
            {s: (cache.block_table(s).tolist(), cache.token_count(s), cache.computed_tokens(s)) for s in sorted(live)})


def prefill(cache, seq, prompt):
    cache.add_sequence(seq, prompt)
    hit = cache.lookup(seq)
    cache.allocate(seq, len(prompt) - hit.cached_tokens, lookahead=1)
    cache.commit(seq, len(prompt) - hit.cached_tokens)
    return hit


def test_serving_cycle_prefix_hit_fork_and_copy_on_write():
    system = list(range(1000, 1048))
    with Cache(24, block_tokens=B, namespace="SmolLM2-135M", record_events=True) as cache:
        assert prefill(cache, 1, system + list(range(5000, 5020))) == kvcache.PrefixHit(0, 0)
        assert prefill(cache, 2, np.array(system + list(range(7000, 7012)), np.uint32)) == kvcache.PrefixHit(3, 48)
        cache.fork(2, 3)
        cache.append_tokens(3, [99])
        assert cache.allocate(3, 1) == 1
        copies = cache.drain_copies()
        assert copies.dtype == kvcache.BLOCK_COPY_DTYPE and len(copies) == 1
        table = cache.block_table(3)
        assert table.dtype == np.int32 and table[-1] == copies[0]["dst"]
        assert len(cache.drain_copies()) == 0  # moved out
        events = cache.drain_events()
        assert [e.kind for e in events] == [kvcache.EventKind.BLOCK_STORED] and events[0].tier == kvcache.Tier.DEVICE
        assert np.array_equal(events[0].keys, cache.prompt_keys(1)) and events[0].parent is None
        assert cache.drain_events() == []
        for seq in (1, 2, 3):
            cache.free(seq)
        cache.validate()
        stats = cache.stats()
        assert stats.used_blocks == 0 and stats.hit_tokens == 48 and stats.copied_blocks == 1 and stats.lookups == 2


def test_block_table_is_written_into_the_callers_row():
    with Cache(64, block_tokens=B) as cache:
        prefill(cache, 7, list(range(100)))
        rows = np.full((4, 16), -1, np.int32)  # an engine's block-table tensor
        view = cache.block_table(7, out=rows[2])
        assert np.shares_memory(view, rows) and view.tolist() == cache.block_table(7).tolist()
        assert (rows[2, len(view):] == -1).all() and (rows[[0, 1, 3]] == -1).all()
        short = np.full(3, -1, np.int32)
        with pytest.raises(kvcache.BufferTooSmallError) as e:
            cache.block_table(7, out=short)
        assert e.value.needed == len(view) and (short == -1).all()
        for bad in (np.zeros(8, np.int64), rows[:, 0], np.zeros(8, np.int32)[::2], [0] * 8):
            with pytest.raises(kvcache.InvalidArgumentError):
                cache.block_table(7, out=bad)


def test_keys_round_trip_between_caches():
    prompt = list(range(3 * B + 5))
    with Cache(16, block_tokens=B, namespace="m") as a, Cache(16, block_tokens=B, namespace="m") as b:
        prefill(a, 1, prompt)
        keys = a.prompt_keys(1)
        assert keys.dtype == kvcache.KEY_DTYPE and len(keys) == 3
        assert a.match_length(keys) == 3 and b.match_length(keys) == 0
        pairs = [(int(k["lo"]), int(k["hi"])) for k in keys]
        assert a.match_length(pairs) == 3 and a.match_length(np.array(pairs, np.uint64)) == 3
        assert kvcache.key_to_int(keys[0]) == pairs[0][1] << 64 | pairs[0][0]
        b.add_sequence_keys(5, keys, len(prompt))
        assert b.lookup(5) == kvcache.PrefixHit(0, 0)
        b.allocate(5, len(prompt))
        b.commit(5, len(prompt))
        assert b.match_length(keys) == 3
        with Cache(16, block_tokens=B, namespace="other") as c:
            prefill(c, 1, prompt)
            assert a.match_length(c.prompt_keys(1)) == 0  # namespaces never share keys


def test_salt_lora_and_multimodal_items_change_the_keys():
    prompt = list(range(2 * B + 1))
    with Cache(32, block_tokens=B) as cache:
        cache.add_sequence(1, prompt)
        cache.add_sequence(2, prompt, salt="tenant-b")
        cache.add_sequence(3, prompt, lora="adapter")
        cache.add_sequence(4, prompt, multimodal=[((1, 2), 3, 10)])
        cache.add_sequence(5, prompt, multimodal=[((1, 3), 3, 10)])
        firsts = {kvcache.key_to_int(cache.prompt_keys(s)[0]) for s in range(1, 6)}
        assert len(firsts) == 5
        with pytest.raises(kvcache.InvalidArgumentError):
            cache.add_sequence(6, prompt, multimodal=[((1, 2), 30, 10)])  # outside the prompt
        assert cache.sequence_count() == 5


def test_every_refusal_is_its_exception_and_changes_nothing():
    with Cache(8, block_tokens=B) as cache:
        prefill(cache, 1, list(range(40)))
        cache.add_sequence(2, list(range(500, 520)))
        live = {1, 2}
        before = snapshot(cache, live)
        refusals = [
            (kvcache.UnknownSequenceError, lambda: cache.free(9)),
            (KeyError, lambda: cache.lookup(9)),
            (kvcache.DuplicateSequenceError, lambda: cache.add_sequence(1, [1, 2, 3])),
            (kvcache.DuplicateSequenceError, lambda: cache.fork(1, 2)),
            (kvcache.InvalidArgumentError, lambda: cache.add_sequence(3, [])),
            (kvcache.InvalidArgumentError, lambda: cache.add_sequence(3, [1, -1])),
            (kvcache.InvalidArgumentError, lambda: cache.add_sequence(3, [1, 2 ** 32])),
            (kvcache.InvalidArgumentError, lambda: cache.add_sequence(3, [1.5])),
            (kvcache.InvalidArgumentError, lambda: cache.add_sequence(3, [1], salt="a\0b")),
            (kvcache.InvalidArgumentError, lambda: cache.free(1 + 2 ** 64)),  # refused, never truncated to 1
            (kvcache.InvalidArgumentError, lambda: cache.allocate(1, -1)),
            (kvcache.InvalidArgumentError, lambda: cache.lookup(1)),  # after allocate
            (kvcache.InvalidArgumentError, lambda: cache.commit(1, 10 ** 6)),
            (kvcache.InvalidArgumentError, lambda: cache.add_sequence_keys(3, [(0, 0)], 16)),  # the zero key
            (kvcache.InsufficientBlocksError, lambda: cache.allocate(2, 20, lookahead=10 ** 4)),
            (kvcache.BlocksInUseError, lambda: cache.reset()),
            (TypeError, lambda: cache.free(1.0)),
        ]
        for expected, call in refusals:
            with pytest.raises(expected) as e:
                call()
            if isinstance(e.value, kvcache.KVCacheError):
                assert e.value.name == kvcache.Status(e.value.status).name.join(["KVCACHE_", ""]) and e.value.message
            assert snapshot(cache, live) == before, f"{e.value!r} changed the cache"
            cache.validate()
        with pytest.raises(kvcache.InsufficientBlocksError) as e:
            cache.allocate(2, 20, lookahead=10 ** 4)
        assert e.value.needed > e.value.available == cache.free_block_count()
    with pytest.raises(kvcache.ClosedCacheError):
        cache.lookup(1)
    cache.close()  # idempotent


def test_creation_refusals():
    with pytest.raises(kvcache.InvalidArgumentError):
        Cache(0)
    with pytest.raises(kvcache.InvalidArgumentError):
        Cache(16, policy="pgdsf")  # the library knows no model: the recompute costs are required
    with pytest.raises(kvcache.InvalidArgumentError):
        Cache(16, policy="mru")
    with pytest.raises(kvcache.InvalidArgumentError):
        Cache(2 ** 64)
    with pytest.raises(kvcache.KVCacheMemoryError):
        Cache(2 ** 31 - 1)
    with Cache(16, policy=kvcache.EvictionPolicy.PGDSF, recompute_seconds_per_token=2.706e-5,
               recompute_seconds_per_context_pair=1.325e-9) as cache:
        prefill(cache, 1, list(range(40)))
        cache.validate()


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_keep_the_model_and_change_nothing_when_refused(seed):
    """Random calls, valid and not, against a model of which sequences live and how many tokens each
    knows and has computed; after every call the cache validates, and a refused call left it as it was."""
    rng = random.Random(seed)
    policy = ["lru", "fifo", "lfu"][seed % 3]
    cache = Cache(rng.choice([6, 12, 40]), block_tokens=rng.choice([1, 4, 16]), policy=policy, record_events=True)
    live = {}  # seq -> [tokens known, tokens computed, allocated since added, tokens its lookup found]
    vocabulary = [rng.randrange(50) for _ in range(8)]
    for step in range(300):
        seq = rng.randrange(8)
        op = rng.choice(["add", "add", "lookup", "allocate", "allocate", "commit", "append", "free", "fork",
                         "table", "drain", "reset"])
        before = snapshot(cache, live)
        try:
            if op == "add":
                n = rng.randrange(1, 60)
                cache.add_sequence(seq, [vocabulary[i % len(vocabulary)] for i in range(n)])
                assert seq not in live
                live[seq] = [n, 0, False, 0]
            elif op == "lookup":
                hit = cache.lookup(seq)
                assert seq in live
                assert hit.cached_tokens < live[seq][0] and hit.cached_tokens == hit.cached_blocks * cache.block_tokens
                live[seq][3] = hit.cached_tokens
            elif op == "allocate":
                known, computed, allocated, hit = live.get(seq, [0, 0, False, 0])
                cache.allocate(seq, rng.randrange(0, max(1, known - max(computed, hit) + 1)), rng.randrange(3))
                if not allocated:  # the first allocate pins what the lookup found and is still cached
                    pinned = cache.computed_tokens(seq)
                    assert pinned <= hit and pinned % cache.block_tokens == 0
                    live[seq][1], live[seq][2] = pinned, True
            elif op == "commit":
                known, computed, _, _ = live.get(seq, [0, 0, False, 0])
                n = rng.randrange(0, max(1, known - computed + 1))
                cache.commit(seq, n)
                live[seq][1] += n
            elif op == "append":
                cache.append_tokens(seq, [rng.randrange(50)])
                live[seq][0] += 1
            elif op == "free":
                cache.free(seq)
                del live[seq]
            elif op == "fork":
                child = rng.randrange(8)
                cache.fork(seq, child)
                assert seq in live and child not in live
                live[child] = list(live[seq])
            elif op == "table":
                table = cache.block_table(seq)
                assert seq in live and ((table >= 0) & (table < cache.capacity_blocks)).all()
                assert len(table) * cache.block_tokens >= live[seq][1]
            elif op == "drain":
                cache.drain_copies()
                cache.drain_events()
            else:
                cache.reset()
        except kvcache.KVCacheError as e:
            if isinstance(e, kvcache.UnknownSequenceError):
                assert seq not in live
            elif isinstance(e, kvcache.DuplicateSequenceError):
                assert op in ("add", "fork")
            assert snapshot(cache, live) == before, f"step {step}: refused {op} changed the cache: {e}"
        cache.validate()
        assert cache.sequence_count() == len(live)
        for s, (known, computed, _, _) in live.items():
            assert cache.token_count(s) == known and cache.computed_tokens(s) == computed, f"step {step} seq {s}"
    cache.close()


def test_metrics_text_counts_what_stats_count():
    with Cache(24, block_tokens=B) as cache:
        prefill(cache, 1, list(range(64)))
        prefill(cache, 2, list(range(64)) + [7])
        stats = cache.stats()
        lines = {line.split(" ")[0]: line.split(" ")[-1] for line in cache.metrics_text().splitlines()
                 if line and not line.startswith("#")}
        queries = [v for k, v in lines.items() if k.startswith("kvcache:prefix_cache_queries")]
        hits = [v for k, v in lines.items() if k.startswith("kvcache:prefix_cache_hits")]
        assert queries and float(queries[0]) == stats.query_tokens
        assert hits and float(hits[0]) == stats.hit_tokens == 64


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "pgdsf", "probation", "pgdsf-probation", "marking"])
def test_every_policy_name_opens_a_cache_that_evicts(policy):
    """Each policy by name (the C enum's members lower-cased, '-' for '_') serves a workload that evicts."""
    costs = dict(recompute_seconds_per_token=2.706e-5, recompute_seconds_per_context_pair=1.325e-9)
    rng = random.Random(7)
    with kvcache.Cache(16, block_tokens=4, policy=policy, **costs) as cache:
        for seq in range(1, 200):
            base = rng.randrange(10) * 100
            prompt = [base + i for i in range(9)]
            cache.add_sequence(seq, prompt)
            hit = cache.lookup(seq)
            cache.allocate(seq, len(prompt) - hit.cached_tokens)
            cache.commit(seq, len(prompt) - hit.cached_tokens)
            cache.free(seq)
            cache.validate()
        stats = cache.stats()
        assert stats.evicted_blocks > 0 and stats.hit_tokens > 0
    with pytest.raises(kvcache.InvalidArgumentError):
        kvcache.Cache(8, policy="arc")
