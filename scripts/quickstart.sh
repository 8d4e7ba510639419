#!/bin/sh
# One command from a fresh Debian machine to a running server:
# install dependencies, build, fetch the default model (when online), serve.
#   ./scripts/quickstart.sh [--port 8080] [other `quantd serve` options]
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -x configure ] || autoreconf -fi >/dev/null
[ -f Makefile ] || ./configure -q
make -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
./scripts/fetch-default-model.sh || true
exec ./build/quantd serve "$@"
