"""Cache.attach_tiers / admit / record_stored over kvcache_tiers_attach, _admit and _record_stored: the
library's own tier leg of a prompt, with "the engine's" device memory a numpy array its copy callables
read and write. A prompt computed, evicted by another to host and asked again comes back loaded (its
bytes the ones written), then as a device hit; the refused calls change nothing."""
import numpy as np
import pytest

import kvcache
from test_tiers import GEOMETRY, Engine

BLOCK_TOKENS = GEOMETRY["block_tokens"]


def pattern(k, n):
    return np.random.default_rng(int(k["lo"]) % (1 << 32)).integers(0, 256, n, dtype=np.uint8)


def serve(cache, engine, seq, prompt):
    """Admits `prompt`, checks the bytes of the blocks that came from a cache, writes the rest, commits,
    records and frees; returns the admission."""
    cache.add_sequence(seq, prompt)
    a = cache.admit(seq)
    keys, table = cache.prompt_keys(seq), cache.block_table(seq)
    from_cache = (a.device_tokens + a.loaded_tokens) // BLOCK_TOKENS
    for b, k in enumerate(keys):
        if b < from_cache:
            assert np.array_equal(engine.memory[table[b]], pattern(k, engine.memory.shape[1]))
        else:
            engine.memory[table[b]] = pattern(k, engine.memory.shape[1])
    cache.commit(seq, a.compute_tokens)
    cache.record_stored(seq, a.device_tokens // BLOCK_TOKENS)
    with pytest.raises(kvcache.InvalidArgumentError):
        cache.admit(seq)   # admitted already
    cache.free(seq)
    cache.validate()
    return a


@pytest.fixture
def engine():
    e = Engine(8, 256, deferred=False)
    with kvcache.TierManager(**GEOMETRY, device_blocks=8, host_blocks=16, layer_groups=2,
                             synchronous_eviction_copies=True, record_events=True,
                             device_to_host=lambda *a: e.copy(True, *a),
                             host_to_device=lambda *a: e.copy(False, *a)) as t:
        e.tiers = t
        yield e


def test_a_prompt_comes_back_from_host_then_from_the_device(engine):
    with kvcache.Cache(8, block_tokens=BLOCK_TOKENS, record_events=True) as cache:
        cache.attach_tiers(engine.tiers)
        a_prompt, b_prompt = list(range(30)), list(range(100, 130))
        assert serve(cache, engine, 1, a_prompt) == kvcache.TierAdmission(0, 0, 30, 0, 0, 0)
        # B takes all eight blocks: A's seven cached full blocks go to host.
        assert serve(cache, engine, 2, b_prompt) == kvcache.TierAdmission(0, 0, 30, 0, 0, 0)
        assert engine.tiers.stats().host.occupancy == 7
        # A again: loaded from host, two tokens computed; then a device hit.
        assert serve(cache, engine, 3, a_prompt) == kvcache.TierAdmission(0, 28, 2, 7, 0, 0)
        assert serve(cache, engine, 4, a_prompt) == kvcache.TierAdmission(28, 0, 2, 0, 0, 0)
        stats = engine.tiers.stats()
        assert stats.host.loaded_blocks == 7 and stats.host.hits == 7
        # The cache's events carry the tiers' after its own.
        assert {e.tier for e in cache.drain_events()} == {kvcache.Tier.DEVICE, kvcache.Tier.HOST}
        cache.detach_tiers()
        with pytest.raises(kvcache.InvalidArgumentError):
            cache.detach_tiers()


def test_refused_calls_change_nothing(engine):
    with kvcache.Cache(8, block_tokens=BLOCK_TOKENS) as cache, \
            kvcache.TierManager(**dict(GEOMETRY, block_tokens=8), device_blocks=8) as wide, \
            kvcache.TierManager(**GEOMETRY, device_blocks=4) as short:
        cache.add_sequence(1, list(range(10)))
        with pytest.raises(kvcache.InvalidArgumentError):
            cache.admit(1)   # nothing attached
        for other in (wide, short):
            with pytest.raises(kvcache.InvalidArgumentError):
                cache.attach_tiers(other)
        cache.attach_tiers(engine.tiers)
        with pytest.raises(kvcache.InvalidArgumentError):
            cache.attach_tiers(engine.tiers)
        with kvcache.Cache(8, block_tokens=BLOCK_TOKENS) as second, pytest.raises(kvcache.InvalidArgumentError):
            second.attach_tiers(engine.tiers)   # one cache per tier manager
        before, tier_before = cache.stats(), engine.tiers.stats()
        for kv in (11, 7, -1):   # above the prompt, below its full blocks before the last token
            with pytest.raises(kvcache.InvalidArgumentError):
                cache.admit(1, kv)
        with pytest.raises(kvcache.UnknownSequenceError):
            cache.admit(2)
        with pytest.raises(kvcache.InvalidArgumentError):
            cache.record_stored(1, -1)
        assert cache.stats() == before and engine.tiers.stats() == tier_before
        cache.add_sequence(2, list(range(100, 160)))
        with pytest.raises(kvcache.InsufficientBlocksError):
            cache.admit(2)   # 15 blocks of a pool of 8
        assert cache.block_table(2).size == 0
        assert cache.admit(1) == kvcache.TierAdmission(0, 0, 10, 0, 0, 0)
