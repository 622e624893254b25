#!/usr/bin/env bash
# A three-host lab on one machine, the same as the multi-host tests build
# (integration-tests/src/multihost.rs), to try overlay networks by hand:
#
#   deploy/multihost/netns-lab.sh up      # namespaces, underlay bridge, etcd; prints how to
#                                         # start berth in each host
#   deploy/multihost/netns-lab.sh status
#   deploy/multihost/netns-lab.sh down    # removes everything `up` made
#
# Layout (all made with `ip netns`, nothing in the root namespace):
#   berthlab-ul   the underlay: bridge ul0 at 192.0.2.1/24, etcd on 192.0.2.1:2379
#   berthlab-h<i> host i (i = 0, 1, 2): eth0 at 192.0.2.(11+i)/24, a veth whose other end
#                 h<i> is a port of ul0; lo up
# Host i's berth runs with BERTH_ROOT/BERTH_RUN under $BERTHLAB_DIR/h<i>, instance blab<i>,
# cluster store http://192.0.2.1:2379, advertise 192.0.2.(11+i), node host-<i>. Services
# join the host's network namespace with `nsenter --net` (not `ip netns exec`, which would
# also give them a private mount namespace whose mounts the rest of the machine cannot see).
#
# Needs root, iproute2, etcd (Debian etcd-server) and busybox (for ping/wget checks).
# `down` removes only namespaces named berthlab-*, the etcd it started (by its PID file)
# and its own files under $BERTHLAB_DIR; berth services you started in a host namespace must
# be stopped first (the printed berth-down.sh line) — `down` lists any process still inside.
set -euo pipefail

prefix=berthlab
hosts=3
lab_dir=${BERTHLAB_DIR:-/var/tmp/berthlab}
ul_ip=192.0.2.1
repo=$(cd "$(dirname "$0")/../.." && pwd)

host_ns() { echo "$prefix-h$1"; }
host_ip() { echo "192.0.2.$((11 + $1))"; }
ul_ns=$prefix-ul

die() {
    echo "$0: $*" >&2
    exit 1
}

exists() { [[ -e /run/netns/$1 ]]; }

up() {
    [[ $(id -u) -eq 0 ]] || die "run as root"
    command -v etcd >/dev/null || die "etcd is missing (apt-get install etcd-server)"
    exists "$ul_ns" && die "$ul_ns exists: the lab is up already (or run '$0 down')"
    # A failure half-way leaves a partial lab: take it down again.
    trap 'echo "$0: setup failed, removing the partial lab" >&2; down >/dev/null 2>&1 || true' ERR

    ip netns add "$ul_ns"
    ip -n "$ul_ns" link set lo up
    ip -n "$ul_ns" link add ul0 type bridge
    ip -n "$ul_ns" addr add "$ul_ip/24" dev ul0
    ip -n "$ul_ns" link set ul0 up
    for i in $(seq 0 $((hosts - 1))); do
        ns=$(host_ns "$i")
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        ip -n "$ul_ns" link add "h$i" type veth peer name eth0 netns "$ns"
        ip -n "$ul_ns" link set "h$i" master ul0 up
        ip -n "$ns" addr add "$(host_ip "$i")/24" dev eth0
        ip -n "$ns" link set eth0 mtu 1500 up
    done

    mkdir -p "$lab_dir/etcd"
    ip netns exec "$ul_ns" setsid -f bash -c 'echo $$ > "$1"; exec etcd \
        --name berthlab --data-dir "$2/data" \
        --listen-client-urls "http://$3:2379" --advertise-client-urls "http://$3:2379" \
        --listen-peer-urls "http://$3:2380" --initial-advertise-peer-urls "http://$3:2380" \
        --initial-cluster "berthlab=http://$3:2380" >>"$2/etcd.log" 2>&1' \
        _ "$lab_dir/etcd/etcd.pid" "$lab_dir/etcd" "$ul_ip" </dev/null
    local ok=
    for _ in $(seq 1 100); do
        if ip netns exec "$(host_ns 0)" busybox wget -qO- "http://$ul_ip:2379/version" 2>/dev/null |
            grep -q etcdserver; then
            ok=1
            break
        fi
        sleep 0.1
    done
    [[ -n $ok ]] || die "etcd did not answer on $ul_ip:2379 from $(host_ns 0); see $lab_dir/etcd/etcd.log"
    trap - ERR

    echo "lab is up: etcd at http://$ul_ip:2379 (log $lab_dir/etcd/etcd.log)"
    echo
    echo "Start berth in each host (binaries from 'just install', or set BERTH_BIN_DIR=$repo/target/debug):"
    for i in $(seq 0 $((hosts - 1))); do
        echo
        echo "# host $i ($(host_ip "$i"))"
        echo "$(host_env "$i") \\"
        echo "    nsenter --net=/run/netns/$(host_ns "$i") $repo/deploy/local/berth-up.sh"
    done
    echo
    echo "Use host i's engine from here (the CLI talks over the Unix socket, any namespace):"
    echo "    BERTH_RUN=$lab_dir/h0/run berth version"
    echo "Stop host i's services:"
    echo "    BERTH_RUN=$lab_dir/h0/run $repo/deploy/local/berth-down.sh"
    echo "Run a command in host i's network:  ip netns exec $(host_ns 0) busybox ping -c1 $(host_ip 1)"
}

host_env() {
    local i=$1 d=$lab_dir/h$1
    echo "BERTH_ROOT=$d/root BERTH_RUN=$d/run BERTH_LOG_DIR=$d/log BERTH_INSTANCE=blab$i" \
        "BERTH_CLUSTER_STORE=http://$ul_ip:2379 BERTH_ADVERTISE_ADDR=$(host_ip "$i")" \
        "BERTH_NODE_NAME=host-$i BERTH_CLUSTER_PREFIX=/berthlab"
}

# The etcd this script started: the PID file's process, if it still is our etcd.
lab_etcd_pid() {
    local pidfile=$lab_dir/etcd/etcd.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(cat "$pidfile")
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "--name berthlab" || return 1
    echo "$pid"
}

down() {
    [[ $(id -u) -eq 0 ]] || die "run as root"
    local pid
    if pid=$(lab_etcd_pid); then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    local left=
    for ns in "$ul_ns" $(for i in $(seq 0 $((hosts - 1))); do host_ns "$i"; done); do
        exists "$ns" || continue
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        if [[ -n ${pids// /} ]]; then
            echo "still in $ns (stop them, the namespace lives until they exit): $pids" >&2
            left=1
        fi
        ip netns del "$ns"
    done
    rm -rf "$lab_dir/etcd"
    rmdir "$lab_dir" 2>/dev/null || true
    echo "lab is down${left:+ (processes were left in its namespaces, see above)}"
    if [[ -d $lab_dir ]]; then
        echo "berth state of the hosts is kept in $lab_dir/h*; remove it once their services are stopped"
    fi
}

status() {
    for ns in "$ul_ns" $(for i in $(seq 0 $((hosts - 1))); do host_ns "$i"; done); do
        if exists "$ns"; then
            echo "$ns: up, processes: $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
        else
            echo "$ns: absent"
        fi
    done
    if pid=$(lab_etcd_pid); then echo "etcd: pid $pid"; else echo "etcd: not running"; fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
env)
    [[ ${2:-} =~ ^[0-9]+$ ]] && (($2 < hosts)) || die "usage: $0 env HOST (0..$((hosts - 1)))"
    host_env "$2"
    ;;
*)
    echo "usage: $0 up|down|status|env HOST" >&2
    exit 2
    ;;
esac
