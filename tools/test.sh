#!/usr/bin/env bash
# The whole test suite: installs what is missing, runs every test (debug build), then the tests of
# the concurrent and raw-memory code again under ThreadSanitizer and AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
KVCACHE_TEST_DEPS=1 source tools/install-deps.sh   # also python3-jsonschema and chromium (the report checks)
# swift test includes the report checks: every subcommand's --json validated against docs/report.schema.json
# (ReportSchemaTests), and `kvcache report`'s page rendered in headless Chromium (HTMLReportTests).
swift test
bash tools/capi/smoke.sh  # the C ABI from C and Python: libkvcache_c.so, libkvcache_config.so (configuration, events to a ZMQ subscriber), tools/capi/example.{c,py}
bash tools/capi/allocs.sh  # no heap allocation per tier call in steady state (malloc counted, release build)

# The shipped library and the Python package: tools/install.sh into a temporary prefix (only kvcache_*
# exported, SONAME, no libswift*), the C and Python examples and the Python package's tests (python/tests,
# pip-installed into a virtual environment) with the Swift toolchain hidden, kvcache --version.
echo "== The shipped library and the Python package, without the Swift toolchain"
bash tools/capi/selfcontained.sh

# The tiers from Python and the adapters against vLLM's and SGLang's own classes (their wheels installed
# without dependencies into .build/adapters-venv; python/tests/engines.py lists the stand-ins).
echo "== Adapters: vLLM's offloading seam and SGLang's HiCache storage over the tiers"
bash tools/capi/adapters.sh

echo "== Sequential replay against the independent Python references (LRU and Belady; the README's figures)"
kvcache="$(swift build --show-bin-path)/kvcache"
shared_trace=../shared/data/mooncake/synthetic_trace.jsonl
traces=(tools/kvcache/Resources/mooncake-synthetic-1000.jsonl)
[ -f "$shared_trace" ] && traces+=("$shared_trace")
for trace in "${traces[@]}"; do
  for range in 0:1 0.5:1 0.5:1:warm; do
    python3 - "$kvcache" "$trace" "$range" <<'PY'
import json, subprocess, sys
kvcache, trace, rng = sys.argv[1:4]
warm = rng.endswith(":warm"); rng = rng.removesuffix(":warm")
capacities = ["220", "1000", "2200", "3000", "8192"]
def reference(script, capacity):
    args = [sys.executable, f"tools/reference/{script}", trace, capacity]
    if script == "belady_replay.py": args += ["512", rng] + (["warm"] if warm else [])
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
policies = ["lru", "fifo", "lfu", "pgdsf", "probation", "pgdsf-probation", "marking", "marking-noise", "belady"]
ours = json.loads(subprocess.run([kvcache, "replay", "--mode", "sequential", "--trace", trace, "--range", rng,
                                  "--policy", ",".join(policies), "--capacity-blocks", ",".join(capacities), "--json"]
                                 + (["--warm-up"] if warm else []),
                                 check=True, capture_output=True, text=True).stdout)
assert ours["schema_version"] == 1
runs = {(r["policy"], str(r["capacity_blocks"])): r for r in ours["runs"]}
bad = 0
for capacity in capacities:
    checks = [("belady", "belady_replay.py")] + ([("lru", "sequential_replay.py")] if rng == "0:1" else [])
    for policy, script in checks:
        ref = reference(script, capacity)
        diff = {k: (v, runs[policy, capacity].get(k)) for k, v in ref.items() if runs[policy, capacity].get(k) != v}
        print(f"{trace} range {rng}{' after a warm-up' if warm else ''} capacity {capacity} {policy}: "
              + ("identical" if not diff else f"DIFFERENT (reference, kvcache): {diff}"))
        bad += bool(diff)
    bound = runs["belady", capacity]["hit_tokens"]
    for p in policies[:-1]:
        if runs[p, capacity]["hit_tokens"] > bound:
            print(f"{trace} range {rng} capacity {capacity}: {p} beats the offline bound"); bad += 1
