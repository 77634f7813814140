#!/usr/bin/env python3
"""Model-based check of the KV event stream against vLLM's own decoder.

For each seed, runs `kvcache-events-check` (a seeded random serving sequence on a KVCacheManager that
publishes its events on a ZMQ PUB socket with a replay socket), subscribes as a router would
(SUB for the live stream, DEALER on the replay socket for the gaps), decodes every batch with
msgspec into vLLM's `KVEventBatch`, and rebuilds the cache from the events alone. The rebuilt cache
must equal the contents the publisher prints at the end: the same device block hashes with the same
parents (medium GPU), and the same host-tier blocks (medium CPU, evicted device blocks copied down; odd
seeds only, even seeds run the device pool alone, whose evictions are recorded by its batch path).
Each stored block's token ids must also hash, with its parent, to its hash (docs/BLOCK_KEYS.md), so
the token ids a router indexes are the ones the cache keyed.

The first batches the subscriber receives live are discarded on purpose, so that every run also
recovers a gap through the replay socket.

usage: check_events.py PATH/TO/kvcache-events-check [SEEDS] [STEPS]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import msgspec
import xxhash
import zmq

import vllm_kv_events

kv = vllm_kv_events.load()
ROOT = bytes.fromhex("e7bc82a8a9a14a588f0346a5b741f558")  # root key, empty namespace, adapter and salt
DROPPED_LIVE = 3
END_SEQ = -1


def key_of(parent: bytes, tokens: list[int]) -> bytes:
    """docs/BLOCK_KEYS.md: XXH3-128 of parent (lo, hi as u64 LE) and the token ids (u32 LE)."""
    hi, lo = parent[:8], parent[8:]
    data = lo[::-1] + hi[::-1] + b"".join(t.to_bytes(4, "little") for t in tokens)
    return xxhash.xxh3_128_digest(data)


def collect(driver: str, seed: int, steps: int, tmp: str):
    pub, replay = f"ipc://{tmp}/pub-{seed}", f"ipc://{tmp}/replay-{seed}"
    proc = subprocess.Popen([driver, pub, replay, str(seed), str(steps)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        sub, dealer, expected = start(proc, pub, replay)
        batches, seen_live, replayed = receive(sub, dealer, expected["last_seq"], DROPPED_LIVE)
        sub.close(0)
        dealer.close(0)
        return expected, batches, seen_live, replayed
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def start(proc, pub: str, replay: str, settle: float = 0.0):
    """Once the driver `proc` says "ready": connects a SUB to `pub` and a DEALER to `replay`, waits
    `settle` seconds (the subscription reaching the publisher), tells the driver to go, and returns both
    sockets and the JSON line the driver prints when it is done."""
    assert proc.stdout.readline().strip() == "ready", "the publisher did not start"
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.connect(pub)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(replay)
    time.sleep(settle)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return sub, dealer, json.loads(proc.stdout.readline())


def receive(sub, dealer, last: int, drop: int):
    """Batches 0...last as a router gets them: live from `sub` (its first `drop` thrown away), the gaps
    from the replay socket behind `dealer`. Returns the payloads in order, the live count and the
    replayed count."""
    payloads, seen_live, dropped = {}, 0, 0
    while sub.poll(1000):
        topic, seq_bytes, payload = sub.recv_multipart()
        seq = int.from_bytes(seq_bytes, "big", signed=True)
        assert topic == b""
        seen_live += 1
        if dropped < drop:
            dropped += 1
            continue
        payloads[seq] = payload
        if seq == last:
            break
    missing = [s for s in range(last + 1) if s not in payloads]
    replayed = 0
    if missing:
        dealer.send_multipart([b"", missing[0].to_bytes(8, "big")])
        while True:
            assert dealer.poll(5000), "no answer from the replay socket"
            empty, topic, seq_bytes, payload = dealer.recv_multipart()
            seq = int.from_bytes(seq_bytes, "big", signed=True)
            if seq == END_SEQ:
                assert topic == b"" and payload == b""
                break
            payloads.setdefault(seq, payload)
            replayed += 1
    assert sorted(payloads) == list(range(last + 1)), f"seqs missing after replay: {sorted(set(range(last + 1)) - set(payloads))}"
    return [payloads[s] for s in range(last + 1)], seen_live, replayed


# kvcache_tier as vLLM's `medium`.
MEDIUM = {0: "GPU", 1: "CPU", 2: "DISK"}


def flatten(batches: list[bytes]):
    """The batches' events in order, decoded by vLLM's decoder, as (kind, medium, block size, parent, hashes)
    with kind kvcache_event_kind's value: what a twin cache's drained events give (the block size and
    parent of stored blocks only; an AllBlocksCleared as (2, "GPU", 0, None, []))."""
    decoder = msgspec.msgpack.Decoder(type=kv.KVEventBatch)
    out = []
    for raw in batches:
        batch = decoder.decode(raw)
        assert batch.events, "an empty batch was published"
        for e in batch.events:
            if isinstance(e, kv.BlockStored):
                out.append((0, e.medium, e.block_size, e.parent_block_hash, list(e.block_hashes)))
            elif isinstance(e, kv.BlockRemoved):
                out.append((1, e.medium, 0, None, list(e.block_hashes)))
            else:
                out.append((2, "GPU", 0, None, []))
    return out


def rebuild(batches: list[bytes], block_size: int):
    decoder = msgspec.msgpack.Decoder(type=kv.KVEventBatch)
    media: dict[str, dict[bytes, bytes | None]] = {}
    counts = {"BlockStored": 0, "BlockRemoved": 0, "AllBlocksCleared": 0, "CPU": 0}
    for raw in batches:
        batch = decoder.decode(raw)
        assert isinstance(batch, kv.EventBatch) and batch.data_parallel_rank == 0 and batch.ts > 1e9
        assert batch.events, "an empty batch was published"
        for e in batch.events:
            counts[type(e).__name__] += 1
            counts["CPU"] += getattr(e, "medium", None) == "CPU"
            if isinstance(e, kv.BlockStored):
                assert e.block_size == block_size and e.lora_id is None
                # Device blocks carry their token ids; the lower tiers see keys and bytes only.
                if e.medium == "GPU":
                    assert len(e.token_ids) == len(e.block_hashes) * block_size, "stored blocks without their token ids"
                else:
                    assert e.medium in ("CPU", "DISK") and e.token_ids == [], f"unexpected {e.medium} event"
                cache = media.setdefault(e.medium, {})
                parent = e.parent_block_hash
                for i, h in enumerate(e.block_hashes):
                    tokens = e.token_ids[i * block_size:(i + 1) * block_size]
                    if tokens:
                        assert key_of(parent if parent is not None else ROOT, tokens) == h, "token ids do not give the hash"
                    assert h not in cache, "stored twice"
                    cache[h] = parent
                    parent = h
            elif isinstance(e, kv.BlockRemoved):
                cache = media.setdefault(e.medium, {})
                for h in e.block_hashes:
                    assert h in cache, "removed a block never stored"
                    del cache[h]
            else:
                assert isinstance(e, kv.AllBlocksCleared)
                media.pop("GPU", None)  # the device pool's reset: the lower tiers keep their blocks
    return media, counts


def main():
    driver = sys.argv[1]
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 400
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, seeds + 1):
            expected, batches, live, replayed = collect(driver, seed, steps, tmp)
            media, counts = rebuild(batches, expected["block_size"])
            want = {bytes.fromhex(k): (bytes.fromhex(v) if v else None) for k, v in expected["contents"].items()}
            got = media.get("GPU", {})
            assert got == want, f"seed {seed}: rebuilt {len(got)} blocks, the cache holds {len(want)}"
            host = {bytes.fromhex(k) for k in expected["host"]}
            assert set(media.get("CPU", {})) == host, f"seed {seed}: rebuilt {len(media.get('CPU', {}))} host blocks, the tier holds {len(host)}"
            assert counts["CPU"] > 0 if seed % 2 else counts["CPU"] == 0, f"seed {seed}: host-tier events {counts['CPU']}"
            assert counts["BlockRemoved"] > 0, f"seed {seed}: no removal"
            assert replayed >= DROPPED_LIVE, "the replay socket was not exercised"
            print(f"seed {seed}: {len(batches)} batches ({live} live, {replayed} replayed), {counts}, "
                  f"{len(want)} device and {len(host)} host blocks rebuilt exactly")
    print("events: vLLM's decoder rebuilt the cache exactly")


if __name__ == "__main__":
    main()
