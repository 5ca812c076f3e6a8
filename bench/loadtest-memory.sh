#!/usr/bin/env bash
# Memory of `ballast loadtest` over a long open-model run (issue #13: "memory bounded
# (histograms, not stored samples) over a 10-minute run"): a constant rate against nginx on
# loopback (one worker answering a fixed 200), the generator's resident set sampled every 10 s
# from /proc. Prints one line per sample (seconds, VmRSS kB) and a summary: RSS after the
# first minute, at the end, and the peak (VmHWM).
#
# Usage: bench/loadtest-memory.sh   (SECONDS_TOTAL=600 RATE=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${SECONDS_TOTAL:-600}
RATE=${RATE:-2000}
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx" >&2; exit 1; }
cargo build --release -q -p ballast
BALLAST=$PWD/target/release/ballast
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work"/{body,proxy,fastcgi,uwsgi,scgi}
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port;
        location / { add_header X-Served-By nginx always; return 200 "ok\n"; }
    }
}
CONF
setsid nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
trap 'kill -- -$nginx_pid 2>/dev/null || kill $nginx_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
"$BALLAST" loadtest "http://127.0.0.1:$port/" --rate "$RATE" -d "${SECONDS_TOTAL}s" \
  --format json >"$work/report.json" 2>/dev/null &
gen=$!
first_minute="" last=""
for ((t = 10; t <= SECONDS_TOTAL; t += 10)); do
  sleep 10
  rss=$(awk '/VmRSS/{print $2}' /proc/$gen/status 2>/dev/null) || break
  [ -n "$rss" ] || break
  echo "$t s  VmRSS $rss kB"
  [ "$t" = 60 ] && first_minute=$rss
  last=$rss
  hwm=$(awk '/VmHWM/{print $2}' /proc/$gen/status)
done
wait $gen
python3 - "$work/report.json" <<PY
import json,sys
r=json.load(open(sys.argv[1]))
print("requests", r.get("requests"), "errors", r.get("errors"), "achieved req/s", r.get("achieved_rate", r.get("rate")))
PY
echo "RSS after 1 min ${first_minute:-?} kB, at the end ${last:-?} kB, peak (VmHWM) ${hwm:-?} kB"
