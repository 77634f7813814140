#!/usr/bin/env bash
# The shipped library as its users get it: tools/install.sh into a temporary prefix, then checks that
#  - it exports the kvcache_* functions and nothing else (`nm -D --defined-only`), with the SONAME
#    libkvcache_c.so.ABI of kvcache.h;
#  - it needs no libswift*.so and no libxxhash (xxHash is compiled in): NEEDED entries and ldd, checked
#    against the list of system libraries it may need (libc, libm, libstdc++, libgcc_s, the loader, and
#    libzstd and libnuma, whose Debian archives cannot be linked into a shared object or are LGPL);
#  - libkvcache_config.so.ABI, which libkvcache_c opens with dlopen for the configuration and event calls,
#    exports kvcache_config_library_* only and needs no more than libkvcache_c's list plus libzmq and
#    libmsgpackc;
#  - tools/capi/example.c and config_test.c, compiled with `pkg-config --cflags --libs kvcache`, and
#    tools/capi/example.py load and run it without the Swift toolchain: under `env -i` with LD_LIBRARY_PATH naming PREFIX/lib
#    only, the loader's trace (LD_DEBUG=libs) opening no libswift*, and, where unshare is permitted, in a
#    private mount namespace whose toolchain lib folder is covered by an empty tmpfs;
#  - `kvcache --version` prints the library's kvcache_version_string().
#  - the Python package (python/, the library and the configuration library bundled by
#    tools/python/build.sh), pip-installed into a virtual environment, imports that copy and passes its
#    tests (python/tests, among them the configuration calls and the event round trip, which find
#    libkvcache_config.so beside the copy's libkvcache_c.so) in the same view.
# Usage: bash tools/capi/selfcontained.sh [debug|release]   (default: debug)
set -euo pipefail
cd "$(dirname "$0")/../.."
config="${1:-debug}"
source tools/capi/version.sh
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
bash tools/install.sh "$prefix" "$config"
lib="$prefix/lib/libkvcache_c.so.$KVCACHE_ABI"
fail() { echo "selfcontained: $*" >&2; exit 1; }

echo "== libkvcache_c $KVCACHE_VERSION: exports, SONAME, dependencies"
nm -D --defined-only "$lib" | awk '{print $NF}' > "$tmp/exports"
grep -q '^kvcache_create$' "$tmp/exports" || fail "kvcache_create is not exported"
if grep -v '^kvcache_' "$tmp/exports" > "$tmp/foreign"; then
  fail "exports symbols outside kvcache_* ($(wc -l < "$tmp/foreign")), first: $(head -5 "$tmp/foreign" | tr '\n' ' ')"
fi
# Every function the header declares is exported (a declaration without an implementation fails here).
sed -n 's/^[a-z0-9_ ]*[ *]\(kvcache_[a-z0-9_]*\)(.*/\1/p' "$prefix/include/kvcache.h" | sort -u > "$tmp/declared"
missing="$(sort -u "$tmp/exports" | comm -23 "$tmp/declared" - | tr '\n' ' ')"
[ -z "$missing" ] || fail "declared in kvcache.h but not exported: $missing"
echo "exports: $(wc -l < "$tmp/exports") symbols, all kvcache_*, among them the $(wc -l < "$tmp/declared") functions kvcache.h declares"
soname="$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libkvcache_c.so.$KVCACHE_ABI" ] || fail "SONAME is '$soname', not libkvcache_c.so.$KVCACHE_ABI"
if readelf -d "$lib" | grep '(NEEDED)' | grep -i swift; then fail "needs a Swift runtime library"; fi
ldd "$lib" > "$tmp/ldd"
if grep -i -e swift -e xxhash -e 'not found' "$tmp/ldd"; then fail "ldd: a Swift library, libxxhash or a missing one"; fi
allowed='^(libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libzstd\.so\.1|libnuma\.so\.1)$'
if readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -Ev "$allowed"; then
  fail "needs a library outside libc/libm/libstdc++/libgcc_s/libzstd/libnuma"
fi
echo "SONAME $soname; needs: $(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"

echo "== libkvcache_config $KVCACHE_VERSION: exports, SONAME, dependencies"
config_lib="$prefix/lib/libkvcache_config.so.$KVCACHE_ABI"
if nm -D --defined-only "$config_lib" | awk '{print $NF}' | grep -v '^kvcache_config_library_'; then
  fail "libkvcache_config exports symbols outside kvcache_config_library_*"
fi
soname="$(readelf -d "$config_lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
[ "$soname" = "libkvcache_config.so.$KVCACHE_ABI" ] || fail "libkvcache_config's SONAME is '$soname'"
if readelf -d "$config_lib" | grep '(NEEDED)' | grep -i swift; then fail "libkvcache_config needs a Swift runtime library"; fi
# Its documented extra dependencies (docs/C_API.md): libzmq and msgpack-c, on top of libkvcache_c's.
config_allowed='^(libc\.so\.6|libm\.so\.6|libstdc\+\+\.so\.6|libgcc_s\.so\.1|ld-linux-x86-64\.so\.2|libzstd\.so\.1|libnuma\.so\.1|libzmq\.so\.5|libmsgpackc\.so\.2)$'
if readelf -d "$config_lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -Ev "$config_allowed"; then
  fail "libkvcache_config needs a library outside those of libkvcache_c, libzmq and libmsgpackc"
