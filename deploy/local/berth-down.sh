#!/usr/bin/env bash
# Stops the services started by berth-up.sh (six processes, or `berthd`), by the PIDs it
# recorded. Containers keep running under their shims and are picked up again by the next
# `just up`. When no container runs any more, the instance's kernel objects go too (its
# bridges, nftables table and parent cgroups); the next `just up` makes them again.
set -euo pipefail
run_dir=${BERTH_RUN:-/run/berth}
for s in berthd engine log-router volume network supervisor image-store; do
    pidfile=$run_dir/$s.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
done

instance=${BERTH_INSTANCE:-berth}
# A container runs while its cgroup exists under the instance's (in any hierarchy).
running=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 3 -type d -path "*/$instance/*" 2>/dev/null | head -1)
if [[ -z $running ]]; then
    # The link prefix as berth computes it (berth_common::config::link_prefix).
    prefix=$(python3 -c 'import re, sys
i = sys.argv[1]
if 0 < len(i) <= 6 and re.fullmatch("[A-Za-z0-9]+", i): print(i); sys.exit()
h = 0x811C9DC5
for b in i.encode(): h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
print("b%06x" % (h & 0xFFFFFF))' "$instance")
    # The names berth gives its own links (berth_network::names::is_own_link).
    for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 |
        grep -E "^${prefix}(0|-[0-9a-f]+|[vp][0-9a-f]{6}|[ox][0-9a-f]+)$" || true); do
        ip link delete "$link" 2>/dev/null || true
    done
    nft delete table ip "${instance//[^A-Za-z0-9_]/_}" 2>/dev/null || true
    for dir in /sys/fs/cgroup/*/"$instance" /sys/fs/cgroup/"$instance"; do
        [[ -d $dir ]] && rmdir "$dir" 2>/dev/null || true
    done
fi
echo "berth is down"
