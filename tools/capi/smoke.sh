#!/usr/bin/env bash
# Builds libkvcache_c.so, libkvcache_config.so and tools/capi/example.c against include/kvcache.h with the
# system C compiler, then runs the example, the chunk-store, configuration and tier admission tests
# (chunks_test.c, config_test.c: libkvcache_config.so found next to libkvcache_c.so, and missing;
# tier_admission_test.c), the event publisher against vLLM's decoder (events_driver.c under events_test.py:
# pyzmq, msgspec, xxhash, as tools/install-deps.sh installs them) and the Python (ctypes) client (each exits
# non-zero on any unexpected status).
# Usage: bash tools/capi/smoke.sh [debug|release]   (default: debug)
set -euo pipefail
cd "$(dirname "$0")/../.."
config="${1:-debug}"
source tools/capi/version.sh
swift build -c "$config" --product kvcache_c
swift build -c "$config" --product kvcache_config
lib="$(swift build -c "$config" --show-bin-path)"
# Programs linked with -lkvcache_c ask the loader for the SONAME, libkvcache_c.so.ABI: name it in the
# build folder as tools/install.sh does under PREFIX/lib.
ln -sfn libkvcache_c.so "$lib/libkvcache_c.so.$KVCACHE_ABI"
out="$lib/capi-example"
cc="${CC:-$(command -v cc || command -v clang)}"   # the Swift toolchain's clang serves too
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -ISources/CKVCache/include tools/capi/example.c \
   -L"$lib" -lkvcache_c -Wl,-rpath,"$lib" -o "$out"
"$out"
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -ISources/CKVCache/include tools/capi/chunks_test.c \
   -L"$lib" -lkvcache_c -lm -Wl,-rpath,"$lib" -o "$lib/capi-chunks-test"
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -ISources/CKVCache/include tools/capi/config_test.c \
   -L"$lib" -lkvcache_c -Wl,-rpath,"$lib" -o "$lib/capi-config-test"
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -ISources/CKVCache/include tools/capi/tier_admission_test.c \
   -L"$lib" -lkvcache_c -Wl,-rpath,"$lib" -o "$lib/capi-tier-admission-test"
"$lib/capi-config-test"
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic -ISources/CKVCache/include tools/capi/events_driver.c \
   -L"$lib" -lkvcache_c -Wl,-rpath,"$lib" -o "$lib/capi-events-driver"
python3 tools/capi/events_test.py "$lib/capi-events-driver"
"$lib/capi-chunks-test"
"$lib/capi-tier-admission-test"
python3 tools/capi/example.py "$lib/libkvcache_c.so"
