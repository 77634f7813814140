#!/usr/bin/env bash
# The whole test suite: installs what is missing, runs every test (debug build), then the tests of
# the concurrent and raw-memory code again under ThreadSanitizer and AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install-deps.sh
swift test
bash tools/capi/smoke.sh  # the C ABI from C: builds libkvcache_c.so and tools/capi/example.c, runs it
echo "== ThreadSanitizer: tiers (transfer engine, tier manager)"
swift test --sanitize=thread --scratch-path .build-tsan --filter KVTiersTests
echo "== AddressSanitizer: core, C ABI and tiers (raw memory, codec, disk records)"
LSAN_OPTIONS="suppressions=$PWD/tools/lsan-suppressions.txt" \
  swift test --sanitize=address --scratch-path .build-asan --filter 'KVCacheTests|KVCacheCTests|KVTiersTests'
