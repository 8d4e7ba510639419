#!/bin/sh
# Install quantd's build and test dependencies from Debian packages
# (clang + libclang-rt-dev: libFuzzer for `make fuzz-smoke`).
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential autoconf automake pkg-config curl ca-certificates \
    libmicrohttpd-dev libjansson-dev libuv1-dev libssl-dev libcriterion-dev \
    python3 clang libclang-rt-dev >/dev/null
