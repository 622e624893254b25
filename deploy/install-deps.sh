#!/usr/bin/env bash
# Installs the Debian packages berth needs to build, run and test. Idempotent.
set -euo pipefail
# Installs the Debian packages berth needs to build, run and test. Idempotent.
# `install-deps.sh docker` also installs Docker, for the side-by-side benchmarks.
packages=(busybox-static iproute2 util-linux procps)
[[ ${1:-} == docker ]] && packages+=(docker.io)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" || {
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    }
fi
