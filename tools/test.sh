#!/usr/bin/env bash
# The whole test suite: installs what is missing, runs every test (debug build), then the concurrent
# tier tests again under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install-deps.sh
swift test --parallel 2>&1 | tee /tmp/kvcache-test.log
if ls Tests/KVTiersTests/*Transfer*.swift >/dev/null 2>&1; then
  swift test --sanitize=thread --scratch-path .build-tsan --filter 'KVTiersTests.Transfer' 2>&1 | tail -5
fi
