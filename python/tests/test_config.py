"""Caches, tiers and the event publisher opened from a configuration (docs/CONFIGURATION.md), through
libkvcache_config.so, which the bundled libkvcache_c.so opens from its own folder.

- Cache.from_file and Cache.from_env build the pool the keys say (capacity, block size, policy: seen in the
  stats and in how many blocks a prompt takes), the variables override the file, a bad key is an
  InvalidArgumentError naming the key and its variable, and TierManager.from_config builds the tiers of the
  same file (None without a tier).
- KVCACHE_CONFIG_LIBRARY naming a missing file makes every configuration call raise ConfigLibraryError.
- The event round trip: a publisher opened from a file naming tcp://127.0.0.1 endpoints, a subscriber as a
  router (pyzmq SUB, and DEALER on the replay socket for the batch it drops on purpose: tools/events'
  check_events.receive), a seeded random serving sequence on the cache and a tier manager whose events the
  publisher adds, and a twin cache and twin tiers of the same file driven with the same calls. Every batch,
  decoded by vLLM's own KVEventBatch (check_events.flatten), must be exactly the twin's drained events, and
  the stream must rebuild a cache (check_events.rebuild: token ids hashing to the keys, nothing stored twice
  or removed unstored) holding the blocks the cache holds.
The round trip needs pyzmq, msgspec and xxhash (tools/install-deps.sh installs them) and tools/events of the
repository: without them it is skipped with the reason, except under CI, where it fails.
"""
import os
import random
import socket
import sys
import time

import numpy as np
import pytest

import kvcache

CONFIG_VARIABLES = ("KVCACHE_CAPACITY_BLOCKS", "KVCACHE_BLOCK_TOKENS", "KVCACHE_POLICY", "KVCACHE_CONFIG_FILE",
                    "KVCACHE_CONFIG_LIBRARY", "KVCACHE_EVENTS_ENABLED", "KVCACHE_RECORD_EVENTS", "KVCACHE_TIERS_HOST_BLOCKS",
                    "KVCACHE_NAMESPACE")
