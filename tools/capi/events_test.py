#!/usr/bin/env python3
"""The event publisher of the C ABI against vLLM's own decoder.

Writes a configuration file (events.enabled, ipc:// endpoints for the PUB and replay sockets, a small
pool so blocks are evicted, a disk tier whose events the publisher adds), runs tools/capi/events_driver.c
on it, subscribes as a router would (SUB for the live stream, DEALER on the replay socket for the gaps),
and decodes every batch with msgspec into vLLM's `KVEventBatch`. The batches must be numbered 0...last
without a gap after replay, and their events, in order, must be exactly the events the driver's twin cache
and tiers (same configuration, same calls) hand to kvcache_drain_events and kvcache_tiers_take_events:
kind, medium, block size, parent and block hashes. Each stored block's token ids must hash, with its
parent, to its hash (docs/BLOCK_KEYS.md), and the stream must rebuild a consistent cache
(tools/events/check_events.py's rebuild: nothing stored twice, nothing removed that was not stored), its
disk tier holding exactly the blocks put there.
The subscriber connects half a second before the driver starts, so most batches arrive live; the first
live batches are dropped on purpose, so the replay socket is always exercised.

usage: events_test.py PATH/TO/events_driver [SEEDS] [STEPS]
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "events"))
import check_events  # noqa: E402  (vLLM's event types, the subscriber's sockets, the rebuild)

BLOCK_TOKENS = 16
DROPPED_LIVE = 2
MEDIUM = check_events.MEDIUM


def run(driver: str, seed: int, steps: int, tmp: str):
    pub, replay = f"ipc://{tmp}/pub-{seed}", f"ipc://{tmp}/replay-{seed}"
    config = os.path.join(tmp, f"kvcache-{seed}.yaml")
    with open(config, "w") as f:
        f.write(f"capacity_blocks: 48\nblock_tokens: {BLOCK_TOKENS}\npolicy: lru\n"
                "layout:\n  layers: 2\n  kv_heads: 2\n  head_dim: 8\n  dtype_bytes: 2\n"
                f"tiers:\n  disk_path: {tmp}/disk-{seed}\n  disk_bytes: 67108864\n  lock_host_memory: false\n"
                f"events:\n  enabled: true\n  endpoint: {pub}\n  replay_endpoint: {replay}\n")
    proc = subprocess.Popen([driver, config, f"{tmp}/twin-disk-{seed}", str(seed), str(steps)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        sub, dealer, expected = check_events.start(proc, pub, replay, settle=0.5)
        last = expected["last_seq"]
        assert last >= 10, f"only {last + 1} batches published"
        batches, live, replayed = check_events.receive(sub, dealer, last, DROPPED_LIVE)
        assert live > DROPPED_LIVE, f"{live} batches received live"
        sub.close(0)
        dealer.close(0)
        proc.stdin.write("done\n")
        proc.stdin.flush()
        assert proc.wait(timeout=30) == 0, "the driver failed"
        return expected, batches, live, replayed
    finally:
        if proc.poll() is None:
            proc.kill()


def main():
    driver = sys.argv[1]
    seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, seeds + 1):
            expected, batches, live, replayed = run(driver, seed, steps, tmp)
            want = [(k, MEDIUM[t], bt, bytes.fromhex(p) if p else None, [bytes.fromhex(h) for h in keys])
                    for k, t, bt, p, keys in expected["events"]]
            got = check_events.flatten(batches)
            assert len(got) == len(want), f"seed {seed}: {len(got)} events published, the twin drained {len(want)}"
            for i, (g, w) in enumerate(zip(got, want)):
                assert g == w, f"seed {seed}: event {i} published {g}, the twin drained {w}"
            media, counts = check_events.rebuild(batches, BLOCK_TOKENS)
            assert counts["BlockRemoved"] > 0 and expected["evicted_blocks"] > 0, "no eviction: make the pool smaller"
            assert len(media.get("DISK", {})) == expected["disk_blocks"] > 0, "the disk tier's blocks are not the ones put"
            assert replayed >= DROPPED_LIVE, "the replay socket was not exercised"
            print(f"seed {seed}: {len(batches)} batches ({live} live, {replayed} replayed), {len(got)} events equal to the twin's, "
                  f"{counts}, {len(media.get('GPU', {}))} device and {len(media.get('DISK', {}))} disk blocks rebuilt")
    print("events_test: the C ABI's publisher, decoded by vLLM's decoder, is the cache's event stream")


if __name__ == "__main__":
    main()