sys.exit(1 if bad else 0)
PY
  done
done
echo "== Finite RAGPulse replay against the independent Python reference (prefix tree and chunk store in one pool; then with a host tier)"
ragpulse=../shared/data/ragpulse/0_trace_days1-3.jsonl
if [ -f "$ragpulse" ]; then
  for sizes in "5%,10%,20% -" "10% 10%"; do
    set -- $sizes
    python3 - "$kvcache" "$ragpulse" "$1" "$2" <<'PY'
import json, subprocess, sys
kvcache, trace, capacity, host = sys.argv[1:5]
ours = json.loads(subprocess.run([kvcache, "replay", "--format", "ragpulse", "--trace", trace, "--capacity-tokens", capacity,
                                  "--policy", "lru,pgdsf", "--json"] + ([] if host == "-" else ["--host-capacity-tokens", host]),
                                 check=True, capture_output=True, text=True).stdout)
ref = json.loads(subprocess.run([sys.executable, "tools/reference/ragpulse_finite_replay.py", trace, "--capacity", capacity,
                                 "--policy", "lru,pgdsf", "--block-tokens", str(ours["block_tokens"]),
                                 "--ratio", repr(ours["recompute_ratio"]),
                                 "--seconds-per-token", repr(ours["cost_seconds_per_token"]),
                                 "--seconds-per-pair", repr(ours["cost_seconds_per_context_pair"])]
                                + ([] if host == "-" else ["--host-capacity", host]),
                                check=True, capture_output=True, text=True).stdout)
bad = int(ref["unique_segment_tokens"] != ours["unique_segment_tokens"]) + int(len(ref["runs"]) != len(ours["runs"]))
for r, o in zip(ref["runs"], ours["runs"]):
    diff = {k: (v, o.get(k)) for k, v in r.items() if o.get(k) != v}
    print(f"{trace} capacity {r['capacity_tokens']} host {host} {r['policy']} {'chunk' if r['chunk_reuse'] else 'prefix'}: "
          + ("identical" if not diff else f"DIFFERENT (reference, kvcache): {diff}"))
    bad += bool(diff)
sys.exit(1 if bad else 0)
PY
  done
fi
echo "== ThreadSanitizer: tiers (transfer engine, tier manager) and the event publisher's two threads"
swift test --sanitize=thread --scratch-path .build-tsan --filter "KVTiersTests|PublisherTests|PublishFromManagerTests|SubscriberTests"
echo "== AddressSanitizer: core, C ABI, tiers (raw memory, codec, disk records) and the replay ring (ZMQ messages)"
LSAN_OPTIONS="suppressions=$PWD/tools/lsan-suppressions.txt" \
  swift test --sanitize=address --scratch-path .build-asan --filter 'KVCacheTests|KVCacheCTests|KVTiersTests|ReplayRingTests|PublisherTests'

# Hostile input: the quick run of the fuzz harness (tools/fuzz, about 1-2 minutes, every pinned
# regression included). Fatal: a signal, an unexpected exit code, a forbidden error shape (Foundation
# dump, raw system-call error, Swift runtime message, enum dump) or a hang fails the run. A case over
# its time limit is rerun once with four times the limit, so a machine slowed by other work does not
# count as a hang. Reproducers of failures are under .build/fuzz-out/failures.
echo "== Fuzz (quick)"
python3 tools/fuzz/fuzz.py "$kvcache" --quick --out .build/fuzz-out

# KV events through vLLM's own decoder: seeded random serving sequences publish on ZMQ (PUB + replay),
# a subscriber with vLLM's KVEventBatch classes rebuilds the cache from the events, gaps recovered by
# replay, and must find exactly the blocks (and parents) the device pool and its host tier hold, each device
# hash matching its token ids.
echo "== KV events: vLLM's decoder rebuilds the cache"
swift build --product kvcache-events-check
python3 tools/events/check_events.py "$(swift build --show-bin-path)/kvcache-events-check" 5 600
