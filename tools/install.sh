#!/usr/bin/env bash
# Builds the self-contained C library and installs it for C, C++ and Python servers:
#   PREFIX/lib/libkvcache_c.so.VERSION        the library (Swift runtime linked in, SONAME libkvcache_c.so.ABI,
#                                             only kvcache_* exported)
#   PREFIX/lib/libkvcache_c.so.ABI -> ...     the SONAME link the loader looks for
#   PREFIX/lib/libkvcache_c.so -> ...so.ABI   the link `-lkvcache_c` finds
#   PREFIX/lib/libkvcache_config.so.VERSION   configuration (KVCACHE_* variables, YAML) and the ZMQ event
#   PREFIX/lib/libkvcache_config.so.ABI -> .. publisher, which libkvcache_c.so opens with dlopen from its own
#                                             folder on the first configuration call (SONAME
#                                             libkvcache_config.so.ABI; needs libzmq and libmsgpackc)
#   PREFIX/include/kvcache.h
#   PREFIX/lib/pkgconfig/kvcache.pc           `pkg-config --cflags --libs kvcache`
# VERSION and ABI come from kvcache.h (KVCACHE_VERSION_*, KVCACHE_ABI_VERSION); the built library's SONAME
# must carry that ABI, or nothing is installed. Run ldconfig after installing under a system prefix.
# Usage: bash tools/install.sh PREFIX [release|debug]   (default: release)
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: bash tools/install.sh PREFIX [release|debug]" >&2; exit 2; }
prefix="$1"
config="${2:-release}"
case "$config" in release | debug) ;; *) echo "configuration must be release or debug, not $config" >&2; exit 2 ;; esac
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
cd "$(dirname "$0")/.."
source tools/install-deps.sh
source tools/capi/version.sh

swift build -c "$config" --product kvcache_c >&2
swift build -c "$config" --product kvcache_config >&2
built="$(swift build -c "$config" --show-bin-path)/libkvcache_c.so"
built_config="$(swift build -c "$config" --show-bin-path)/libkvcache_config.so"
for lib in "$built" "$built_config"; do
  soname="$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
  if [ "$soname" != "$(basename "$lib").$KVCACHE_ABI" ]; then
    echo "the SONAME of $lib is '$soname' but kvcache.h says ABI $KVCACHE_ABI: make Package.swift's abiMajor agree" >&2
    exit 1
  fi
done

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$built" "$prefix/lib/libkvcache_c.so.$KVCACHE_VERSION"
ln -sfn "libkvcache_c.so.$KVCACHE_VERSION" "$prefix/lib/libkvcache_c.so.$KVCACHE_ABI"
ln -sfn "libkvcache_c.so.$KVCACHE_ABI" "$prefix/lib/libkvcache_c.so"
install -m 0755 "$built_config" "$prefix/lib/libkvcache_config.so.$KVCACHE_VERSION"
ln -sfn "libkvcache_config.so.$KVCACHE_VERSION" "$prefix/lib/libkvcache_config.so.$KVCACHE_ABI"
install -m 0644 Sources/CKVCache/include/kvcache.h "$prefix/include/kvcache.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$KVCACHE_VERSION|" -e "s|@ABI@|$KVCACHE_ABI|" \
  tools/capi/kvcache.pc.in > "$prefix/lib/pkgconfig/kvcache.pc"
echo "installed libkvcache_c and libkvcache_config $KVCACHE_VERSION (ABI $KVCACHE_ABI, $config) under $prefix" >&2
