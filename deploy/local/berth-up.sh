#!/usr/bin/env bash
# Starts berth's six services in the background, each its own process and socket, and
# returns once every socket answers. Honours BERTH_ROOT, BERTH_RUN, BERTH_INSTANCE and
# BERTH_BIN_DIR (default: the binaries on PATH). Logs go to $BERTH_LOG_DIR.
set -euo pipefail
run_dir=${BERTH_RUN:-/run/berth}
log_dir=${BERTH_LOG_DIR:-/var/log/berth}
bin_dir=${BERTH_BIN_DIR:-}
services=(image-store supervisor network volume log-router engine)
mkdir -p "$run_dir" "$log_dir"

binary() { if [[ -n $bin_dir ]]; then echo "$bin_dir/berth-$1"; else command -v "berth-$1"; fi; }

for s in "${services[@]}"; do
    pidfile=$run_dir/$s.pid
    if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "berth-$s already running (pid $(cat "$pidfile"))"
        continue
    fi
    bin=$(binary "$s") || { echo "berth-$s not found: run 'just install' first" >&2; exit 1; }
    setsid -f bash -c 'echo $$ > "$1"; exec "$2" >>"$3" 2>&1' _ "$pidfile" "$bin" "$log_dir/$s.log" </dev/null
done

for s in "${services[@]}"; do
    for _ in $(seq 1 200); do
        [[ -S $run_dir/$s.sock ]] && break
        sleep 0.05
    done
    [[ -S $run_dir/$s.sock ]] || { echo "berth-$s did not come up; see $log_dir/$s.log" >&2; exit 1; }
done
berth_cli=$( [[ -n $bin_dir ]] && echo "$bin_dir/berth" || command -v berth )
"$berth_cli" version >/dev/null
echo "berth is up (sockets in $run_dir, logs in $log_dir)"
