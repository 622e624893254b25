#!/usr/bin/env bash
# berth's benchmarks, and Docker's figures beside them in the same run when dockerd is
# installed (Debian: apt-get install docker.io). Writes docs/benchmarks.md.
#
# Each figure is the median of several runs, with min and max. berth runs from the
# release binaries on a private state root, so an engine already running is not disturbed.
#
# Pull: a 5-layer ~100 MB image (deploy/bench/pull-image.sh) pushed with skopeo to a
# docker-registry that this script starts on a free loopback port with its own config, then
# pulled cold and warm by berth, by docker, and copied by `skopeo copy` (download only).
# BENCH_ONLY=pull runs only that part and replaces the "## Pull" section of the page.
#
# Volumes: dd with O_DIRECT (256 MiB, 1 MiB blocks) written and read in a container into a
# named volume, and the same busybox dd on the host into a directory of the same
# filesystem; and `volume ls` with 1,000 volumes. BENCH_ONLY=volume runs only that part
# and replaces the "## Volumes" section of the page.
#
# Published ports and DNS (deploy/bench/net-bench.sh): requests/s and MiB/s with ab through
# -p 127.0.0.1:<port>:80 to a busybox httpd, and embedded-DNS lookup latency from a second
# container (deploy/bench/net-dns.py). BENCH_ONLY=net runs only that part and replaces the
# "## Published ports and DNS" section of the page.
#
# Logs (deploy/bench/logs-bench.sh): a million lines through json-file attached and
# detached, `logs` and `logs --tail 10` of them, and fluentd delivery to Fluent Bit.
# BENCH_ONLY=logs runs only that part and replaces the "## Logs" section of the page.
#
# Stats (deploy/bench/stats-bench.sh): `stats --no-stream` over 100 running containers and the
# CPU time of a streaming `stats` over them for 10 s (CLI + engine processes), beside Docker.
# BENCH_ONLY=stats runs only that part and replaces the "## Stats" section of the page.
#
# Every run ends with deploy/bench/chart.py drawing docs/benchmarks.svg: each berth / Docker
# ratio on the page, on one log-scale chart (linked under the page's title).
#
# One process (berthd): the same engine figures and idle memory with the six services run as
# one process, `berthd` (BERTH_ONE_PROCESS=1 deploy/local/berth-up.sh), beside the six
# processes in the same run. BENCH_ONLY=berthd runs only that part (and the six-process
# figures it is compared with) and replaces the "## One process (berthd)" section.
#
# Overlay (integration-tests/tests/measured/overlay_bench.rs, with these release services): the
# netns lab of deploy/multihost, TCP throughput and round trips between containers on two
# hosts over VXLAN against the same between the hosts over the underlay, and the time until
# a new container's name resolves on another host. BENCH_ONLY=overlay runs only that part
# and replaces the "## Overlay across hosts" section of the page.
set -euo pipefail
image_tar=$1
top=$(cd "$(dirname "$0")/../.." && pwd)
bin=$top/target/release
runs=${BENCH_RUNS:-20}
pull_runs=${BENCH_PULL_RUNS:-3}
only=${BENCH_ONLY:-}
ps_n=${BENCH_PS_CONTAINERS:-1000}
work=$(mktemp -d /tmp/bbench.XXXX)
export BERTH_ROOT=$work/root BERTH_RUN=$work/run BERTH_INSTANCE=berth-bench-$$ BERTH_LOG_DIR=$work/log
export BERTH_BIN_DIR=$bin BERTH_ENGINE_SOCKET=$work/run/engine.sock
docker_pid=""
registry_pid=""
cleanup() {
    "$bin/berth" ps -aq 2>/dev/null | xargs -r "$bin/berth" rm -f >/dev/null 2>&1 || true
    "$top/deploy/local/berth-down.sh" >/dev/null 2>&1 || true
    # The instance's parent cgroups (empty once its containers are gone).
    for h in /sys/fs/cgroup/*/; do
        if [[ -d $h$BERTH_INSTANCE ]]; then rmdir "$h$BERTH_INSTANCE" 2>/dev/null || true; fi
    done
    if [[ -n $docker_pid ]]; then
        docker -H "unix://$work/docker.sock" ps -aq 2>/dev/null | xargs -r docker -H "unix://$work/docker.sock" rm -f >/dev/null 2>&1 || true
        kill "$docker_pid" 2>/dev/null || true
        wait "$docker_pid" 2>/dev/null || true
        grep " $work/docker" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    if [[ -n $registry_pid ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
# Published ports and DNS (deploy/bench/net-bench.sh); its cleanup also removes the
# instance's default bridge and nftables table once the services are down.
. "$top/deploy/bench/net-bench.sh"
. "$top/deploy/bench/logs-bench.sh"
. "$top/deploy/bench/stats-bench.sh"
trap 'net_cleanup; logs_cleanup; stats_cleanup; cleanup; net_teardown_instance' EXIT

now_ns() { date +%s%N; }
# The overlay lab brings up its own hosts (network namespaces) with the release services.
measure_overlay() {
    if ! (cd "$top" && BERTH_BENCH_OUT=$work/overlay.md BERTH_TEST_IMAGE=$image_tar \
        cargo test -q -p berth-integration-tests --test measured overlay_bench -- --ignored >"$work/overlay.log" 2>&1); then
        tail -n 40 "$work/overlay.log" >&2
        printf '## Overlay across hosts\n\nThe overlay benchmark failed in this run.\n' >"$work/overlay.md"
    fi
}
overlay_section() { cat "$work/overlay.md"; }
# BENCH_ONLY=<part>: writes only that part's section into docs/benchmarks.md (replacing the
# section of that title, or adding it at the end), keeps the rest of the page, and stops.
replace_section() { # title section-function
    local doc=$top/docs/benchmarks.md rest
    rest=$( [[ -f $doc ]] && awk -v t="## $1" '$0 == t {skip=1; next} skip && /^## / {skip=0} !skip' "$doc" || true)
    "$2" >"$work/section.md"
    { printf '%s\n\n' "$rest"; cat "$work/section.md"; } >"$work/benchmarks.md"
    cp "$work/benchmarks.md" "$doc"
    python3 "$top/deploy/bench/chart.py" "$doc" "$top/docs/benchmarks.svg"
    cat "$work/section.md"
    exit 0
}
# stats "v1 v2 ..." -> "median min max" (milliseconds, one decimal)
stats() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f %.1f %.1f", m, a[1], a[NR]}'; }
# time_ms CMD... -> elapsed milliseconds
time_ms() { local s e; s=$(now_ns); "$@" >/dev/null; e=$(now_ns); echo $(( (e - s) / 100000 )) | awk '{printf "%.1f", $1/10}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_kib() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
anon_kib() { awk '/^Anonymous:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
# idle_memory PID... -> "rss pss anon", KiB summed over the processes
idle_memory() {
    local rss=0 pss=0 anon=0 p
    for p in "$@"; do
        rss=$(( rss + $(rss_kib "$p") )); pss=$(( pss + $(pss_kib "$p") )); anon=$(( anon + $(anon_kib "$p") ))
    done
    echo "$rss $pss $anon"
}
# mib KIB -> "N.N MiB"; ratio A B -> "A/B×"
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f×", a/b}'; }
six_pids() { for s in engine image-store supervisor network volume log-router; do cat "$BERTH_RUN/$s.pid"; done; }

if [[ -z $only || $only == overlay ]]; then measure_overlay; fi
if [[ $only == overlay ]]; then replace_section "Overlay across hosts" overlay_section; fi
"$top/deploy/local/berth-up.sh" >/dev/null
berth() { "$bin/berth" "$@"; }
berth load -i "$image_tar" >/dev/null

declare -A result
measure_engine() { # name cli...
    local name=$1; shift
    local cli=("$@") samples=""
    "${cli[@]}" run --rm busybox true >/dev/null  # warm-up
    for _ in $(seq "$runs"); do samples+=" $(time_ms "${cli[@]}" run --rm busybox true)"; done
    result[$name.run]=$(echo "$samples" | stats)

    samples=""
    for r in 1 2 3; do
        local s e
        s=$(now_ns)
        for i in $(seq 50); do "${cli[@]}" run -d --name "bench-$r-$i" busybox sleep 1000 >/dev/null; done
        e=$(now_ns)
        samples+=" $(( (e - s) / 1000000 ))"
        "${cli[@]}" ps -aq | xargs -r "${cli[@]}" rm -f >/dev/null
    done
    result[$name.run50]=$(echo "$samples" | stats)

    "${cli[@]}" run -d --name bench-exec busybox sleep 1000 >/dev/null
    "${cli[@]}" exec bench-exec true  # warm-up
    samples=""
    for _ in $(seq "$runs"); do samples+=" $(time_ms "${cli[@]}" exec bench-exec true)"; done
    result[$name.exec]=$(echo "$samples" | stats)
    "${cli[@]}" rm -f bench-exec >/dev/null
    result[$name.key]=$(python3 "$top/deploy/bench/keystroke.py" "${KEYSTROKES:-1000}" "${cli[@]}")

    for i in $(seq "$ps_n"); do "${cli[@]}" create --name "bench-ps-$i" busybox true >/dev/null; done
    samples=""
    for _ in $(seq "$runs"); do samples+=" $(time_ms "${cli[@]}" ps -a)"; done
    result[$name.ps]=$(echo "$samples" | stats)
    "${cli[@]}" ps -aq | xargs -r "${cli[@]}" rm -f >/dev/null
}

# The same work and idle time as the six processes had, with the six services as berthd;
# then the six processes again for the parts that follow.
measure_one_process() {
    "$top/deploy/local/berth-down.sh" >/dev/null
    BERTH_ONE_PROCESS=1 "$top/deploy/local/berth-up.sh" >/dev/null
    measure_engine berthd "$bin/berth"
    sleep 12
    read -r one_rss one_pss one_anon <<<"$(idle_memory "$(cat "$BERTH_RUN/berthd.pid")")"
    "$top/deploy/local/berth-down.sh" >/dev/null
    BERTH_ONE_PROCESS='' "$top/deploy/local/berth-up.sh" >/dev/null
}
one_process_section() {
    cell() { local m lo hi; read -r m lo hi <<<"${result[$1]}"; echo "$m ms ($lo–$hi)"; }
    orow() { # label key
        local a b
        a=$(cut -d' ' -f1 <<<"${result[berth.$2]}"); b=$(cut -d' ' -f1 <<<"${result[berthd.$2]}")
        echo "| $1 | $(cell "berth.$2") | $(cell "berthd.$2") | $(ratio "$b" "$a") |"
    }
    echo "## One process (berthd)"
    echo
    echo "The six services as one process, \`berthd\` (\`BERTH_ONE_PROCESS=1 just up\`), serving the"
    echo "same six sockets, against the six processes in the same run: the same work (the engine"
    echo "figures at the top of the page), then 12 s idle. Median of $runs runs (min–max)."
    echo
    echo "| figure | six processes | berthd | berthd / six |"
    echo "|---|---|---|---|"
    echo "| idle RSS (sum) | $(mib "$berth_rss") | $(mib "$one_rss") | $(ratio "$one_rss" "$berth_rss") |"
    echo "| idle PSS (sum) | $(mib "$berth_pss") | $(mib "$one_pss") | $(ratio "$one_pss" "$berth_pss") |"
    echo "| idle heap (anonymous) | $(mib "$berth_anon") | $(mib "$one_anon") | $(ratio "$one_anon" "$berth_anon") |"
    orow '`run --rm busybox true`' run
    orow '50 × `run -d … sleep 1000`' run50
    orow "\`ps -a\` with $ps_n containers" ps
    orow '`exec c true`' exec
}

if [[ -z $only || $only == berthd ]]; then
    measure_engine berth "$bin/berth"
    sleep 12  # idle: past the services' periodic heap trim
    # shellcheck disable=SC2046 # one PID per word
    read -r berth_rss berth_pss berth_anon <<<"$(idle_memory $(six_pids))"
    measure_one_process
fi
if [[ $only == berthd ]]; then replace_section "One process (berthd)" one_process_section; fi
if [[ -z $only ]]; then
    berth run -d --name bench-shim busybox sleep 1000 >/dev/null
    sleep 2  # idle: the shim gives its code pages back after a second of quiet
    shim_pid=$(pgrep -f "berth-shim --id $(berth inspect --format '{{.Id}}' bench-shim)" | head -1 || true)
    shim_private=$(awk '/^Private/ {s+=$2} END {print s+0}' "/proc/$shim_pid/smaps_rollup" 2>/dev/null || echo 0)
    berth rm -f bench-shim >/dev/null
fi

docker_note="Docker is not installed on this machine (apt-get install docker.io), so only berth's figures are shown."
docker_rss=""; docker_shim=""; docker_anon=0
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$work/docker.sock" \
        --pidfile "$work/docker.pid" --bridge=none --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &
    docker_pid=$!
    dk=(docker -H "unix://$work/docker.sock")
    for _ in $(seq 150); do "${dk[@]}" version >/dev/null 2>&1 && break; sleep 0.2; done
    if "${dk[@]}" load -i "$image_tar" >/dev/null 2>&1; then
        if [[ -z $only ]]; then
            measure_engine docker "${dk[@]}"
            sleep 12
            docker_pids="$docker_pid $(pgrep -P "$docker_pid" -x containerd || true)"
            docker_rss=0; docker_pss=0
            for p in $docker_pids; do
                docker_rss=$(( docker_rss + $(rss_kib "$p") )); docker_pss=$(( docker_pss + $(pss_kib "$p") ))
                docker_anon=$(( docker_anon + $(anon_kib "$p") ))
            done
            "${dk[@]}" run -d --name bench-shim busybox sleep 1000 >/dev/null
            sleep 2
            dshim=$(pgrep -f containerd-shim | head -1 || true)
            docker_shim=$(awk '/^Private/ {s+=$2} END {print s+0}' "/proc/$dshim/smaps_rollup" 2>/dev/null || echo 0)
            "${dk[@]}" rm -f bench-shim >/dev/null
            # Image archives round-trip both ways.
            roundtrip="failed"
            if "$bin/berth" save busybox | "${dk[@]}" load >/dev/null \
                && "${dk[@]}" tag busybox bench-rt:1 && "${dk[@]}" save bench-rt:1 | "$bin/berth" load >/dev/null \
                && [[ $("$bin/berth" run --rm bench-rt:1 cat /etc/berth-release) == "berth test image" ]]; then
                roundtrip="passed: \`berth save | docker load\` and \`docker save | berth load\` (then \`berth run\`)"
            fi
        fi
        docker_note="Docker $("${dk[@]}" version --format '{{.Server.Version}}') ran on the same machine in the same run (dockerd with --bridge=none, so its containers get no network, while berth's get its default bridge network: veth, address, DNS; containerd and runc)."
    else
        docker_note="dockerd is installed but could not load the test image; see its log. Only berth's figures are shown."
    fi
fi

# Pull: a 5-layer ~100 MB image from a registry on loopback, cold and warm.
pull_note=""
measure_pull() {
    if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
        pull_note="docker-registry or skopeo is missing (deploy/install-deps.sh installs both): no pull figures."
        return
    fi
    "$top/deploy/bench/pull-image.sh" "$image_tar" "$work/pull-image" >/dev/null
    pull_mib=$(du -sb "$work/pull-image/blobs" | awk '{printf "%.0f", $1/1048576}')
    # The registry: a free loopback port, its own config and storage (never the default config,
    # which listens on every interface). The port may be taken before it binds: try a few.
    mkdir -p "$work/registry"
    local port="" ref
    for _ in 1 2 3 4 5; do
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        printf '%s\n' "version: 0.1" "log:" "  level: error" "  accesslog:" "    disabled: true" \
            "storage:" "  filesystem:" "    rootdirectory: $work/registry/data" \
            "http:" "  addr: 127.0.0.1:$port" "  secret: berth-bench-$$" >"$work/registry/config.yml"
        docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
        registry_pid=$!
        for _ in $(seq 100); do
            curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
            kill -0 "$registry_pid" 2>/dev/null || break
            sleep 0.05
        done
        curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
        kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true
        registry_pid=""
    done
    if [[ -z $registry_pid ]]; then
        pull_note="docker-registry did not start: $(tail -3 "$work/registry/log")"
        return
    fi
    ref=127.0.0.1:$port/bench/pull:1
    skopeo copy --quiet --dest-tls-verify=false "oci:$work/pull-image:bench:pull" "docker://$ref"

    local samples=""
    berth_cold() { berth rmi "$ref" >/dev/null 2>&1 || true; berth image prune -a -f >/dev/null; }
    for _ in $(seq "$pull_runs"); do
        berth_cold
        samples+=" $(time_ms berth pull "$ref")"
    done
    result[berth.pull]=$(echo "$samples" | stats)
    samples=""
    for _ in $(seq "$pull_runs"); do samples+=" $(time_ms berth pull "$ref")"; done
    result[berth.pull2]=$(echo "$samples" | stats)
    # The pulled image is whole: every layer's file is there.
    [[ $(berth run --rm "$ref" sh -c 'cat /bench/*.bin | wc -c') -eq $(( ${PULL_LAYERS:-5} * ${PULL_LAYER_MB:-20} * 1048576 )) ]] \
        || { echo "berth pulled an incomplete image" >&2; exit 1; }

    # Where berth's time goes: one more cold pull, its progress lines stamped as they arrive,
    # and the image store's CPU time (user+sys) over it.
    berth_cold
    local store_pid t0 t line dl=0 ex=0 dg=0 cpu0 cpu1
    store_pid=$(cat "$BERTH_RUN/image-store.pid")
    cpu0=$(awk '{print $14 + $15}' "/proc/$store_pid/stat")
    t0=$EPOCHREALTIME
    while IFS= read -r line; do
        t=$EPOCHREALTIME
        case $line in
            *": Download complete") dl=$t ;;
            *": Pull complete") ex=$t ;;
            "Digest: "*) dg=$t ;;
        esac
    done < <(berth pull "$ref")
    t=$EPOCHREALTIME
    cpu1=$(awk '{print $14 + $15}' "/proc/$store_pid/stat")
    pull_profile=$(awk -v t0="$t0" -v dl="$dl" -v ex="$ex" -v dg="$dg" -v t="$t" \
        -v cpu="$(( (cpu1 - cpu0) * 1000 / $(getconf CLK_TCK) ))" 'BEGIN {
        if (dl == 0 || ex == 0 || dg == 0) { printf "total %.0f ms (no per-layer progress lines to split it by)", (t-t0)*1000; exit }
        printf "%.0f ms until the last layer was downloaded and its digest checked, %.0f ms more until the last layer was unpacked, %.0f ms to commit (total %.0f ms), with %d ms of CPU time (user+sys) in the image store",
            (dl-t0)*1000, (ex-dl)*1000, (dg-ex)*1000, (t-t0)*1000, cpu }')

    if [[ -n $docker_pid ]]; then
        samples=""
        for _ in $(seq "$pull_runs"); do
            "${dk[@]}" rmi "$ref" >/dev/null 2>&1 || true
            samples+=" $(time_ms "${dk[@]}" pull "$ref")"
        done
        result[docker.pull]=$(echo "$samples" | stats)
        samples=""
        for _ in $(seq "$pull_runs"); do samples+=" $(time_ms "${dk[@]}" pull "$ref")"; done
        result[docker.pull2]=$(echo "$samples" | stats)
        "${dk[@]}" rmi "$ref" >/dev/null 2>&1 || true
    fi

    samples=""
    for _ in $(seq "$pull_runs"); do
        rm -rf "$work/skopeo-out"
        samples+=" $(time_ms skopeo copy --quiet --src-tls-verify=false "docker://$ref" "oci:$work/skopeo-out:bench")"
    done
    rm -rf "$work/skopeo-out"
    result[skopeo.pull]=$(echo "$samples" | stats)
    berth_cold
    # The cold pulls pruned every unused image, busybox too: the parts after this need it.
    berth load -i "$image_tar" >/dev/null
    if [[ -n $docker_pid ]]; then "${dk[@]}" load -i "$image_tar" >/dev/null; fi
}
if [[ -z $only || $only == pull ]]; then measure_pull; fi

# Volumes. Debian's busybox dd prints no timing, so dd is timed from outside: in a running
# container through `exec`, minus the median of `exec … true` (the exec's own cost), and on
# the host directly, minus `busybox true`. Each sample is $vol_passes passes of the 256 MiB dd
# in one command, so the subtracted start-up cost is a small part of it.
# dd_mibs BASE_MS CMD... -> MiB/s.
vol_runs=${BENCH_VOL_RUNS:-9}
vol_mib=${BENCH_VOL_MIB:-256}
vol_passes=${BENCH_VOL_PASSES:-4}
dd_w="for i in \$(seq $vol_passes); do rm -f /v/f; dd if=/dev/zero of=/v/f bs=1M count=$vol_mib oflag=direct 2>/dev/null; done"
dd_r="for i in \$(seq $vol_passes); do dd if=/v/f of=/dev/null bs=1M iflag=direct 2>/dev/null; done"
dd_mibs() {
    local base=$1 ms; shift
    ms=$(time_ms "$@")
    awk -v mib="$((vol_mib * vol_passes))" -v ms="$ms" -v base="$base" 'BEGIN {printf "%.0f", mib / ((ms - base) / 1000)}'
}
median_ms() { local s=""; for _ in $(seq 10); do s+=" $(time_ms "$@")"; done; echo "$s" | stats | awk '{print $1}'; }
# berth, the host and Docker take turns sample by sample, so a busy moment on the machine
# does not land on one of them only.
measure_volume() {
    local host=$work/hostio bw="" br="" hw="" hr="" dw="" dr="" bbase hbase dbase
    local b=("$bin/berth" exec bench-io) h_w="${dd_w//\/v\//$host/}" h_r="${dd_r//\/v\//$host/}"
    berth volume create bench-io >/dev/null
    berth run -d --name bench-io -v bench-io:/v busybox sleep 1000 >/dev/null
    bbase=$(median_ms "${b[@]}" true)
    mkdir -p "$host"
    hbase=$(median_ms busybox sh -c true)
    if [[ -n $docker_pid ]]; then
        "${dk[@]}" volume create bench-io >/dev/null
        "${dk[@]}" run -d --name bench-io -v bench-io:/v busybox sleep 1000 >/dev/null
        dbase=$(median_ms "${dk[@]}" exec bench-io true)
    fi
    for _ in $(seq "$vol_runs"); do
        bw+=" $(dd_mibs "$bbase" "${b[@]}" sh -c "$dd_w")"
        hw+=" $(dd_mibs "$hbase" busybox sh -c "$h_w")"
        if [[ -n $docker_pid ]]; then dw+=" $(dd_mibs "$dbase" "${dk[@]}" exec bench-io sh -c "$dd_w")"; fi
        br+=" $(dd_mibs "$bbase" "${b[@]}" sh -c "$dd_r")"
        hr+=" $(dd_mibs "$hbase" busybox sh -c "$h_r")"
        if [[ -n $docker_pid ]]; then dr+=" $(dd_mibs "$dbase" "${dk[@]}" exec bench-io sh -c "$dd_r")"; fi
    done
    result[berth.volw]=$(echo "$bw" | stats); result[berth.volr]=$(echo "$br" | stats)
    result[host.volw]=$(echo "$hw" | stats); result[host.volr]=$(echo "$hr" | stats)
    berth rm -f bench-io >/dev/null
    berth volume rm bench-io >/dev/null
    rm -rf "$host"
    if [[ -n $docker_pid ]]; then
        result[docker.volw]=$(echo "$dw" | stats); result[docker.volr]=$(echo "$dr" | stats)
        "${dk[@]}" rm -f bench-io >/dev/null
        "${dk[@]}" volume rm bench-io >/dev/null
    fi

    local n=${BENCH_VOLUMES:-1000} samples=""
    for i in $(seq "$n"); do echo "bench-v$i"; done | xargs -P 8 -n 50 sh -c 'for v; do "$0" volume create "$v" >/dev/null; done' "$bin/berth"
    [[ $(berth volume ls -q | wc -l) -eq $n ]] || { echo "volume ls does not list $n volumes" >&2; exit 1; }
    berth volume ls >/dev/null  # warm-up
    for _ in $(seq "$runs"); do samples+=" $(time_ms berth volume ls)"; done
    result[berth.vols]=$(echo "$samples" | stats)
    samples=""
    for _ in $(seq "$runs"); do samples+=" $(time_ms berth volume ls -f dangling=true -f name=bench-v99)"; done
    result[berth.volsf]=$(echo "$samples" | stats)
    berth volume ls -q | xargs -r -n 200 "$bin/berth" volume rm >/dev/null
    if [[ -n $docker_pid ]]; then
        for i in $(seq "$n"); do echo "bench-v$i"; done \
            | DK="${dk[*]}" xargs -P 8 -n 50 sh -c 'for v; do $DK volume create "$v" >/dev/null; done' _ 2>/dev/null || true
        samples=""
        for _ in $(seq "$runs"); do samples+=" $(time_ms "${dk[@]}" volume ls)"; done
        result[docker.vols]=$(echo "$samples" | stats)
        samples=""
        for _ in $(seq "$runs"); do samples+=" $(time_ms "${dk[@]}" volume ls -f dangling=true -f name=bench-v99)"; done
        result[docker.volsf]=$(echo "$samples" | stats)
        "${dk[@]}" volume prune -a -f >/dev/null 2>&1 || true
    fi
}
if [[ -z $only || $only == volume ]]; then measure_volume; fi
volume_section() {
    echo "## Volumes"
    echo
    local dnote="Docker is not installed on this machine, so its column is empty."
    [[ -n $docker_pid ]] && dnote="Docker $("${dk[@]}" version --format '{{.Server.Version}}') ran the same commands in the same run."
    echo "Written by \`just bench\` (or \`BENCH_ONLY=volume deploy/bench/run.sh\`) on $(date -u +%Y-%m-%d) ($(nproc) cores,"
    echo "kernel $(uname -r), $(df -T "$work" | awk 'NR==2 {print $2}') under the state root). Throughput: busybox \`dd bs=1M\` of $vol_mib MiB with"
    echo "O_DIRECT, $vol_passes passes per sample, median of $vol_runs samples (min–max), berth, host and Docker in turn: in a running container through"
    echo "\`exec\`, less the median time of \`exec … true\`; on the host, the same busybox binary on a directory of the"
    echo "same filesystem, less \`busybox sh -c true\`."
    echo "\`volume ls\`: median of $runs runs with ${BENCH_VOLUMES:-1000} volumes. $dnote"
    echo
    echo "| figure | berth | host | Docker | berth / host |"
    echo "|---|---|---|---|---|"
    vrow() { # label key unit
        local b=${result[berth.$2]:-} h=${result[host.$2]:-} d=${result[docker.$2]:-} bm hm hcell="—" dcell="—" ratio="—"
        read -r bm bmin bmax <<<"$b"
        if [[ -n $h ]]; then
            read -r hm hmin hmax <<<"$h"; hcell="$hm $3 ($hmin–$hmax)"
            ratio=$(awk -v a="$bm" -v b="$hm" 'BEGIN {printf "%.3f", (b>0)?a/b:0}')
        fi
        if [[ -n $d ]]; then read -r dm dmin dmax <<<"$d"; dcell="$dm $3 ($dmin–$dmax)"; fi
        echo "| $1 | $bm $3 ($bmin–$bmax) | $hcell | $dcell | $ratio |"
    }
    vrow "dd O_DIRECT write into a named volume" volw MiB/s
    vrow "dd O_DIRECT read from a named volume" volr MiB/s
    vrow "\`volume ls\` with ${BENCH_VOLUMES:-1000} volumes" vols ms
    vrow "\`volume ls -f dangling=true -f name=…\` with ${BENCH_VOLUMES:-1000} volumes" volsf ms
    echo
    echo "A volume is a bind mount of a host directory, so its I/O is the host filesystem's; the"
    echo "target (issue 6) is volume I/O within 5% of the host."
}
# BENCH_ONLY=pull|volume: replace that section of the page (or add it) and keep the rest.
if [[ $only == volume ]]; then replace_section "Volumes" volume_section; fi

row() { # label key unit
    local b=${result[berth.$2]:-} d=${result[docker.$2]:-}
    read -r bm bmin bmax <<<"$b"
    if [[ -n $d ]]; then
        read -r dm dmin dmax <<<"$d"
        ratio=$(awk -v a="$bm" -v b="$dm" 'BEGIN {printf "%.2f×", (b>0)?a/b:0}')
        echo "| $1 | $bm $3 ($bmin–$bmax) | $dm $3 ($dmin–$dmax) | $ratio |"
    else
        echo "| $1 | $bm $3 ($bmin–$bmax) | — | — |"
    fi
}
pull_section() {
    echo "## Pull"
    echo
    if [[ -z ${result[berth.pull]:-} ]]; then
        echo "$pull_note"
        return
    fi
    local dnote="Docker is not installed on this machine, so its column is empty."
    [[ -n $docker_pid ]] && dnote="Docker $("${dk[@]}" version --format '{{.Server.Version}}') pulled from the same registry in the same run (a registry on 127.0.0.0/8 is insecure to dockerd by default)."
    local by="\`just bench\`"
    [[ $only == pull ]] && by="\`BENCH_ONLY=pull deploy/bench/run.sh\`"
    echo "Written by $by on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r)). A ${PULL_LAYERS:-5}-layer image of"
    echo "$pull_mib MiB (gzip layers of random, incompressible data; deploy/bench/pull-image.sh), pushed with"
    echo "skopeo $(skopeo --version | awk '{print $3}') to Debian's docker-registry $(docker-registry --version | awk '{print $3}') on 127.0.0.1, then pulled over plain HTTP."
    echo "Median of $pull_runs runs (min–max). Cold: the image and its layers are removed before each run"
    echo "(\`berth rmi\` and \`berth image prune -a -f\`; \`docker rmi\`; skopeo's output directory). $dnote"
    echo
    echo "| figure | berth | Docker | skopeo | berth / Docker | berth / skopeo |"
    echo "|---|---|---|---|---|---|"
    prow() { # label key
        local cells="" ratios="" bm v m lo hi
        read -r bm _ _ <<<"${result[berth.$2]}"
        for tool in berth docker skopeo; do
            v=${result[$tool.$2]:-}
            if [[ -z $v ]]; then
                cells+=" — |"
                if [[ $tool != berth ]]; then ratios+=" — |"; fi
                continue
            fi
            read -r m lo hi <<<"$v"
            cells+=" $m ms ($lo–$hi) |"
            if [[ $tool != berth ]]; then
                ratios+=" $(awk -v a="$bm" -v b="$m" 'BEGIN {printf "%.2f×", (b>0)?a/b:0}') |"
            fi
        done
        echo "| $1 |$cells$ratios"
    }
    prow "cold pull (\`berth pull\`, \`docker pull\`, \`skopeo copy docker://… oci:DIR\`)" pull
    prow "second pull, image present" pull2
    echo
    echo "skopeo only downloads and verifies the blobs into an OCI layout (it unpacks nothing); berth and"
    echo "Docker also unpack every layer into a snapshot and record the image. Where berth's cold pull"
    echo "goes (one more cold pull, timed by its progress lines): $pull_profile."
    echo
    echo "Targets (issue 4): the cold pull faster than both Docker and skopeo; the second pull ≤ 50 ms."
}
# Published ports and DNS: measured here (after row() exists), written below.
if [[ -z $only || $only == net ]]; then measure_net; fi
if [[ -z $only || $only == logs ]]; then measure_logs; fi
if [[ -z $only || $only == stats ]]; then measure_stats; fi
if [[ $only == stats ]]; then replace_section "Stats" stats_section; fi
if [[ $only == logs ]]; then replace_section "Logs" logs_section; fi
# BENCH_ONLY=net: replace the page's "## Published ports and DNS" section (or add one).
if [[ $only == net ]]; then replace_section "Published ports and DNS" net_section; fi
# BENCH_ONLY=pull: replace the page's "## Pull" section (or add one) and keep the rest.
if [[ $only == pull ]]; then replace_section "Pull" pull_section; fi
{
    echo "# Benchmarks"
    echo
    echo "Written by \`just bench\` on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r))."
    echo "Median of $runs runs (min–max); \`run -d\` ×50: median of 3 rounds. $docker_note"
    echo
    echo "| figure | berth | Docker | berth / Docker |"
    echo "|---|---|---|---|"
    row '`run --rm busybox true`' run ms
    row '50 × `run -d … sleep 1000`' run50 ms
    row "\`ps -a\` with $ps_n containers" ps ms
    row '`exec c true`' exec ms
    row 'keystroke to echo through `run -it` (1,000 keys)' key ms
    if [[ -n $docker_rss ]]; then
        echo "| idle RSS of the engine (sum) | $(mib $berth_rss) (six services) | $(mib $docker_rss) (dockerd + containerd) | $(ratio $berth_rss $docker_rss) |"
        echo "| idle PSS of the engine (sum) | $(mib $berth_pss) | $(mib $docker_pss) | $(ratio $berth_pss $docker_pss) |"
        echo "| idle heap (anonymous) of the engine | $(mib $berth_anon) | $(mib $docker_anon) | $(ratio $berth_anon $docker_anon) |"
        echo "| private memory of one shim | $shim_private KiB | $docker_shim KiB (containerd-shim-runc-v2) | $(ratio $shim_private $docker_shim) |"
    else
        echo "| idle RSS of the engine (sum) | $(mib $berth_rss) (six services) | — | — |"
        echo "| idle PSS of the engine (sum) | $(mib $berth_pss) | — | — |"
        echo "| idle heap (anonymous) of the engine | $(mib $berth_anon) | — | — |"
        echo "| private memory of one shim | $shim_private KiB | — | — |"
    fi
    echo
    [[ -n ${roundtrip:-} ]] && { echo "Image archive round trip with Docker: $roundtrip."; echo; }
    echo "Targets: \`run --rm\` ≤ 100 ms and idle RSS of all six services ≤ 25 MiB (issue 2); \`exec\` ≤ 50 ms (issue 3)."
    echo
    echo "How memory is counted: RSS sums every page mapped in each process, including the code"
    echo "pages it has touched (file-backed and clean: shared with the page cache, dropped first"
    echo "under pressure); PSS divides shared pages among their users; the heap line is the"
    echo "anonymous memory only. The services are measured idle, after the run above and past"
    echo "their periodic heap trim. The shim returns its clean code pages to the page cache after"
    echo "a second of quiet (one shim runs per container); the services do not."
    echo
    one_process_section
    echo
    pull_section
    echo
    volume_section
    echo
    net_section
    echo
    logs_section
    echo
    stats_section
    echo
    overlay_section
} >"$top/docs/benchmarks.md"
# The chart of every berth / Docker ratio on the page (docs/benchmarks.svg).
python3 "$top/deploy/bench/chart.py" "$top/docs/benchmarks.md" "$top/docs/benchmarks.svg"
cat "$top/docs/benchmarks.md"
