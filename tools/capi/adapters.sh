#!/usr/bin/env bash
# The adapters against the engines' own code: kvcache.integrations.vllm against vLLM's offloading seam
# (vllm.v1.kv_offload: OffloadingSpec, OffloadingManager, OffloadingSpecFactory) and
# kvcache.integrations.sglang against SGLang's HiCacheStorage and StorageBackendFactory, plus the
# TierManager tests, with the debug libkvcache_c. The wheels are installed WITHOUT their dependencies
# into a virtual environment (.build/adapters-venv, reused), beside msgspec (vLLM's kv_hints needs it);
# python/tests/engines.py lists the stand-ins (torch, the packages' __init__). Offline, where pip cannot
# fetch a wheel, the adapter tests skip and say so; the TierManager tests run anyway.
# Usage: bash tools/capi/adapters.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
VLLM_VERSION=0.34.0
SGLANG_VERSION=0.5.23
venv=.build/adapters-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
fi
have() { "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }
for pkg in "vllm $VLLM_VERSION" "sglang $SGLANG_VERSION"; do
  set -- $pkg
  have "$1" "$2" || "$venv/bin/pip" install -q --no-deps "$1==$2" >&2 \
    || echo "adapters: could not install the $1 $2 wheel (offline?): its adapter tests will skip" >&2
done
"$venv/bin/python" -c "import msgspec" 2>/dev/null || "$venv/bin/pip" install -q msgspec >&2 \
  || echo "adapters: could not install msgspec: the vLLM adapter tests will fail to import vLLM" >&2
swift build --product kvcache_c >&2
export KVCACHE_LIB="$(swift build --show-bin-path)/libkvcache_c.so"
cd python
"../$venv/bin/python" -m pytest -q -p no:cacheprovider -rs tests/test_tiers.py tests/test_vllm_adapter.py \
  tests/test_sglang_adapter.py
