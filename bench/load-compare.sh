#!/bin/sh
# load-compare.sh — the same concurrent load against quantd (the daemon
# over loopback, bench/load.sh) and against llama.cpp (node-llama-cpp, one
# context with N sequences, bench/ref-load.mjs), one after the other on the
# same model file, so the two tables come from one run.
#
#   bench/load-compare.sh MODEL.gguf [--n 1,4,8,16] [--max-tokens 64]
#                         [--prompt-words 12] [--threads 2]
# Environment: as bench/load.sh (SERVE_ARGS, PORT, QUANTD).
# Needs bench/setup-reference.sh to have installed node-llama-cpp.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
model=${1:?usage: bench/load-compare.sh MODEL.gguf [options]}
shift
threads=2
n=1,4,8,16
max=64
words=12
while [ $# -gt 0 ]; do
    case $1 in
    --n) n=$2; shift ;;
    --max-tokens) max=$2; shift ;;
    --prompt-words) words=$2; shift ;;
    --threads) threads=$2; shift ;;
    *) echo "load-compare.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
if [ ! -d "$here/node_modules/node-llama-cpp" ]; then
    echo "load-compare.sh: run bench/setup-reference.sh first" >&2
    exit 1
fi
echo "== quantd (serve -t $threads)"
SERVE_ARGS="-t $threads ${SERVE_ARGS:-}" "$here/load.sh" "$model" \
    --n "$n" --max-tokens "$max" --prompt-words "$words" --system-words 0
echo
echo "== llama.cpp"
(cd "$here" && node ref-load.mjs "$model" --n "$n" --max-tokens "$max" \
    --prompt-words "$words" --threads "$threads")
