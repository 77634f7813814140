#!/usr/bin/env bash
# Installs the Debian packages the build needs, if any is missing: apt-get when root, else a clear
# message. Sourced by tools/run.sh and tools/test.sh.
set -euo pipefail
KVCACHE_DEBS=(pkg-config libzstd-dev libnuma-dev libxxhash-dev libopenblas-dev zlib1g-dev
  # The shipped library's checks (nm, readelf, strip) and the Python package's build and tests (cpp: the
  # preprocessor that reads kvcache.h for the declaration check, where no C compiler is installed).
  binutils cpp python3 python3-venv python3-pip python3-numpy python3-pytest python3-pycparser python3-setuptools
  python3-wheel)
KVCACHE_DEBS+=(libzmq3-dev libmsgpack-dev)  # the KV event publisher (Sources/CZmq, Sources/CMsgpack)
# The report checks (tools/test.sh sets KVCACHE_TEST_DEPS=1; run.sh and install.sh do not need them): every
# subcommand's --json against docs/report.schema.json (python3 jsonschema), and `kvcache report`'s HTML page
# rendered by a real browser (headless Chromium).
if [ "${KVCACHE_TEST_DEPS:-0}" = 1 ]; then KVCACHE_DEBS+=(python3-jsonschema chromium); fi
missing=()
for p in "${KVCACHE_DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
# A python3 first on PATH that is not Debian's (pyenv, a virtual environment) gets the Python modules from pip.
KVCACHE_PY_MODULES=(numpy pytest pycparser setuptools wheel)
if [ "${KVCACHE_TEST_DEPS:-0}" = 1 ]; then KVCACHE_PY_MODULES+=(jsonschema); fi
if ! python3 -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' \
    "${KVCACHE_PY_MODULES[@]}" venv; then
  echo "installing for $(command -v python3): ${KVCACHE_PY_MODULES[*]}" >&2
  python3 -m pip install -q "${KVCACHE_PY_MODULES[@]}" >&2 \
    || python3 -m pip install -q --break-system-packages "${KVCACHE_PY_MODULES[@]}" >&2
fi
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.1 or later is needed)" >&2; exit 1; }
# The KV event subscriber test (tools/events): pyzmq, msgspec and xxhash from pip, and vLLM's own event
# classes: the one file vllm/distributed/kv_events.py, extracted from the vllm wheel (importing the vllm
# package itself needs torch).
KVCACHE_EVENT_PY_MODULES=(zmq:pyzmq msgspec:msgspec xxhash:xxhash)
for m in "${KVCACHE_EVENT_PY_MODULES[@]}"; do
  python3 -c "import ${m%%:*}" 2>/dev/null && continue
  echo "installing for $(command -v python3): ${m#*:}" >&2
  python3 -m pip install -q "${m#*:}" >&2 || python3 -m pip install -q --break-system-packages "${m#*:}" >&2
done
KVCACHE_VLLM_VERSION=0.34.0
export KVCACHE_VLLM_KV_EVENTS="${KVCACHE_VLLM_KV_EVENTS:-/opt/kvcache-vllm/kv_events.py}"
if [ ! -f "$KVCACHE_VLLM_KV_EVENTS" ]; then
  echo "extracting vllm/distributed/kv_events.py from the vllm $KVCACHE_VLLM_VERSION wheel" >&2
  wheel_dir="$(mktemp -d)"
  python3 -m pip download -q --no-deps -d "$wheel_dir" "vllm==$KVCACHE_VLLM_VERSION" >&2
  mkdir -p "$(dirname "$KVCACHE_VLLM_KV_EVENTS")"
  python3 - "$wheel_dir" "$KVCACHE_VLLM_KV_EVENTS" <<'PY'
import glob, sys, zipfile
(wheel,) = glob.glob(sys.argv[1] + "/vllm-*.whl")
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("vllm/distributed/kv_events.py"))
PY
  rm -rf "$wheel_dir"
fi
