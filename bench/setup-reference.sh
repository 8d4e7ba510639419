#!/bin/sh
# Install the reference (llama.cpp, prebuilt for CPU inside the npm package
# node-llama-cpp) into bench/node_modules. Nothing of it is committed.
#
#   bench/setup-reference.sh [--no-amx]
#
# --no-amx also makes bench/ref-noamx/: the same install (hard links)
# without ggml's Sapphire Rapids CPU variant, so ggml's loader takes its
# best variant without AMX tiles (zen4 on an AVX-512 VNNI machine). That is
# the reference a machine without AMX (a Zen 4 like CI's) runs.
set -eu
cd "$(dirname "$0")"
[ -f package.json ] || echo '{"name":"quantd-bench","private":true}' > package.json
if [ ! -d node_modules/node-llama-cpp ]; then
    npm install --no-audit --no-fund --omit=optional --ignore-scripts \
        node-llama-cpp@3.21.1 >/dev/null
    npm install --no-audit --no-fund --ignore-scripts --no-save \
        @node-llama-cpp/linux-x64@3.21.1 >/dev/null
fi
echo "reference installed: $(node -p 'require("./node_modules/node-llama-cpp/package.json").version')"
if [ "${1:-}" = "--no-amx" ]; then
    bins=node_modules/@node-llama-cpp/linux-x64/bins/linux-x64
    [ -d "$bins" ] || { echo "$0: $bins: not found" >&2; exit 1; }
    # made afresh each time (hard links: instant), so that it follows the
    # install above
    rm -rf ref-noamx/node_modules
    mkdir -p ref-noamx
    if ! cp -al node_modules ref-noamx/node_modules 2>/dev/null; then
        rm -rf ref-noamx/node_modules
        cp -a node_modules ref-noamx/node_modules
    fi
    rm -f ref-noamx/$bins/libggml-cpu-sapphirerapids.so
    # The script itself is copied each time so that it resolves
    # node-llama-cpp from ref-noamx/node_modules and stays current.
    cp ref-bench.mjs ref-noamx/ref-bench.mjs
    echo "reference without AMX: bench/ref-noamx/ref-bench.mjs"
fi
