#!/usr/bin/env bash
# `ballast check` end to end (process start, read, import, every catalogue rule, rendering)
# on generated 10,000-line HAProxy and nginx files, pinned to one core; prints the median of
# RUNS runs. The in-process figure is `cargo bench -p ballast-check --bench foreign`, which
# generates the same shape of file.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-21}
cargo build -q --release -p ballast
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
h = ["global", "    maxconn 200000", "    zero-warning", "    server-state-file /var/lib/haproxy/state",
     "    hard-stop-after 30m", "", "defaults", "    mode http", "    timeout connect 3s",
     "    timeout client 30s", "    timeout server 30s", "    timeout http-request 10s",
     "    timeout queue 10s", "    retries 2", "    option redispatch",
     "    load-server-state-from-file global", ""]
for p in range(240):
    h += [f"frontend f{p}", f"    bind 10.1.{p // 200}.{p % 200 + 1}:8080", "    maxconn 1000",
          f"    default_backend b{p}", f"    use_backend b{(p + 1) % 240} if {{ path_beg /other }}", ""]
    h += [f"backend b{p}", "    balance " + ["roundrobin", "leastconn", "uri", "source"][p % 4],
          "    option httpchk GET /health", "    http-check expect status 200",
          "    default-server check inter 2s fall 3 rise 2 maxconn 100 maxqueue 100"]
    h += [f"    server s{i} 10.{p}.0.{i}:8080 weight {1 + i % 4}" for i in range(30)] + [""]
open(f"{d}/big.cfg", "w").write("\n".join(h) + "\n")
n = ["worker_processes auto;", "worker_rlimit_nofile 65535;", "", "events {",
     "    worker_connections 8192;", "}", "", "http {", "    proxy_connect_timeout 3s;",
     "    proxy_read_timeout 30s;", ""]
for p in range(250):
    n += [f"    upstream u{p} {{", f"        zone u{p} 64k;",
          "        " + ["least_conn;", "hash $request_uri consistent;", "ip_hash;", "random two;"][p % 4]]
    n += [f"        server 10.{p // 200}.{p % 200}.{i}:8080 weight={1 + i % 4} max_fails=3 fail_timeout=10s;" for i in range(30)]
    n += ["        keepalive 32;", "    }", "", "    server {", f"        listen 10.2.{p // 200}.{p % 200 + 1}:80;",
          "        location / {", "            proxy_http_version 1.1;", "            proxy_set_header Connection \"\";",
          f"            proxy_pass http://u{p};", "        }", "    }", ""]
n += ["}"]
open(f"{d}/big.conf", "w").write("\n".join(n) + "\n")
PY

for f in big.cfg big.conf; do
  lines=$(wc -l < "$dir/$f")
  times=()
  for _ in $(seq "$RUNS"); do
    start=$(date +%s%N)
    taskset -c 1 target/release/ballast check --deny info "$dir/$f" > /dev/null || true
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000 )))
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%s (%d lines): median %.1f ms over %d runs (ballast check, whole process)\n' \
    "$f" "$lines" "$(echo "$median / 1000" | bc -l)" "$RUNS"
done
