#!/usr/bin/env bash
# Puts the self-contained library (tools/install.sh's, with its local symbols stripped: 6-7 MB instead
# of 10) and kvcache.h into python/kvcache/_lib, and LICENSE and NOTICE into python/, so that
# `pip install ./python` or a wheel built from python/ carries them. KVCACHE_PYTHON_LIB_DIR names another
# kvcache/_lib (tools/capi/selfcontained.sh packages a copy of python/ that way).
# Usage: bash tools/python/build.sh [release|debug]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/../.."
config="${1:-release}"
dest="${KVCACHE_PYTHON_LIB_DIR:-python/kvcache/_lib}"
source tools/capi/version.sh
stage=".build/python-stage-$config"
bash tools/install.sh "$stage" "$config"
install -d "$dest"
rm -f "$dest"/libkvcache_c.so.*
strip --strip-unneeded -o "$dest/libkvcache_c.so.$KVCACHE_ABI" "$stage/lib/libkvcache_c.so.$KVCACHE_VERSION"
install -m 0644 "$stage/include/kvcache.h" "$dest/kvcache.h"
install -m 0644 LICENSE NOTICE "$dest/../.."
echo "$dest: libkvcache_c.so.$KVCACHE_ABI ($KVCACHE_VERSION, $config), kvcache.h" >&2
