# Sourced by deploy/bench/run.sh (it uses run.sh's bin, dk, docker_pid, result, stats,
# time_ms, now_ns, work, top, only, BERTH_RUN, BERTH_ROOT): `stats` over many running
# containers, berth beside Docker.
#
# $stats_n busybox `sleep 1000` containers (default 100). `stats --no-stream` over all of
# them: median of $stats_runs runs. Then a streaming `stats` over all of them, left running
# for $stats_secs seconds (after a 2 s warm-up): the CPU time (user+sys, from
# /proc/<pid>/stat) spent in those seconds by the CLI plus the engine's processes.
# berth: the CLI, the six services ($BERTH_RUN/*.pid) and the containers' shims. Docker:
# the CLI, dockerd, containerd and the containers' containerd-shim-runc-v2 (dockerd asks
# containerd for each container's metrics, and containerd asks the shim). The same
# processes' CPU time over the same seconds with no `stats` running is measured first, so
# the idle part shows.
stats_n=${BENCH_STATS_CONTAINERS:-100}
stats_runs=${BENCH_STATS_RUNS:-5}
stats_secs=${BENCH_STATS_SECONDS:-10}
stats_note=""
declare -A stats_procs
stats_cli_pid=""
stats_cleanup() {
    if [[ -n $stats_cli_pid ]]; then
        kill "$stats_cli_pid" 2>/dev/null || true
        wait "$stats_cli_pid" 2>/dev/null || true
        stats_cli_pid=""
    fi
}

# stats_ticks PID... -> utime+stime of those processes, in clock ticks (gone ones: 0).
# The fields after the command name, which is in parentheses and may hold spaces.
stats_ticks() {
    local t=0 p v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}') || v=0
        t=$(( t + ${v:-0} ))
    done
    echo "$t"
}

# stats_engine_pids berth|docker -> the engine's processes (not the CLI).
stats_engine_pids() {
    local f
    if [[ $1 == berth ]]; then
        for f in "$BERTH_RUN"/*.pid; do cat "$f"; done
        pgrep -f "berth-shim .*$BERTH_ROOT" || true
    else
        echo "$docker_pid"
        pgrep -P "$docker_pid" -x containerd || true
        pgrep -f "containerd-shim.*$work/docker-exec" || true
    fi
}

# stats_cpu_ms engine CLI... sets stats_ms: CPU milliseconds of the CLI (when given) and the
# engine over $stats_secs s. With a CLI, it runs `CLI stats` for that time and checks what it
# printed. (Not in a $(...) subshell, so the EXIT trap knows the CLI's PID.)
stats_ms=0
stats_cpu_ms() {
    local name=$1 pids t0 t1 out=$work/stats-$1.out
    shift
    if [[ $# -gt 0 ]]; then
        # Run the binary itself (not a function), so $! is the CLI's own PID.
        "$@" stats >"$out" 2>&1 &
        stats_cli_pid=$!
        sleep 2
    fi
    pids="$(stats_engine_pids "$name") $stats_cli_pid"
    t0=$(stats_ticks $pids)
    sleep "$stats_secs"
    t1=$(stats_ticks $pids)
    if [[ $# -gt 0 ]]; then
        kill -0 "$stats_cli_pid" 2>/dev/null \
            || { echo "$name stats exited early: $(tail -3 "$out")" >&2; exit 1; }
        stats_cleanup
        # The stream showed every container, more than once.
        local rows
        rows=$(grep -c "bench-st-" "$out" || true)
        [[ $rows -gt $stats_n ]] \
            || { echo "$name stats printed $rows container rows in $stats_secs s" >&2; exit 1; }
    fi
    stats_ms=$(( (t1 - t0) * 1000 / $(getconf CLK_TCK) ))
}

measure_stats() {
    local engines=berth name cli i samples
    [[ -n $docker_pid ]] && engines="berth docker"
    for name in $engines; do
        if [[ $name == berth ]]; then cli=("$bin/berth"); else cli=("${dk[@]}"); fi
        for i in $(seq "$stats_n"); do
            "${cli[@]}" run -d --name "bench-st-$i" busybox sleep 1000 >/dev/null
        done
        # Every container in one `--no-stream` table.
        local rows
        rows=$("${cli[@]}" stats --no-stream | grep -c "bench-st-" || true)
        [[ $rows -eq $stats_n ]] \
            || { echo "$name stats --no-stream listed $rows of $stats_n containers" >&2; exit 1; }
        # The shims are found by their command lines: at least one per container.
        local procs
        procs=$(stats_engine_pids "$name" | wc -l)
        [[ $procs -gt $stats_n ]] \
            || { echo "$name: only $procs engine processes found for $stats_n containers" >&2; exit 1; }
        stats_procs[$name]=$procs
        samples=""
        for _ in $(seq "$stats_runs"); do samples+=" $(time_ms "${cli[@]}" stats --no-stream)"; done
        result[$name.stats1]=$(echo "$samples" | stats)
        stats_cpu_ms "$name"
        result[$name.stats_idle]=$(echo "$stats_ms" | stats)
        stats_cpu_ms "$name" "${cli[@]}"
        result[$name.stats_cpu]=$(echo "$stats_ms" | stats)
        "${cli[@]}" rm -f $(seq -f "bench-st-%g" "$stats_n") >/dev/null
    done
}

stats_section() {
    echo "## Stats"
    echo
    local dnote="Docker is not installed on this machine, so its column is empty."
    [[ -n $docker_pid ]] && dnote="Docker $("${dk[@]}" version --format '{{.Server.Version}}') ran the same containers in the same run."
    local by="\`just bench\`"
    [[ $only == stats ]] && by="\`BENCH_ONLY=stats deploy/bench/run.sh\`"
    echo "Written by $by on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r)). $stats_n running"
    echo "busybox \`sleep 1000\` containers. \`stats --no-stream\` over all of them: median of $stats_runs runs"
    echo "(min–max). Streaming: \`stats\` over all of them for $stats_secs s (after 2 s of warm-up), and the"
    echo "CPU time (user+sys) those seconds cost the CLI plus the engine — berth: the CLI, its six services"
    echo "and the containers' shims; Docker: the CLI, dockerd, containerd and the containers'"
    echo "containerd-shim-runc-v2. The idle row is the same processes over the same time without \`stats\`. $dnote"
    echo
    echo "| figure | berth | Docker | berth / Docker |"
    echo "|---|---|---|---|"
    row "\`stats --no-stream\` over $stats_n containers" stats1 ms
    row "CPU time of a streaming \`stats\` over $stats_n containers, $stats_secs s" stats_cpu ms
    row "CPU time of the same processes idle, $stats_secs s" stats_idle ms
    echo
    echo "Processes counted (besides the CLI): berth ${stats_procs[berth]:-—}, Docker ${stats_procs[docker]:-—}."
    [[ -n $stats_note ]] && { echo; echo "$stats_note"; }
    echo
    echo "Target (issue 8): the streaming \`stats\` at most 1/5 of Docker's CPU time."
}
