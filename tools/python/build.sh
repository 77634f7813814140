#!/usr/bin/env bash
# Puts the self-contained library (tools/install.sh's, with its local symbols stripped: 6-7 MB instead
# of 10), the configuration library beside it (libkvcache_config.so.ABI, stripped likewise, which
# libkvcache_c opens from its own folder for Cache.from_env/from_file, TierManager.from_config and
# EventPublisher; it needs libzmq.so.5 and libmsgpackc.so.2 from the system) and kvcache.h into
# python/kvcache/_lib, and LICENSE and NOTICE into python/, so that `pip install ./python` or a wheel built
# from python/ carries them. KVCACHE_PYTHON_LIB_DIR names another kvcache/_lib (tools/capi/selfcontained.sh
# packages a copy of python/ that way). Fails if either library needs a shared library other than those
# docs/PYTHON.md lists.
# Usage: bash tools/python/build.sh [release|debug]   (default: release)
set -euo pipefail
cd "$(dirname "$0")/../.."
config="${1:-release}"
dest="${KVCACHE_PYTHON_LIB_DIR:-python/kvcache/_lib}"
source tools/capi/version.sh
stage=".build/python-stage-$config"
bash tools/install.sh "$stage" "$config"
install -d "$dest"
rm -f "$dest"/libkvcache_c.so.* "$dest"/libkvcache_config.so.*
for lib in libkvcache_c libkvcache_config; do
  strip --strip-unneeded -o "$dest/$lib.so.$KVCACHE_ABI" "$stage/lib/$lib.so.$KVCACHE_VERSION"
done
# What the bundle needs from the system (docs/PYTHON.md): libkvcache_c the C and C++ runtimes, libzstd and
# libnuma; libkvcache_config those and libzmq and msgpack-c.
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
system='libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libzstd\.so\.1|libnuma\.so\.1'
if needed "$dest/libkvcache_c.so.$KVCACHE_ABI" | grep -Ev "^($system)\$" \
  || needed "$dest/libkvcache_config.so.$KVCACHE_ABI" | grep -Ev "^($system|libzmq\.so\.5|libmsgpackc\.so\.2)\$"; then
  echo "python/build.sh: the bundle needs a library docs/PYTHON.md does not list (above)" >&2
  exit 1
fi
install -m 0644 "$stage/include/kvcache.h" "$dest/kvcache.h"
install -m 0644 LICENSE NOTICE "$dest/../.."
echo "$dest: libkvcache_c.so.$KVCACHE_ABI, libkvcache_config.so.$KVCACHE_ABI ($KVCACHE_VERSION, $config; the latter" \
  "needs $(needed "$dest/libkvcache_config.so.$KVCACHE_ABI" | grep -E 'zmq|msgpack' | tr '\n' ' ')from the system), kvcache.h" >&2
