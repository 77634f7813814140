#!/usr/bin/env bash
# The main job: installs what is missing, builds `kvcache` in release mode and replays a trace.
# With no arguments it replays the embedded default trace; any arguments go to `kvcache replay`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/install-deps.sh
swift build -c release --product kvcache >&2
exec .build/release/kvcache replay "$@"