fi
if ldd "$config_lib" | grep -i -e swift -e 'not found'; then fail "ldd libkvcache_config: a Swift library or a missing one"; fi
echo "SONAME $soname; needs: $(readelf -d "$config_lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"

echo "== Without the Swift toolchain"
toolchain_lib="$(cd "$(dirname "$(readlink -f "$(command -v swift)")")/../lib" && pwd)"
hide=(unshare -m --propagation private bash -c 'mount -t tmpfs kvcache-hidden "$0" && exec "$@"' "$toolchain_lib")
if "${hide[@]}" true 2>"$tmp/unshare.err"; then
  echo "toolchain libraries hidden: $toolchain_lib covered by an empty tmpfs in a private mount namespace"
else
  hide=()
  echo "a private mount namespace is not permitted here ($(head -1 "$tmp/unshare.err")): env -i and the loader's trace only"
fi
# Runs a command with an empty environment but PATH and LD_LIBRARY_PATH=PREFIX/lib (and CI and
# KVCACHE_VLLM_KV_EVENTS when set: under CI the Python event round trip must run, not skip), the toolchain
# hidden where possible; fails if the loader so much as opened a libswift* file.
bare() {
  "${hide[@]}" env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH="$prefix/lib" ${CI:+CI="$CI"} \
    ${KVCACHE_VLLM_KV_EVENTS:+KVCACHE_VLLM_KV_EVENTS="$KVCACHE_VLLM_KV_EVENTS"} LD_DEBUG=libs LD_DEBUG_OUTPUT="$tmp/ld" "$@"
  if grep -h 'libswift' "$tmp"/ld.* 2>/dev/null | head -3 | grep .; then fail "the loader opened a Swift library for: $*"; fi
  rm -f "$tmp"/ld.*
}
[ ${#hide[@]} -eq 0 ] || "${hide[@]}" bash -c '! ls "$0"/swift/linux/libswiftCore.so 2>/dev/null' "$toolchain_lib" \
  || fail "the tmpfs did not hide $toolchain_lib"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc="${CC:-$(command -v cc || command -v clang)}"
# shellcheck disable=SC2046  # pkg-config prints separate flags
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic tools/capi/example.c $(pkg-config --cflags --libs kvcache) \
  -o "$tmp/example"
bare "$tmp/example"
# The configuration calls: libkvcache_c opens libkvcache_config.so.ABI from its own folder (and fails with
# KVCACHE_ERR_CONFIG_LIBRARY where KVCACHE_CONFIG_LIBRARY names a missing file).
# shellcheck disable=SC2046  # pkg-config prints separate flags
"$cc" -std=c11 -Wall -Wextra -Werror -pedantic tools/capi/config_test.c $(pkg-config --cflags --libs kvcache) \
  -o "$tmp/config_test"
bare "$tmp/config_test"
bare python3 tools/capi/example.py "$lib"

echo "== The Python package, installed into a virtual environment, without the Swift toolchain"
# A copy of python/ with the library bundled (tools/python/build.sh), installed offline: numpy, pytest and
# pycparser come from the interpreter's own site-packages (tools/install-deps.sh installs them).
mkdir "$tmp/pkgsrc"
tar -C python --exclude=_lib --exclude=build --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$tmp/pkgsrc" -xf -
KVCACHE_PYTHON_LIB_DIR="$tmp/pkgsrc/kvcache/_lib" bash tools/python/build.sh "$config"
python3 -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --no-index --no-build-isolation --no-deps "$tmp/pkgsrc"
bare "$tmp/venv/bin/python" -c 'import kvcache, sys; p = kvcache.library().path; print(f"kvcache {kvcache.version()} from {p}")
sys.exit(0 if p.startswith(sys.prefix) else f"loaded {p}, not the copy installed in {sys.prefix}")'
bare "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider python/tests

echo "== kvcache --version"
swift build -c "$config" --product kvcache >&2
cli="$(swift build -c "$config" --show-bin-path)/kvcache"
cli_version="$("$cli" --version)"
lib_version="$(python3 -c 'import ctypes, sys; f = ctypes.CDLL(sys.argv[1]).kvcache_version_string
f.restype = ctypes.c_char_p; print(f().decode())' "$lib")"
[ "$cli_version" = "$lib_version" ] && [ "$lib_version" = "$KVCACHE_VERSION" ] \
  || fail "kvcache --version says '$cli_version', the library '$lib_version', kvcache.h $KVCACHE_VERSION"
echo "kvcache --version: $cli_version, the library's and kvcache.h's"
echo "self-contained: ok"
