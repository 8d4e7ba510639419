#!/bin/sh
# load.sh — start `build/quantd serve` on a model, run bench/load.mjs
# against it over loopback, stop it.
#
#   bench/load.sh MODEL.gguf [load.mjs options...]
#   e.g. bench/load.sh /tmp/llama1b-q4km.gguf --n 1,4,8 --max-tokens 16
# Environment: QUANTD (binary, default build/quantd), PORT (default 18080),
# SERVE_ARGS (extra serve flags, e.g. "-t 2 -c 2048").
set -eu
here=$(cd "$(dirname "$0")" && pwd)
model=${1:?usage: bench/load.sh MODEL.gguf [load.mjs options]}
shift
quantd=${QUANTD:-$here/../build/quantd}
port=${PORT:-18080}
log=$(mktemp "${TMPDIR:-/tmp}/quantd-load.XXXXXX")
# shellcheck disable=SC2086
"$quantd" serve -m "$model" --host 127.0.0.1 --port "$port" ${SERVE_ARGS:-} \
    >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$log"' EXIT INT TERM
i=0
until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
    i=$((i + 1))
    if ! kill -0 "$pid" 2>/dev/null || [ "$i" -gt 600 ]; then
        echo "load.sh: server did not become ready:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.5
done
node "$here/load.mjs" --url "http://127.0.0.1:$port" "$@"
