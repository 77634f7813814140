#!/usr/bin/env bash
# The tier calls allocate nothing in steady state: builds libkvcache_c.so (release: the shipped
# configuration; a debug build's unspecialized generics allocate), compiles tools/capi/tier_allocs.c,
# which interposes malloc and its relatives for the whole process, and runs it: lookup, prepare_load,
# complete_load, prepare_store, complete_store, touch and take_events over 32-block prompts, with the
# engine's copy callbacks completing at once and every store evicting host blocks. Fails when any call
# allocated after the warm-up.
# Usage: bash tools/capi/allocs.sh [rounds] [prompt blocks]   (defaults 200, 32)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tools/capi/version.sh
swift build -c release --product kvcache_c >&2
lib="$(swift build -c release --show-bin-path)"
ln -sfn libkvcache_c.so "$lib/libkvcache_c.so.$KVCACHE_ABI"
cc="${CC:-$(command -v cc || command -v clang)}"
"$cc" -std=c11 -O2 -Wall -Wextra -Werror -ISources/CKVCache/include tools/capi/tier_allocs.c \
   -L"$lib" -lkvcache_c -Wl,-rpath,"$lib" -rdynamic -o "$lib/tier-allocs"
"$lib/tier-allocs" "${1:-200}" "${2:-32}"
