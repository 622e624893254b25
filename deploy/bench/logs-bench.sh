# Sourced by deploy/bench/run.sh (it uses run.sh's berth, dk, docker_pid, result, stats,
# time_ms, work, top): container logs, berth beside Docker.
#
# A busybox container printing 1,000,000 lines (`seq 1000000`, 6.9 MB) with the default
# json-file driver: attached (`run --rm`, output to /dev/null) and detached (`run -d` then
# `wait`); then `logs` of those lines and `logs --tail 10`. fluentd: the same container
# with `--log-driver fluentd` to a Fluent Bit (deploy/peers/build-fluent-bit.sh) on a
# loopback port, timed from `run` until Fluent Bit has written every record to its file.
logs_runs=${BENCH_LOGS_RUNS:-3}
logs_lines=${BENCH_LOGS_LINES:-1000000}
logs_note=""
fluent_bit=${BERTH_FLUENT_BIT:-/var/cache/berth-peers/fluent-bit/build/bin/fluent-bit}
fluent_pid=""
logs_cleanup() {
    if [[ -n $fluent_pid ]]; then
        kill "$fluent_pid" 2>/dev/null || true
        wait "$fluent_pid" 2>/dev/null || true
        fluent_pid=""
    fi
}

# Starts Fluent Bit with a forward input on a free loopback port, writing to $work/fluent/.
fluent_start() {
    local conf=$work/fluent/fluent-bit.conf
    mkdir -p "$work/fluent"
    fluent_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$conf" <<EOF
[SERVICE]
    Flush     0.2
    Log_Level warn
[INPUT]
    Name   forward
    Listen 127.0.0.1
    Port   $fluent_port
[OUTPUT]
    Name   file
    Match  *
    Path   $work/fluent
    Format plain
EOF
    "$fluent_bit" -c "$conf" >"$work/fluent/fluent-bit.log" 2>&1 &
    fluent_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$fluent_port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "Fluent Bit did not start; see $work/fluent/fluent-bit.log" >&2
    return 1
}

# fluent_ms CLI... -> milliseconds from `run -d` until Fluent Bit has every line.
fluent_ms() {
    local tag="bench.$RANDOM$RANDOM" s e n
    rm -f "$work/fluent/$tag"
    s=$(now_ns)
    "$@" run -d --rm --log-driver fluentd --log-opt "fluentd-address=127.0.0.1:$fluent_port" \
        --log-opt "tag=$tag" busybox seq "$logs_lines" >/dev/null
    for _ in $(seq 1200); do
        n=0
        if [[ -f $work/fluent/$tag ]]; then n=$(wc -l <"$work/fluent/$tag"); fi
        [[ $n -ge $logs_lines ]] && break
        sleep 0.05
    done
    e=$(now_ns)
    [[ $n -ge $logs_lines ]] || { echo "fluentd: only $n of $logs_lines lines arrived" >&2; return 1; }
    rm -f "$work/fluent/$tag"
    echo $(( (e - s) / 100000 )) | awk '{printf "%.1f", $1/10}'
}

measure_logs() {
    local engines=berth name cli att det rd tl fl i
    [[ -n $docker_pid ]] && engines="berth docker"
    declare -A att det rd tl fl
    if [[ -x $fluent_bit ]]; then fluent_start || logs_note="Fluent Bit did not start: no fluentd figure."; else
        logs_note="Fluent Bit is not built (deploy/install-deps.sh builds it): no fluentd figure."
    fi
    # Rounds alternate between the engines, so background load falls on both.
    for i in $(seq "$logs_runs"); do
        for name in $engines; do
            if [[ $name == berth ]]; then cli=("$bin/berth"); else cli=("${dk[@]}"); fi
            att[$name]+=" $(time_ms "${cli[@]}" run --rm busybox seq "$logs_lines")"
            "${cli[@]}" rm -f bench-logs >/dev/null 2>&1 || true
            local s e
            s=$(now_ns)
            "${cli[@]}" run -d --name bench-logs busybox seq "$logs_lines" >/dev/null
            "${cli[@]}" wait bench-logs >/dev/null
            e=$(now_ns)
            det[$name]+=" $(echo $(( (e - s) / 100000 )) | awk '{printf "%.1f", $1/10}')"
            if [[ $i == 1 ]]; then
                local got
                got=$("${cli[@]}" logs bench-logs | wc -l)
                [[ $got -eq $logs_lines ]] || { echo "$name logs: $got of $logs_lines lines" >&2; exit 1; }
            fi
            rd[$name]+=" $(time_ms "${cli[@]}" logs bench-logs)"
            tl[$name]+=" $(time_ms "${cli[@]}" logs --tail 10 bench-logs)"
            "${cli[@]}" rm -f bench-logs >/dev/null
            if [[ -n $fluent_pid ]]; then fl[$name]+=" $(fluent_ms "${cli[@]}")"; fi
        done
    done
    for name in $engines; do
        result[$name.log_att]=$(echo "${att[$name]}" | stats)
        result[$name.log_det]=$(echo "${det[$name]}" | stats)
        result[$name.log_read]=$(echo "${rd[$name]}" | stats)
        result[$name.log_tail]=$(echo "${tl[$name]}" | stats)
        if [[ -n ${fl[$name]:-} ]]; then result[$name.log_fluent]=$(echo "${fl[$name]}" | stats); fi
    done
    logs_cleanup
}

logs_section() {
    echo "## Logs"
    echo
    local dnote="Docker is not installed on this machine, so its column is empty."
    [[ -n $docker_pid ]] && dnote="Docker $("${dk[@]}" version --format '{{.Server.Version}}') ran the same containers in the same run, rounds alternating."
    local by="\`just bench\`"
    [[ $only == logs ]] && by="\`BENCH_ONLY=logs deploy/bench/run.sh\`"
    echo "Written by $by on $(date -u +%Y-%m-%d) ($(nproc) cores, kernel $(uname -r)). A busybox"
    echo "container running \`seq $logs_lines\`; json-file (the default driver) unless named. Median of"
    echo "$logs_runs runs (min–max). $dnote"
    echo
    echo "| figure | berth | Docker | berth / Docker |"
    echo "|---|---|---|---|"
    row "attached \`run --rm\` printing $logs_lines lines (to /dev/null)" log_att ms
    row "detached \`run -d\` + \`wait\`, $logs_lines lines" log_det ms
    row "\`logs\` of $logs_lines lines" log_read ms
    row "\`logs --tail 10\` of $logs_lines lines" log_tail ms
    if [[ -n ${result[berth.log_fluent]:-} ]]; then
        row "fluentd: \`run -d\` until Fluent Bit has all $logs_lines lines" log_fluent ms
    fi
    [[ -n $logs_note ]] && { echo; echo "$logs_note"; }
    echo
    echo "Targets (issue 7): attached run ≤ 1.0 s and \`logs\` ≤ 0.5 s for a million lines."
}
