#!/usr/bin/env bash
# Builds the cold-pull benchmark image: an OCI image layout directory with 5 gzip layers of
# ~20 MB each of random (incompressible) data, the first one on top of the busybox test
# image's base layer, so the image runs (`sh`, `cat`, `ls`). Tagged bench:pull by its index
# annotation; push it with `skopeo copy oci:OUT_DIR:bench:pull docker://…`.
#
#   deploy/bench/pull-image.sh BUSYBOX_TAR OUT_DIR
#
# BUSYBOX_TAR is deploy/images/build-busybox-image.sh's output. PULL_LAYERS (5) and
# PULL_LAYER_MB (20) change the shape. Needs only tar, gzip, sha256sum and head.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 BUSYBOX_TAR OUT_DIR" >&2
    exit 2
fi
busybox_tar=$1
out=$2
layers=${PULL_LAYERS:-5}
mb=${PULL_LAYER_MB:-20}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
tarit() { # tarit DIR OUT: a tar of DIR's contents, owned by root, mtime 0
    tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -cf "$2" .
}

# The busybox image's base layer (an uncompressed tar), found through its docker-archive
# manifest.json: [{"Config":"blobs/sha256/…","RepoTags":[…],"Layers":["blobs/sha256/…",…]}]
mkdir -p "$work/bb"
tar -C "$work/bb" -xf "$busybox_tar"
base=$(sed -n 's/.*"Layers":\["\(blobs\/sha256\/[0-9a-f]*\)".*/\1/p' "$work/bb/manifest.json")
if [[ -z $base || ! -f $work/bb/$base ]]; then
    echo "$0: no base layer found in $busybox_tar" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out/blobs/sha256"
diff_ids=""
history=""
manifest_layers=""
created=1970-01-01T00:00:00Z
for i in $(seq "$layers"); do
    dir=$work/layer$i
    mkdir -p "$dir/bench"
    head -c "$((mb * 1024 * 1024))" /dev/urandom >"$dir/bench/layer$i.bin"
    if [[ $i -eq 1 ]]; then
        # The base rootfs plus the first data file: append to a copy of busybox's layer.
        cp "$work/bb/$base" "$work/layer$i.tar"
        tar -C "$dir" --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
            -rf "$work/layer$i.tar" ./bench
    else
        tarit "$dir" "$work/layer$i.tar"
    fi
    gzip -n -1 -c "$work/layer$i.tar" >"$work/layer$i.tar.gz"
    diff=$(sha "$work/layer$i.tar")
    blob=$(sha "$work/layer$i.tar.gz")
    mv "$work/layer$i.tar.gz" "$out/blobs/sha256/$blob"
    sep=$([[ $i -gt 1 ]] && echo , || true)
    diff_ids+="$sep\"sha256:$diff\""
    history+="$sep{\"created\":\"$created\",\"created_by\":\"berth pull-image.sh: layer $i ($mb MiB random)\"}"
    manifest_layers+="$sep{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$blob\",\"size\":$(size "$out/blobs/sha256/$blob")}"
    rm -rf "$dir" "$work/layer$i.tar"
done

printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"sh\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[$diff_ids]},\"history\":[$history]}" >"$work/config.json"
config=$(sha "$work/config.json")
cp "$work/config.json" "$out/blobs/sha256/$config"

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$(size "$work/config.json")},\
\"layers\":[$manifest_layers]}" >"$work/manifest.json"
manifest=$(sha "$work/manifest.json")
cp "$work/manifest.json" "$out/blobs/sha256/$manifest"

printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\"size\":$(size "$work/manifest.json"),\
\"annotations\":{\"org.opencontainers.image.ref.name\":\"bench:pull\"},\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}" >"$out/index.json"
echo "$out"