EVENT_TOOLS = os.environ.get("KVCACHE_EVENT_TOOLS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                                    "..", "tools", "events")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No configuration variable of the caller's environment reaches a test."""
    for name in CONFIG_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def write(tmp_path, text, name="kvcache.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def blocks_for(cache, tokens):
    """How many blocks a prompt of `tokens` tokens takes in `cache` (added, allocated, then freed)."""
    cache.add_sequence(999, np.arange(tokens, dtype=np.uint32) + 7)
    try:
        return cache.allocate(999, tokens)
    finally:
        cache.free(999)


def test_from_file_builds_the_configured_pool(tmp_path):
    path = write(tmp_path, "capacity_blocks: 40\nblock_tokens: 4\npolicy: marking\n")
    with kvcache.Cache.from_file(path) as cache:
        assert (cache.capacity_blocks, cache.block_tokens) == (40, 4)
        assert cache.stats().capacity_blocks == 40
        assert blocks_for(cache, 4) == 1 and blocks_for(cache, 5) == 2 and blocks_for(cache, 160) == 40
        with pytest.raises(kvcache.InsufficientBlocksError):
            blocks_for(cache, 161)
        cache.validate()
    # A str path too, and events off: nothing recorded.
    with kvcache.Cache.from_file(str(path)) as cache:
        cache.add_sequence(1, np.arange(9, dtype=np.uint32))
        cache.allocate(1, 9)
        cache.commit(1, 9)
        assert cache.drain_events() == []


def test_variables_override_the_file_and_from_env_reads_them(tmp_path, monkeypatch):
    path = write(tmp_path, "capacity_blocks: 40\nblock_tokens: 4\nevents:\n  enabled: true\n")
    monkeypatch.setenv("KVCACHE_CAPACITY_BLOCKS", "24")
    with kvcache.Cache.from_file(path) as cache:
        assert (cache.capacity_blocks, cache.block_tokens) == (24, 4)
        # events.enabled: the cache records its events (a publisher drains them).
        cache.add_sequence(1, np.arange(9, dtype=np.uint32))
        cache.allocate(1, 9)
        cache.commit(1, 9)
        (event,) = cache.drain_events()
        assert event.kind == kvcache.EventKind.BLOCK_STORED and len(event.keys) == 2 and event.block_tokens == 4
    monkeypatch.setenv("KVCACHE_BLOCK_TOKENS", "1024")
    monkeypatch.setenv("KVCACHE_POLICY", "fifo")
    with kvcache.Cache.from_env() as cache:
        assert (cache.capacity_blocks, cache.block_tokens) == (24, 1024)
        assert blocks_for(cache, 1024) == 1 and blocks_for(cache, 1025) == 2
    monkeypatch.setenv("KVCACHE_CONFIG_FILE", str(path))
    monkeypatch.delenv("KVCACHE_CAPACITY_BLOCKS")
    monkeypatch.setenv("KVCACHE_BLOCK_TOKENS", "1")
    with kvcache.Cache.from_env() as cache:
        assert (cache.capacity_blocks, cache.block_tokens) == (40, 1)
        assert blocks_for(cache, 3) == 3


def test_a_bad_setting_names_its_key_and_opens_nothing(tmp_path, monkeypatch):
    with pytest.raises(kvcache.InvalidArgumentError, match=r"capacity_blocks \(KVCACHE_CAPACITY_BLOCKS\) is required"):
        kvcache.Cache.from_env()
    monkeypatch.setenv("KVCACHE_CAPACITY_BLOCKS", "-1")
    with pytest.raises(kvcache.InvalidArgumentError, match=r"capacity_blocks \(KVCACHE_CAPACITY_BLOCKS\): must be in"):
        kvcache.Cache.from_env()
    monkeypatch.setenv("KVCACHE_CAPACITY_BLOCKS", "8")
    monkeypatch.setenv("KVCACHE_POLICY", "pgdsf")
    with pytest.raises(kvcache.InvalidArgumentError, match=r"policy \(KVCACHE_POLICY\): pgdsf prices"):
        kvcache.Cache.from_file(write(tmp_path, "block_tokens: 4\n"))
    with pytest.raises(kvcache.InvalidArgumentError, match="no such file"):
        kvcache.Cache.from_file(tmp_path / "missing.yaml")
    with pytest.raises(kvcache.InvalidArgumentError, match="NUL"):
        kvcache.Cache.from_file("a\0b")


def test_tiers_from_the_same_file(tmp_path):
    layout = "layout:\n  layers: 2\n  kv_heads: 2\n  head_dim: 8\n  dtype_bytes: 2\n"
    path = write(tmp_path, f"capacity_blocks: 24\nblock_tokens: 4\n{layout}"
                           "tiers:\n  host_blocks: 16\n  lock_host_memory: false\n")
    with kvcache.TierManager.from_config(path) as tiers:
        stats = tiers.stats()
        assert tiers.block_bytes == 2 * 2 * 2 * 8 * 2 * 4 == stats.block_bytes
        assert tiers.device_blocks == 24 and stats.host.capacity == 16 and stats.disk.capacity == 0
        tiers.validate()
    assert kvcache.TierManager.from_config(write(tmp_path, f"capacity_blocks: 24\n{layout}", "none.yaml")) is None
    with pytest.raises(kvcache.InvalidArgumentError, match=r"layout\.layers"):
        kvcache.TierManager.from_config(write(tmp_path, "capacity_blocks: 24\ntiers:\n  host_blocks: 16\n", "bare.yaml"))
    with pytest.raises(kvcache.InvalidArgumentError, match="both copy callables or neither"):
        kvcache.TierManager.from_config(path, device_to_host=lambda *a: None)


def test_publisher_is_none_unless_events_are_enabled(tmp_path):
    with kvcache.Cache.from_file(write(tmp_path, "capacity_blocks: 8\n")) as cache:
        assert kvcache.EventPublisher.open(cache, tmp_path / "kvcache.yaml") is None


def test_a_missing_configuration_library_is_a_typed_error(tmp_path, monkeypatch):
    path = write(tmp_path, "capacity_blocks: 8\nevents:\n  enabled: true\n")
    missing = str(tmp_path / "nowhere" / "libkvcache_config.so.1")
    with kvcache.Cache(8) as plain:
        monkeypatch.setenv("KVCACHE_CONFIG_LIBRARY", missing)
        monkeypatch.setenv("KVCACHE_CAPACITY_BLOCKS", "8")
        for call in (kvcache.Cache.from_env, lambda: kvcache.Cache.from_file(path), lambda: kvcache.TierManager.from_config(path),
                     lambda: kvcache.EventPublisher.open(plain, path)):
            with pytest.raises(kvcache.ConfigLibraryError) as raised:
                call()
            e = raised.value
            assert e.name == "KVCACHE_ERR_CONFIG_LIBRARY" and e.status == 16
            assert "libkvcache_config.so is needed" in e.message and missing in e.message, e.message
        # The rest of the library never needs it.
        plain.add_sequence(1, [1, 2, 3])
        assert plain.lookup(1).cached_tokens == 0
    monkeypatch.delenv("KVCACHE_CONFIG_LIBRARY")
    with kvcache.Cache.from_env() as cache:  # looked for again, and found beside the library
        assert cache.capacity_blocks == 8


# MARK: the event round trip

def event_tools():
    """tools/events' check_events (vLLM's event classes, the subscriber's receive, flatten and rebuild) and
    pyzmq; skipped with the reason when they cannot be imported, failed instead under CI."""
    try:
        import zmq
        if EVENT_TOOLS not in sys.path:
            sys.path.insert(0, EVENT_TOOLS)
        import check_events
        return check_events, zmq
    except (ImportError, FileNotFoundError) as e:
        reason = (f"the event round trip needs pyzmq, msgspec, xxhash, vLLM's kv_events.py (tools/install-deps.sh) "
                  f"and the repository's tools/events ({EVENT_TOOLS}, or KVCACHE_EVENT_TOOLS): {e}")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wire(key):
    """A block key as vLLM's block hash on the wire: the 16 bytes of hi then lo, big-endian."""
    return kvcache.key_to_int(key).to_bytes(16, "big")


def expected(events, medium):
    """Drained Events as check_events.flatten gives the published ones."""
    out = []
    for e in events:
        if e.kind == kvcache.EventKind.BLOCK_STORED:
            out.append((0, medium[int(e.tier)], e.block_tokens, None if e.parent is None else wire(e.parent),
                        [wire(k) for k in e.keys]))
        elif e.kind == kvcache.EventKind.BLOCK_REMOVED:
            out.append((1, medium[int(e.tier)], 0, None, [wire(k) for k in e.keys]))
        else:
            out.append((2, "GPU", 0, None, []))
    return out


class Serving:
    """A cache and its tiers driven by one seeded random serving sequence: prompts sharing prefixes are
    admitted (added, looked up, allocated, committed), their full blocks offloaded to the host tier, and
    freed; now and then, with nothing running, the pool is reset. Two instances with the same seed make
    the same calls."""

    def __init__(self, cache, tiers, seed, block_tokens):
        self.cache, self.tiers, self.rng, self.bt = cache, tiers, random.Random(seed), block_tokens
        self.prefixes = [[self.rng.randrange(50_000) for _ in range(3 * block_tokens)] for _ in range(4)]
        self.live, self.next_id, self.prompts = [], 0, []

    def step(self):
        rng, cache = self.rng, self.cache
        if self.live and (len(self.live) >= 3 or rng.random() < 0.4):
            cache.free(self.live.pop(rng.randrange(len(self.live))))
            return
        if not self.live and rng.random() < 0.03:
            cache.reset()
            return
        prompt = rng.choice(self.prefixes)[:rng.randrange(1, 3 * self.bt + 1)] + \
            [rng.randrange(50_000) for _ in range(rng.randrange(1, 3 * self.bt))]
        seq, self.next_id = self.next_id, self.next_id + 1
        cache.add_sequence(seq, prompt)
        hit = cache.lookup(seq)
        try:
            cache.allocate(seq, len(prompt) - hit.cached_tokens)
        except kvcache.InsufficientBlocksError:
            cache.free(seq)
            return
        cache.commit(seq, len(prompt) - hit.cached_tokens)
        keys = cache.prompt_keys(seq)
        self.prompts.append(keys)
        if len(keys) and rng.random() < 0.5:
            table = cache.block_table(seq)[:len(keys)]
            self.tiers.complete_store(self.tiers.prepare_store(table, keys))
        self.live.append(seq)

    def finish(self):
        for seq in self.live:
            self.cache.free(seq)
        self.live = []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_published_events_are_the_cache_events_through_vllms_decoder(tmp_path, seed):
    check_events, zmq = event_tools()
    bt = 4
    pub, replay = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    # One transfer thread: the host tier records a store's blocks as its copies finish, so with more the
    # order of a batch's CPU events would differ from the twin's.
    path = write(tmp_path, f"capacity_blocks: 24\nblock_tokens: {bt}\npolicy: lru\n"
                           "layout:\n  layers: 2\n  kv_heads: 2\n  head_dim: 8\n  dtype_bytes: 2\n"
                           "tiers:\n  host_blocks: 12\n  lock_host_memory: false\n  workers: 1\n"
                           f"events:\n  enabled: true\n  endpoint: {pub}\n  replay_endpoint: {replay}\n")
    ctx = zmq.Context.instance()
    sub, dealer = ctx.socket(zmq.SUB), ctx.socket(zmq.DEALER)
    with kvcache.Cache.from_file(path) as cache, kvcache.TierManager.from_config(path) as tiers, \
            kvcache.Cache.from_file(path) as twin, kvcache.TierManager.from_config(path) as twin_tiers:
        publisher = kvcache.EventPublisher.open(cache, path)
        assert publisher is not None
        with publisher:
            publisher.add_tiers(tiers)
            sub.connect(pub)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            dealer.connect(replay)
            time.sleep(0.3)  # the subscription reaching the publisher; batches missed live come by replay
            serving, twin_serving = Serving(cache, tiers, seed, bt), Serving(twin, twin_tiers, seed, bt)
            want, seqs = [], []
            for step in range(300):
                for s in (serving, twin_serving):
                    if step < 299:
                        s.step()
                    else:
                        s.finish()
                seq = publisher.publish()
                drained = expected(twin.drain_events(), check_events.MEDIUM) + \
                    expected(twin_tiers.take_events(), check_events.MEDIUM)
                assert (seq is None) == (not drained), f"step {step}: batch {seq} for {len(drained)} events"
                if seq is not None:
                    seqs.append(seq)
                    want += drained
            assert cache.drain_events() == [] and tiers.take_events() == [], "the publisher left events behind"
            assert seqs == list(range(len(seqs))) and len(seqs) > 50, seqs
            batches, live, replayed = check_events.receive(sub, dealer, seqs[-1], 1)  # the first live one dropped
            sub.close(0)
            dealer.close(0)
        with pytest.raises(kvcache.ClosedCacheError):
            publisher.publish()
        publisher.close()  # idempotent
        got = check_events.flatten(batches)
        assert len(got) == len(want), f"{len(got)} events published, the twin drained {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"event {i}: published {g}, the twin drained {w}"
        media, counts = check_events.rebuild(batches, bt)
        assert counts["BlockRemoved"] > 0 and counts["CPU"] > 0 and replayed >= 1, (counts, live, replayed)
        # What the stream rebuilds is what the cache holds: as many blocks, each of a prompt's keys, and
        # every prompt's cached prefix among them.
        device = media.get("GPU", {})
        assert len(device) == cache.stats().cached_blocks
        known = {wire(k) for keys in serving.prompts for k in keys}
        assert set(device) <= known
        for keys in serving.prompts:
            assert {wire(k) for k in keys[:cache.match_length(keys)]} <= set(device)
        assert len(media.get("CPU", {})) == tiers.stats().host.occupancy
