#!/usr/bin/env bash
# The demo: load the offline busybox image and run containers, showing each command.
set -euo pipefail
image_tar=$1
show() { printf '\n$ %s\n' "$*"; "$@"; }
show berth load -i "$image_tar"
show berth images
show berth run --rm busybox echo hello
berth rm -f demo-web >/dev/null 2>&1 || true
show berth run -d --name demo-web -e GREETING=hi busybox sh -c 'echo $GREETING; sleep 1000'
sleep 0.3
show berth ps
show berth logs demo-web
show berth inspect --format '{{.State.Status}} {{.Config.Env}}' demo-web
show berth stop -t 1 demo-web
show berth ps -a
show berth rm -f demo-web
printf '\nThe engine is still running: try `berth run --rm busybox uname -a`; `just down` stops it.\n'
