#!/bin/bash
# The whole test suite: install dependencies, build, run the unit and
# integration tests, then both again under ASan + UBSan (the daemon the
# integration tests start is the sanitized build-san/quantd), and, when
# clang is installed, every libFuzzer target for 10 s (make fuzz-smoke).
# Ends with one line totalling every Criterion run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
autoreconf -fi >/dev/null 2>&1 || autoconf
./configure -q
JOBS=$(nproc 2>/dev/null || echo 2)
log=$(mktemp "${TMPDIR:-/tmp}/quantd-test.XXXXXX")
trap 'rm -f "$log"' EXIT
make -j"$JOBS"
make check 2>&1 | tee -a "$log"
make check-unit SAN=1 -j"$JOBS" 2>&1 | tee -a "$log"
make check-integration SAN=1 -j"$JOBS" 2>&1 | tee -a "$log"
if command -v clang >/dev/null 2>&1; then
    make fuzz-smoke -j"$JOBS"
else
    echo "clang not found: skipping make fuzz-smoke"
fi
awk '/Synthesis: Tested:/ {
        for (i = 1; i <= NF; i++) {
            if ($i == "Passing:") p += $(i + 1)
            if ($i == "Failing:") f += $(i + 1)
            if ($i == "Crashing:") f += $(i + 1)
        }
     }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
