#!/usr/bin/env bash
# Installs the Debian packages the build needs, if any is missing: apt-get when root, else a clear
# message. Sourced by tools/run.sh and tools/test.sh.
set -euo pipefail
KVCACHE_DEBS=(pkg-config libzstd-dev libnuma-dev libxxhash-dev libopenblas-dev zlib1g-dev
  # The shipped library's checks (nm, readelf, strip) and the Python package's build and tests (cpp: the
  # preprocessor that reads kvcache.h for the declaration check, where no C compiler is installed).
  binutils cpp python3 python3-venv python3-pip python3-numpy python3-pytest python3-pycparser python3-setuptools
  python3-wheel)
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
if ! python3 -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' \
    "${KVCACHE_PY_MODULES[@]}" venv; then
  echo "installing for $(command -v python3): ${KVCACHE_PY_MODULES[*]}" >&2
  python3 -m pip install -q "${KVCACHE_PY_MODULES[@]}" >&2 \
    || python3 -m pip install -q --break-system-packages "${KVCACHE_PY_MODULES[@]}" >&2
fi
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.1 or later is needed)" >&2; exit 1; }
