#!/usr/bin/env bash
# The demo: load the offline busybox image and run containers, showing each command.
set -euo pipefail
image_tar=$1
show() { printf '\n$ %s\n' "$*"; "$@"; }
started=$(date +%s.%N)
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

# Networking: a published port reached from the host, names resolved on a user network.
berth rm -f demo-site demo-api >/dev/null 2>&1 || true
berth network rm demo-net >/dev/null 2>&1 || true
show berth run -d --name demo-site -p 127.0.0.1:8080:80 busybox sh -c 'echo "hello from demo-site" > /index.html; exec httpd -f -p 80 -h /'
show berth port demo-site
printf '\n$ busybox wget -qO- http://127.0.0.1:8080/\n'
for _ in 1 2 3 4 5 6 7 8 9 10; do busybox wget -qO- http://127.0.0.1:8080/ 2>/dev/null && break; sleep 0.2; done
show berth network create demo-net
show berth run -d --name demo-api --net demo-net --net-alias api busybox sleep 1000
show berth run --rm --net demo-net busybox ping -c1 api
show berth rm -f demo-site demo-api
show berth network rm demo-net

# What happened to demo-web, from the services' event logs.
show berth events --since "$started" --until 0s --filter container=demo-web
printf '\nThe engine is still running: try `berth run --rm busybox uname -a`; `just down` stops it.\n'
