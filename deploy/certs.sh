#!/bin/sh
# Makes the TLS material of berth's services over TCP (docs/adr/0012-tls-between-services.md):
#
#   deploy/certs.sh DIR [HOSTNAME|IP ...]
#
# DIR gets (EC P-256 keys, mode 0600):
#   ca.pem, ca-key.pem             the CA; an existing pair is reused, so running the script
#                                  again (or on a copy of DIR) adds certificates it trusts
#   <service>.pem, <service>-key.pem  a server certificate per service (engine, image-store,
#                                  supervisor, network, volume, log-router)
#   client.pem, client-key.pem     the identity of clients (the CLI, services calling others)
#
# Server certificates name localhost, 127.0.0.1, ::1, the service name and every HOSTNAME
# or IP given: a client checks the host it dials against them. Copy DIR to
# /etc/berth/tls (or set [tls] dir in berth.toml) on every host; keep ca-key.pem off the
# hosts that do not make certificates. Needs openssl.
set -eu

usage() {
    echo "usage: $0 DIR [HOSTNAME|IP ...]" >&2
    exit 2
}
[ $# -ge 1 ] || usage
case "$1" in -h | --help) usage ;; esac
dir=$1
shift
days=${BERTH_CERT_DAYS:-825}
services="engine image-store supervisor network volume log-router"

command -v openssl >/dev/null || {
    echo "$0: openssl is needed" >&2
    exit 1
}
umask 077
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

if [ -f "$dir/ca.pem" ] && [ -f "$dir/ca-key.pem" ]; then
    echo "reusing the CA in $dir"
elif [ -f "$dir/ca.pem" ]; then
    echo "$0: $dir/ca.pem exists without ca-key.pem: cannot sign with it" >&2
    exit 1
else
    newkey "$dir/ca-key.pem"
    openssl req -x509 -new -sha256 -key "$dir/ca-key.pem" -days 3650 \
        -subj "/CN=berth CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem"
    chmod 0644 "$dir/ca.pem"
    echo "made the CA $dir/ca.pem"
fi

# The subjectAltName entries of the server certificates.
sans="DNS:localhost,IP:127.0.0.1,IP:::1"
for host in "$@"; do
    case "$host" in
    *[!0-9.]*) case "$host" in *:*) sans="$sans,IP:$host" ;; *) sans="$sans,DNS:$host" ;; esac ;;
    *) sans="$sans,IP:$host" ;;
    esac
done

# sign NAME CN USAGE [SANS]
sign() {
    name=$1 cn=$2 usage=$3 alt=${4:-}
    newkey "$dir/$name-key.pem"
    openssl req -new -sha256 -key "$dir/$name-key.pem" -subj "/CN=$cn" -out "$tmp/$name.csr"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=$usage"
        [ -z "$alt" ] || echo "subjectAltName=$alt"
    } >"$tmp/$name.ext"
    openssl x509 -req -sha256 -in "$tmp/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" \
        -extfile "$tmp/$name.ext" -out "$dir/$name.pem" 2>/dev/null
    chmod 0644 "$dir/$name.pem"
}

for service in $services; do
    # serverAuth and clientAuth: a service may present its certificate as a client too.
    sign "$service" "berth-$service" "serverAuth,clientAuth" "DNS:$service,DNS:berth-$service,$sans"
done
sign client "berth-client" "clientAuth"
echo "made $(echo $services | wc -w) service certificates and client.pem in $dir (names: $sans)"
