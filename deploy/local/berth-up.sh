#!/usr/bin/env bash
# Starts berth's six services in the background, each its own process and socket, and
# returns once every socket answers. BERTH_ONE_PROCESS=1 starts them as one process,
# `berthd`, with the same six sockets. Honours BERTH_ROOT, BERTH_RUN, BERTH_INSTANCE and
# BERTH_BIN_DIR (default: the binaries on PATH). Logs go to $BERTH_LOG_DIR.
set -euo pipefail
run_dir=${BERTH_RUN:-/run/berth}
log_dir=${BERTH_LOG_DIR:-/var/log/berth}
bin_dir=${BERTH_BIN_DIR:-}
services=(image-store supervisor network volume log-router engine)
processes=("${services[@]/#/berth-}")
[[ ${BERTH_ONE_PROCESS:-} == 1 ]] && processes=(berthd)
mkdir -p "$run_dir" "$log_dir"

binary() { if [[ -n $bin_dir ]]; then echo "$bin_dir/$1"; else command -v "$1"; fi; }

for p in "${processes[@]}"; do
    pidfile=$run_dir/${p#berth-}.pid
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "$p already running (pid $(cat "$pidfile"))"
        continue
    fi
    bin=$(binary "$p") || { echo "$p not found: run 'just install' first" >&2; exit 1; }
    setsid -f bash -c 'echo $$ > "$1"; exec "$2" >>"$3" 2>&1' _ "$pidfile" "$bin" "$log_dir/${p#berth-}.log" </dev/null
done

log_of() { [[ ${processes[0]} == berthd ]] && echo "$log_dir/berthd.log" || echo "$log_dir/$1.log"; }
for s in "${services[@]}"; do
    for _ in $(seq 1 200); do
        [[ -S $run_dir/$s.sock ]] && break
        sleep 0.05
    done
    [[ -S $run_dir/$s.sock ]] || { echo "berth-$s did not come up; see $(log_of "$s")" >&2; exit 1; }
done
berth_cli=$( [[ -n $bin_dir ]] && echo "$bin_dir/berth" || command -v berth )
"$berth_cli" version >/dev/null
echo "berth is up (sockets in $run_dir, logs in $log_dir)"
