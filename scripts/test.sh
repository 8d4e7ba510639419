#!/bin/sh
# The whole test suite: install dependencies, build, run the unit and
# integration tests, then the unit tests again under ASan + UBSan, and,
# when clang is installed, every libFuzzer target for 10 s (make fuzz-smoke).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
autoreconf -fi >/dev/null 2>&1 || autoconf
./configure -q
JOBS=$(nproc 2>/dev/null || echo 2)
make -j"$JOBS"
make check
make check-unit SAN=1 -j"$JOBS"
if command -v clang >/dev/null 2>&1; then
    make fuzz-smoke -j"$JOBS"
else
    echo "clang not found: skipping make fuzz-smoke"
fi
echo "all tests passed"
