#!/bin/sh
# The whole test suite: install dependencies, build, run the unit and
# integration tests, then both again under ASan + UBSan (the daemon the
# integration tests start is the sanitized build-san/quantd).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
autoreconf -fi >/dev/null 2>&1 || autoconf
./configure -q
JOBS=$(nproc 2>/dev/null || echo 2)
make -j"$JOBS"
make check
make check-unit SAN=1 -j"$JOBS"
make check-integration SAN=1 -j"$JOBS"
echo "all tests passed"
