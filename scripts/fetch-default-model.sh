#!/bin/sh
# Make sure the default model is in the cache (~/.cache/quantd/default.gguf).
#
# 1. Already cached: nothing to do.
# 2. Online: download Qwen2.5-0.5B-Instruct Q4_K_M from Hugging Face once,
#    with a progress bar, and check its SHA-256 against the hash Hugging Face
#    publishes for the file (the x-linked-etag header of its LFS object);
#    the file is only moved into place when the check passes.
# 3. Offline (as in CI): exit 0 without a file; `quantd serve` then
#    generates a tiny random-weight model itself and says so.
set -eu
CACHE="${QUANTD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quantd}"
DEST="$CACHE/default.gguf"
URL="https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q4_k_m.gguf"

mkdir -p "$CACHE"
if [ -s "$DEST" ]; then
    echo "default model: $DEST (cached)"
    exit 0
fi
if ! command -v curl >/dev/null 2>&1; then
    echo "curl not installed: skipping the download" >&2
    exit 0
fi
want=$(curl -sSIL --max-time 20 "$URL" 2>/dev/null |
    tr -d '\r' | awk -F': ' 'tolower($1)=="x-linked-etag" {gsub(/"/,"",$2); print $2}' | tail -n 1) || true
if [ -z "${want:-}" ]; then
    echo "no network access to Hugging Face: quantd will use a generated tiny model" >&2
    exit 0
fi
tmp="$DEST.part"
echo "downloading Qwen2.5-0.5B-Instruct Q4_K_M (about 470 MB) to $DEST"
curl -L --fail --progress-bar -o "$tmp" "$URL"
got=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
    rm -f "$tmp"
    echo "SHA-256 mismatch: got $got, expected $want; file removed" >&2
    exit 1
fi
mv "$tmp" "$DEST"
echo "$want  default.gguf" > "$CACHE/default.gguf.sha256"
echo "default model: $DEST (sha256 $want verified)"
