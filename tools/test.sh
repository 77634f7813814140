#!/usr/bin/env bash
# The whole test suite: installs what is missing, runs every test (debug build), then the tests of
# the concurrent and raw-memory code again under ThreadSanitizer and AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install-deps.sh
swift test
bash tools/capi/smoke.sh  # the C ABI from C and Python: libkvcache_c.so, tools/capi/example.{c,py}

# The shipped library and the Python package: tools/install.sh into a temporary prefix (only kvcache_*
# exported, SONAME, no libswift*), the C and Python examples and the Python package's tests (python/tests,
# pip-installed into a virtual environment) with the Swift toolchain hidden, kvcache --version.
echo "== The shipped library and the Python package, without the Swift toolchain"
bash tools/capi/selfcontained.sh

echo "== Sequential replay against the independent Python reference (the README's figures)"
kvcache="$(swift build --show-bin-path)/kvcache"
shared_trace=../shared/data/mooncake/synthetic_trace.jsonl
traces=(tools/kvcache/Resources/mooncake-synthetic-1000.jsonl)
[ -f "$shared_trace" ] && traces+=("$shared_trace")
for trace in "${traces[@]}"; do
  for capacity in 1000 3000 8192; do
    python3 - "$kvcache" "$trace" "$capacity" <<'PY'
import json, subprocess, sys
kvcache, trace, capacity = sys.argv[1:4]
ref = json.loads(subprocess.run([sys.executable, "tools/reference/sequential_replay.py", trace, capacity],
                                check=True, capture_output=True, text=True).stdout)
ours = json.loads(subprocess.run([kvcache, "replay", "--mode", "sequential", "--trace", trace,
                                  "--capacity-blocks", capacity, "--json"],
                                 check=True, capture_output=True, text=True).stdout)
diff = {k: (v, ours.get(k)) for k, v in ref.items() if ours.get(k) != v}
print(f"{trace} capacity {capacity}: " + ("identical" if not diff else f"DIFFERENT (reference, kvcache): {diff}"))
sys.exit(1 if diff else 0)
PY
  done
done
echo "== ThreadSanitizer: tiers (transfer engine, tier manager)"
swift test --sanitize=thread --scratch-path .build-tsan --filter KVTiersTests
echo "== AddressSanitizer: core, C ABI and tiers (raw memory, codec, disk records)"
LSAN_OPTIONS="suppressions=$PWD/tools/lsan-suppressions.txt" \
  swift test --sanitize=address --scratch-path .build-asan --filter 'KVCacheTests|KVCacheCTests|KVTiersTests'

# Hostile input: the quick run of the fuzz harness (tools/fuzz, about 1-2 minutes, every pinned
# regression included). Fatal: a signal, an unexpected exit code, a forbidden error shape (Foundation
# dump, raw system-call error, Swift runtime message, enum dump) or a hang fails the run. A case over
# its time limit is rerun once with four times the limit, so a machine slowed by other work does not
# count as a hang. Reproducers of failures are under .build/fuzz-out/failures.
echo "== Fuzz (quick)"
python3 tools/fuzz/fuzz.py "$kvcache" --quick --out .build/fuzz-out
