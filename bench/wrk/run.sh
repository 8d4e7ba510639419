#!/bin/sh
# run.sh — load the daemon with wrk at concurrency 1, 8 and 64 (10 s each)
# using chat.lua (and completions.lua), against `quantd serve` on
# stories260K, and print one RESULT line per script and level:
# requests/s, statuses (503 beyond the queue limit, with Retry-After),
# socket errors, latency percentiles.
#
#   bench/wrk/run.sh [extra quantd serve options...]
# Environment: QD_BIN (default build/quantd), QD_SHARED (default
# ../shared), MODEL (a .gguf; default $QD_SHARED/gguf/stories260K.gguf),
# PORT (default 18080), DURATION (default 10s), LEVELS (default "1 8 64"),
# SCRIPTS (default "chat"; "chat completions" for both endpoints).
set -eu
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null 2>&1 || {
    echo "wrk not found: apt-get install wrk" >&2
    exit 1
}
QD_BIN=${QD_BIN:-build/quantd}
QD_SHARED=${QD_SHARED:-../shared}
MODEL=${MODEL:-$QD_SHARED/gguf/stories260K.gguf}
PORT=${PORT:-18080}
DURATION=${DURATION:-10s}
LEVELS=${LEVELS:-1 8 64}
SCRIPTS=${SCRIPTS:-chat}
LOG=${TMPDIR:-/tmp}/quantd-wrk-$$.log
[ -f "$MODEL" ] || { echo "model not found: $MODEL" >&2; exit 1; }

"$QD_BIN" serve -m "$MODEL" --host 127.0.0.1 --port "$PORT" \
    --log-level warn "$@" 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null || true' EXIT INT TERM
i=0
until curl -sf "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 100 ] || { echo "daemon did not start; log: $LOG" >&2; exit 1; }
    sleep 0.1
done
echo "quantd pid $PID on port $PORT, model $MODEL; log $LOG"
for script in $SCRIPTS; do
    for c in $LEVELS; do
        t=$((c < 2 ? 1 : 2))
        printf '%-11s c=%-3s ' "$script" "$c"
        wrk -t"$t" -c"$c" -d"$DURATION" --latency -s "bench/wrk/$script.lua" \
            "http://127.0.0.1:$PORT" | grep '^RESULT'
    done
done
kill -0 $PID 2>/dev/null || { echo "daemon died; log: $LOG" >&2; exit 1; }
echo "daemon still up"
