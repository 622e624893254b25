# Sourced by deploy/bench/run.sh (it uses run.sh's berth, dk, docker_pid, result, stats,
# work, top): published ports and embedded DNS, berth beside Docker.
#
# HTTP: a busybox httpd (`httpd -f -p 80`) on a user network, published with
# -p 127.0.0.1:<free port>:80, serving a small file and a 1 MiB file; ApacheBench on the host
# (`ab -k -c 16`) against 127.0.0.1:<port> (berth: DNAT in its nftables table; Docker 20.10:
# docker-proxy, which Docker uses for loopback) and, for reference, against the
# address of a second, identical container on the bridge (no NAT or proxy in the path).
# DNS: deploy/bench/net-dns.py, 1,000 A queries one after another, run with nsenter in a
# second container's network namespace against the nameserver of that container's
# resolv.conf (berth: the network's gateway; Docker: 127.0.0.11), asking for the first
# container's name.
net_runs=${BENCH_NET_RUNS:-5}
net_small_n=${BENCH_NET_SMALL:-20000}
net_big_n=${BENCH_NET_BIG:-2000}
net_dns_n=${BENCH_NET_DNS:-1000}
net_note=""
net_engines=""   # the CLIs that have a bench network, for net_cleanup
net_cleanup() {
    local cli
    for cli in $net_engines; do
        net_cli "$cli"
        "${net_c[@]}" rm -f bench-web bench-dns >/dev/null 2>&1 || true
        "${net_c[@]}" network rm bench-net >/dev/null 2>&1 || true
    done
    net_engines=""
}
# After berth-down: the bench instance's default bridge (<link prefix>0) and nftables table,
# which the network service keeps across restarts and which go with the state root here.
net_teardown_instance() {
    local prefix
    prefix=$(python3 -c 'import sys
h = 0x811C9DC5
for b in sys.argv[1].encode(): h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
print("b%06x" % (h & 0xFFFFFF))' "$BERTH_INSTANCE")
    ip link del "${prefix}0" 2>/dev/null || true
    nft delete table ip "${BERTH_INSTANCE//[^A-Za-z0-9_]/_}" 2>/dev/null || true
}
# ab_run URL N -> "requests/s MiB/s"; a failed or short run fails the bench.
ab_run() {
    local out
    out=$(ab -k -q -c 16 -n "$2" "$1" 2>&1) || { echo "ab $1: $out" >&2; return 1; }
    awk -v n="$2" -v url="$1" '
        /^Complete requests:/ {done=$3} /^Failed requests:/ {failed=$3} /^Non-2xx responses:/ {bad=$3}
        /^Requests per second:/ {rps=$4} /^Transfer rate:/ {kib=$3}
        END {
            if (done != n || failed != 0 || bad != 0) { printf "ab %s: %s of %s complete, %s failed, %s non-2xx\n", url, done, n, failed, bad+0 > "/dev/stderr"; exit 1 }
            printf "%s %.1f\n", rps, kib / 1024 }' <<<"$out"
}
# cpu_ms PID -> user+system CPU time of the process so far, in ms.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) * 1000 / hz}' "/proc/$1/stat"; }
# net_subnet -> a /24 in 10.177.0.0/16 that no route on the host overlaps (the engines' own
# pools may be used up by other bridges on a shared machine).
net_subnet() {
    ip -4 route show table all | awk '{print $1}' | python3 -c '
import ipaddress, sys
used = [ipaddress.ip_network(l.strip(), strict=False) for l in sys.stdin if l[:1].isdigit()]
for n in ipaddress.ip_network("10.177.0.0/16").subnets(new_prefix=24):
    if not any(n.overlaps(u) for u in used if u.prefixlen > 0):
        print(n); break
else:
    sys.exit("no free /24 in 10.177.0.0/16")'
}
# net_cli NAME -> the engine's CLI in the array net_c.
net_cli() { if [[ $1 == berth ]]; then net_c=("$bin/berth"); else net_c=("${dk[@]}"); fi; }
# net_setup NAME: the network, the web server and the DNS client container of one engine;
# its port, container address and resolver into result[NAME.net_*].
net_setup() {
    local name=$1 port pid web='mkdir -p /tmp/www && head -c 1048576 /dev/zero >/tmp/www/big && echo hello >/tmp/www/small && exec httpd -f -p 80 -h /tmp/www'
    net_cli "$name"
    net_engines+=" $name"
    "${net_c[@]}" network create --subnet "$(net_subnet)" bench-net >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${net_c[@]}" run -d --name bench-web --net bench-net -p "127.0.0.1:$port:80" busybox sh -c "$web" >/dev/null
    # The second container: the DNS client, and the server of the "direct" runs (a server of
    # its own, so their connections never meet the NATed ones' TIME_WAIT entries).
    "${net_c[@]}" run -d --name bench-dns --net bench-net busybox sh -c "$web" >/dev/null
    pid=$("${net_c[@]}" inspect -f '{{.State.Pid}}' bench-dns)
    result[$name.net_url_port]=http://127.0.0.1:$port
    result[$name.net_url_direct]=http://$(nsenter --net="/proc/$pid/ns/net" ip -4 -o addr show dev eth0 | awk '{sub(/\/.*/, "", $4); print $4; exit}'):80
    result[$name.net_ns]=$("${net_c[@]}" exec bench-dns cat /etc/resolv.conf | awk '/^nameserver/ {print $2; exit}')
    result[$name.net_dnspid]=$("${net_c[@]}" inspect -f '{{.State.Pid}}' bench-dns)
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/small" >/dev/null 2>&1 && break; sleep 0.05; done
    for _ in $(seq 100); do curl -sf "${result[$name.net_url_direct]}/small" >/dev/null 2>&1 && break; sleep 0.05; done
    # The process that proxies the loopback port: berth's network service; Docker's docker-proxy.
    if [[ $name == berth ]]; then
        result[$name.net_proxypid]=$(cat "$BERTH_RUN/network.pid")
    else
        result[$name.net_proxypid]=$(pgrep -f "docker-proxy .*-host-port $port( |$)" | head -1)
    fi
    [[ $(curl -sf "http://127.0.0.1:$port/big" | wc -c) -eq 1048576 ]] \
        || { echo "$name: 127.0.0.1:$port/big did not serve 1 MiB" >&2; return 1; }
}
measure_net() {
    if ! command -v ab >/dev/null || ! command -v nsenter >/dev/null; then
        net_note="ab (apache2-utils) or nsenter is missing: no network figures."
        return
    fi
    local engines=berth name kind url out rps mibs d c0 c1 c2
    [[ -n $docker_pid ]] && engines="berth docker"
    for name in $engines; do net_setup "$name"; done
    # Rounds alternate between the engines, so a change in the machine's background load
    # during the run falls on both.
    declare -A s_rps b_mib med p99 cpu_k cpu_g
    for name in $engines; do
        for kind in port direct; do ab_run "${result[$name.net_url_$kind]}/small" 2000 >/dev/null; done  # warm-up
    done
    for _ in $(seq "$net_runs"); do
        for name in $engines; do
            for kind in port direct; do
                url=${result[$name.net_url_$kind]}
                c0=$(cpu_ms "${result[$name.net_proxypid]}")
                out=$(ab_run "$url/small" "$net_small_n"); read -r rps _ <<<"$out"
                s_rps[$name.$kind]+=" $rps"
                c1=$(cpu_ms "${result[$name.net_proxypid]}")
                out=$(ab_run "$url/big" "$net_big_n"); read -r _ mibs <<<"$out"
                b_mib[$name.$kind]+=" $mibs"
                c2=$(cpu_ms "${result[$name.net_proxypid]}")
                if [[ $kind == port ]]; then
                    cpu_k[$name]+=" $(( (c1 - c0) * 1000 / net_small_n ))"
                    cpu_g[$name]+=" $(( (c2 - c1) * 1024 / net_big_n ))"
                fi
            done
            # DNS: from the second container's namespace, the first container's name.
            out=$(nsenter --net="/proc/${result[$name.net_dnspid]}/ns/net" \
                python3 "$top/deploy/bench/net-dns.py" "${result[$name.net_ns]}" bench-web "$net_dns_n")
            read -r -a d <<<"$out"
            med[$name]+=" ${d[0]}"; p99[$name]+=" ${d[1]}"
        done
    done
    for name in $engines; do
        for kind in port direct; do
            result[$name.net_${kind}_small]=$(echo "${s_rps[$name.$kind]}" | stats)
            result[$name.net_${kind}_mib]=$(echo "${b_mib[$name.$kind]}" | stats)
        done
        result[$name.net_cpuk]=$(echo "${cpu_k[$name]}" | stats)
        result[$name.net_cpug]=$(echo "${cpu_g[$name]}" | stats)
        result[$name.net_dns]=$(echo "${med[$name]}" | stats)
        result[$name.net_dns99]=$(echo "${p99[$name]}" | stats)
    done
    net_cleanup
}
net_section() {
    echo "## Published ports and DNS"
    echo
    if [[ -z ${result[berth.net_dns]:-} ]]; then
        echo "$net_note"
        return
    fi
    local dnote="Docker is not installed on this machine, so its column is empty."
    [[ -n $docker_pid ]] && dnote="Docker $("${dk[@]}" version --format '{{.Server.Version}}') ran the same containers in the same run (its loopback ports go through docker-proxy)."
    local by="\`just bench\`"
    [[ $only == net ]] && by="\`BENCH_ONLY=net deploy/bench/run.sh\`"
    echo "Written by $by on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r)). A busybox"
    echo "\`httpd -f -p 80\` on a user network, published with \`-p 127.0.0.1:<port>:80\`, loaded from the host"
    echo "with ApacheBench $(ab -V | awk 'NR==1 {print $5}') (\`ab -k -c 16\`): $net_small_n requests for a 6-byte file, $net_big_n for a 1 MiB file."
    echo "busybox httpd closes every connection, so each request is a new TCP connection (and a fork in"
    echo "httpd). berth carries loopback traffic to a published port with DNAT in its nftables table"
    echo "(\`route_localnet\` on its bridges), so no process relays it; Docker 20.10 relays it through a"
    echo "docker-proxy process per port, copying every byte in user space. The CPU rows are the user+system"
    echo "time, over those ab runs, of the process holding the port (berth's network service; Docker's"
    echo "docker-proxy); the kernel's DNAT work is not in berth's figure. The \"direct\" rows go to a"
    echo "second, identical container's address on the bridge, with no NAT or proxy in the path. DNS:"
    echo "$net_dns_n A queries for the other container's name, one at a time over UDP, sent from a second"
    echo "container's network namespace (\`nsenter --net\`, deploy/bench/net-dns.py) to its resolv.conf"
    echo "nameserver (berth: the network's gateway ${result[berth.net_ns]}; Docker: ${result[docker.net_ns]:-127.0.0.11})."
    echo "Median of $net_runs rounds (min–max), alternating berth and Docker; for DNS each round's median and 99th"
    echo "percentile. $dnote"
    echo
    echo "| figure | berth | Docker | berth / Docker |"
    echo "|---|---|---|---|"
    row "requests/s, small file, 127.0.0.1:<port>" net_port_small "req/s"
    row "MiB/s, 1 MiB file, 127.0.0.1:<port>" net_port_mib "MiB/s"
    row "CPU time of the port's process per 1,000 small-file requests" net_cpuk ms
    row "CPU time of the port's process per GiB of 1 MiB files" net_cpug ms
    row "requests/s, small file, direct" net_direct_small "req/s"
    row "MiB/s, 1 MiB file, direct" net_direct_mib "MiB/s"
    row "DNS lookup, median of a round (1,000 queries)" net_dns µs
    row "DNS lookup, 99th percentile of a round" net_dns99 µs
    echo
    echo "Target (issue 5): requests/s and MiB/s through a published loopback port ≥ 2× Docker's."
    pct() { awk -v a="${result[$1.net_port_$2]%% *}" -v b="${result[$1.net_direct_$2]%% *}" 'BEGIN {printf "%.0f%%", (b>0)?100*a/b:0}'; }
    echo "The \"direct\" rows are the ceiling for any port path to this server (httpd forks per"
    echo "connection on the same cores as ab): berth's loopback port carries $(pct berth small) (small file) and"
    if [[ -n ${result[docker.net_port_small]:-} ]]; then
        echo "$(pct berth mib) (1 MiB) of it, Docker's $(pct docker small) and $(pct docker mib); so a 2× lead needs a server"
        echo "that is not the bottleneck."
    else
        echo "$(pct berth mib) (1 MiB) of it."
    fi
}
