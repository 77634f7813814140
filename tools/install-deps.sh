#!/usr/bin/env bash
# Installs the Debian packages the build needs, if any is missing: apt-get when root, else a clear
# message. Sourced by tools/run.sh and tools/test.sh.
set -euo pipefail
KVCACHE_DEBS=(pkg-config libzstd-dev libnuma-dev libxxhash-dev libopenblas-dev zlib1g-dev)
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
command -v swift >/dev/null || { echo "swift is not on PATH (Swift 6.1 or later is needed)" >&2; exit 1; }
