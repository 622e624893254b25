#!/usr/bin/env bash
# Builds berth's offline test image: a two-layer OCI image layout tarball from Debian's
# busybox-static, tagged busybox:latest by its index annotation.
#
#   deploy/images/build-busybox-image.sh OUT.tar
#
# Layer 1 (plain tar): /bin/busybox, a /bin symlink per applet, the base dirs, /etc/passwd,
# /etc/group and /etc/berth-base-only. Layer 2 (gzip): /etc/berth-release and a whiteout
# deleting /etc/berth-base-only. Output is reproducible (sorted, mtime 0, owner 0:0).
# BUSYBOX overrides the busybox binary (default /bin/busybox).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT.tar" >&2
    exit 2
fi
out=$1
busybox=${BUSYBOX:-/bin/busybox}
if [[ ! -x $busybox ]]; then
    echo "$0: $busybox not found (install busybox-static)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022

tarit() { # tarit DIR OUT: a reproducible tar of DIR's contents
    tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
        --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -cf "$2" .
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# Layer 1: the base rootfs.
l1=$work/layer1
mkdir -p "$l1"/{bin,etc,tmp,root,home,proc,sys,dev,var,usr/bin}
chmod 1777 "$l1/tmp"
chmod 0700 "$l1/root"
cp "$busybox" "$l1/bin/busybox"
chmod 0755 "$l1/bin/busybox"
for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] && continue
    ln -s busybox "$l1/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$l1/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$l1/etc/group"
printf 'base\n' >"$l1/etc/berth-base-only"

# Layer 2: a new file and a whiteout of a layer-1 file.
l2=$work/layer2
mkdir -p "$l2/etc"
printf 'berth test image\n' >"$l2/etc/berth-release"
: >"$l2/etc/.wh.berth-base-only"

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
tarit "$l1" "$work/layer1.tar"
tarit "$l2" "$work/layer2.tar"
gzip -n -9 -c "$work/layer2.tar" >"$work/layer2.tar.gz"

diff1=$(sha "$work/layer1.tar")
diff2=$(sha "$work/layer2.tar")
blob1=$diff1
blob2=$(sha "$work/layer2.tar.gz")
cp "$work/layer1.tar" "$layout/blobs/sha256/$blob1"
cp "$work/layer2.tar.gz" "$layout/blobs/sha256/$blob2"

created=1970-01-01T00:00:00Z
printf '%s' "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"],\"Cmd\":[\"sh\"]},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diff1\",\"sha256:$diff2\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"berth build-busybox-image.sh: busybox base\"},\
{\"created\":\"$created\",\"created_by\":\"berth build-busybox-image.sh: berth-release\"}]}" \
    >"$work/config.json"
config=$(sha "$work/config.json")
cp "$work/config.json" "$layout/blobs/sha256/$config"

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config\",\"size\":$(size "$work/config.json")},\
\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$blob1\",\"size\":$(size "$work/layer1.tar")},\
{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$blob2\",\"size\":$(size "$work/layer2.tar.gz")}]}" \
    >"$work/manifest.json"
manifest=$(sha "$work/manifest.json")
cp "$work/manifest.json" "$layout/blobs/sha256/$manifest"

printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\
\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$manifest\",\"size\":$(size "$work/manifest.json"),\
\"annotations\":{\"org.opencontainers.image.ref.name\":\"busybox:latest\"},\
\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}}]}" \
    >"$layout/index.json"

# Also a docker-archive manifest, as `docker save` (v25+) writes beside the OCI layout, so
# older Docker engines can `docker load` the same tarball (for side-by-side benchmarks).
printf '%s' "[{\"Config\":\"blobs/sha256/$config\",\"RepoTags\":[\"busybox:latest\"],\
\"Layers\":[\"blobs/sha256/$blob1\",\"blobs/sha256/$blob2\"]}]" >"$layout/manifest.json"

mkdir -p "$(dirname "$out")"
tarit "$layout" "$out.tmp.$$"
mv "$out.tmp.$$" "$out"
echo "$out"
