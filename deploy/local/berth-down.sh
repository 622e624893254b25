#!/usr/bin/env bash
# Stops the services started by berth-up.sh, by the PIDs it recorded. Containers keep
# running under their shims and are picked up again by the next `just up`.
set -euo pipefail
run_dir=${BERTH_RUN:-/run/berth}
for s in engine log-router volume network supervisor image-store; do
    pidfile=$run_dir/$s.pid
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
done
echo "berth is down"
