#!/bin/sh
# Install the reference (llama.cpp, prebuilt for CPU inside the npm package
# node-llama-cpp) into bench/node_modules. Nothing of it is committed.
set -eu
cd "$(dirname "$0")"
[ -f package.json ] || echo '{"name":"quantd-bench","private":true}' > package.json
if [ ! -d node_modules/node-llama-cpp ]; then
    npm install --no-audit --no-fund --omit=optional --ignore-scripts \
        node-llama-cpp@3.21.1 >/dev/null
    npm install --no-audit --no-fund --ignore-scripts --no-save \
        @node-llama-cpp/linux-x64@3.21.1 >/dev/null
fi
echo "reference installed: $(node -e 'console.log(require("node-llama-cpp/package.json").version)')"
