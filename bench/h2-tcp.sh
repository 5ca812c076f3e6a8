#!/usr/bin/env bash
# HTTP/2 and TCP mode: `ballast serve` against HAProxy and nginx, per busy LB core.
#
#  - h2:  h2load (Debian's nghttp2-client), cleartext HTTP/2 with prior knowledge, CONNECTIONS
#         connections x STREAMS concurrent streams, to each balancer serving h2c in front of
#         HTTP/1.1 keep-alive backends (ballast: its HTTP listener, which takes h2c; HAProxy:
#         `bind ... proto h2`; nginx: `listen ... http2`).
#  - tcp: wrk keep-alive GETs through each balancer's layer-4 proxy (ballast: a `protocol =
#         "tcp"` listener; HAProxy: `mode tcp`; nginx: the stream module), round robin over the
#         same backends.
# Backends: one nginx process on 127.0.0.1:9301-9304 (the shared harness's template, moved to
# other ports), pinned with the generator to GEN_CPU; every balancer pinned to LB_CPU, one
# worker/thread each. Rounds are interleaved (ballast, haproxy, nginx, ballast, ...); each round
# reads the LB core's busy jiffies from /proc/stat around the run. Reported per LB: median req/s,
# median LB-core busy %, median req/s per busy LB core, and the median of the same-round ratios.
# Everything started here runs in its own process group and is stopped by group on exit.
# Installs haproxy, nginx, wrk, nghttp2-client and libnginx-mod-stream when missing (as root).
#
# Usage: bench/h2-tcp.sh            Env: ROUNDS=3 DURATION=5 CONNECTIONS=64 STREAMS=10
#                                        LB_CPU=1 GEN_CPU=0 MODES="h2 tcp" BALLAST=target/release/ballast
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
STREAMS=${STREAMS:-10}
LB_CPU=${LB_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
MODES=${MODES:-h2 tcp}
BALLAST=${BALLAST:-$ROOT/target/release/ballast}
TPL=${TEMPLATES:-$ROOT/../shared/bench/templates}
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

log() { printf '[h2-tcp] %s\n' "$*" >&2; }
die() { printf '[h2-tcp] ERROR: %s\n' "$*" >&2; exit 1; }

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
[ -f "$STREAM_MODULE" ] || need+=(libnginx-mod-stream)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}; run as root so they can be installed"
    log "installing ${need[*]}"
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    systemctl stop nginx haproxy >/dev/null 2>&1 || true
fi
[ -x "$BALLAST" ] || { log "building ballast"; cargo build --release -q -p ballast; }
[ -f "$TPL/backends.nginx.conf" ] || die "no backend template at $TPL"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/h2tcp.XXXXXX")
chmod 755 "$TMP"
GROUPS_STARTED=()
cleanup() {
    local g
    for g in "${GROUPS_STARTED[@]+"${GROUPS_STARTED[@]}"}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    sleep 0.5
    for g in "${GROUPS_STARTED[@]+"${GROUPS_STARTED[@]}"}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start() { # cpu logfile cmd...: a new session pinned to cpu
    local cpu=$1 out=$2
    shift 2
    setsid taskset -c "$cpu" "$@" >"$out" 2>&1 </dev/null &
    GROUPS_STARTED+=("$!")
}
wait_port() {
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 (logs in $TMP)"
}
for p in 9301 9302 9303 9304 8281 8282 8283 8291 8292 8293; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then die "port $p is in use"; fi
done
taskset -cp "$GEN_CPU" $$ >/dev/null

# Backends: the shared template on ports 9301-9304.
mkdir -p "$TMP/backends_tmp" "$TMP/lb_tmp"
sed -e "s|@TMP@|$TMP|g" -e 's/910\([1-4]\)/930\1/g' "$TPL/backends.nginx.conf" >"$TMP/backends.conf"
nginx -q -t -c "$TMP/backends.conf" -p "$TMP/" -e "$TMP/backends.err" || die "backend config"
start "$GEN_CPU" "$TMP/backends.log" nginx -c "$TMP/backends.conf" -p "$TMP/" -e "$TMP/backends.err"
for p in 9301 9302 9303 9304; do wait_port "$p"; done

servers_toml() {
    local p
    for p in 1 2 3 4; do printf '[[pools.%s.servers]]\nname = "b%s"\naddress = "127.0.0.1:930%s"\n' "$1" "$p" "$p"; done
}
cat >"$TMP/ballast.toml" <<EOF
[global]
max_connections = 8000

[listeners.h2]
address = "127.0.0.1:8281"
max_connections = 8000
pool = "web"
timeouts = { header_read = "5s", idle = "5s", request = "5s" }

[listeners.tcp]
address = "127.0.0.1:8291"
protocol = "tcp"
max_connections = 8000
pool = "tcp"

[pools.web]
algorithm = "round-robin"
connect_timeout = "1s"
response_timeout = "5s"
$(servers_toml web)

[pools.tcp]
algorithm = "round-robin"
connect_timeout = "1s"
$(servers_toml tcp)
EOF
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    timeout connect 5s
    timeout client 5s
    timeout server 5s
    maxconn 8000
frontend h2
    mode http
    option http-keep-alive
    bind 127.0.0.1:8282 proto h2
    default_backend web
backend web
    mode http
    balance roundrobin
    http-reuse always
    server b1 127.0.0.1:9301
    server b2 127.0.0.1:9302
    server b3 127.0.0.1:9303
    server b4 127.0.0.1:9304
frontend tcp
    mode tcp
    bind 127.0.0.1:8292
    default_backend tcp
backend tcp
    mode tcp
    balance roundrobin
    server b1 127.0.0.1:9301
    server b2 127.0.0.1:9302
    server b3 127.0.0.1:9303
    server b4 127.0.0.1:9304
EOF
cat >"$TMP/nginx-lb.conf" <<EOF
load_module $STREAM_MODULE;
worker_processes 1;
daemon off;
master_process on;
pid $TMP/nginx-lb.pid;
error_log $TMP/nginx-lb.err warn;
worker_rlimit_nofile 8192;
events { worker_connections 4096; }
http {
    access_log off;
    server_tokens off;
    keepalive_timeout 60s;
    keepalive_requests 1000000;
    client_body_temp_path $TMP/lb_tmp/body;
    proxy_temp_path $TMP/lb_tmp/proxy;
    fastcgi_temp_path $TMP/lb_tmp/fastcgi;
    uwsgi_temp_path $TMP/lb_tmp/uwsgi;
    scgi_temp_path $TMP/lb_tmp/scgi;
    upstream web {
        server 127.0.0.1:9301;
        server 127.0.0.1:9302;
        server 127.0.0.1:9303;
        server 127.0.0.1:9304;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:8283 http2 backlog=4096;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
stream {
    upstream tcp {
        server 127.0.0.1:9301;
        server 127.0.0.1:9302;
        server 127.0.0.1:9303;
        server 127.0.0.1:9304;
    }
    server {
        listen 127.0.0.1:8293 backlog=4096;
        proxy_pass tcp;
    }
}
EOF
haproxy -q -c -f "$TMP/haproxy.cfg" || die "haproxy config"
nginx -q -t -c "$TMP/nginx-lb.conf" -p "$TMP/" -e "$TMP/nginx-lb.err" || die "nginx config"
"$BALLAST" check -c "$TMP/ballast.toml" >/dev/null || log "note: ballast check reported findings (see: $BALLAST check -c $TMP/ballast.toml)"
start "$LB_CPU" "$TMP/ballast.log" "$BALLAST" serve -c "$TMP/ballast.toml" --seed 1
start "$LB_CPU" "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg"
start "$LB_CPU" "$TMP/nginx-lb.log" nginx -c "$TMP/nginx-lb.conf" -p "$TMP/" -e "$TMP/nginx-lb.err"
for p in 8281 8282 8283 8291 8292 8293; do wait_port "$p"; done

busy_jiffies() { awk -v c="cpu$LB_CPU" '$1==c { print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }

# One run: "<req/s> <LB busy %>"
run() { # mode port seconds
    local mode=$1 port=$2 secs=$3 out="$TMP/run.out" b0 t0 b1 t1 rps
    read -r b0 t0 < <(busy_jiffies)
    if [ "$mode" = h2 ]; then
        h2load -D "$secs" -c "$CONNECTIONS" -m "$STREAMS" -t 1 "http://127.0.0.1:$port/" >"$out" 2>&1 || true
        rps=$(awk '/^finished in/ { for (i=1;i<=NF;i++) if ($i ~ /req\/s,?$/) { v=$(i-1); print v; exit } }' "$out")
        # Failed or errored requests are shown: they are not in req/s.
        grep -q " 0 failed, 0 errored, 0 timeout" "$out" || grep '^requests:' "$out" >&2 || true
    else
        wrk -t1 -c"$CONNECTIONS" -d"${secs}s" "http://127.0.0.1:$port/" >"$out" 2>&1 || true
        rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    fi
    read -r b1 t1 < <(busy_jiffies)
    [ -n "$rps" ] || { cat "$out" >&2; die "no result from $mode on port $port"; }
    awk -v r="$rps" -v db=$((b1 - b0)) -v dt=$((t1 - t0)) 'BEGIN { printf "%.1f %.1f\n", r, (dt > 0 ? 100 * db / dt : 0) }'
}

median() { sort -g | awk '{ v[NR]=$1 } END { if (NR % 2) print v[(NR+1)/2]; else printf "%.4f\n", (v[NR/2] + v[NR/2+1]) / 2 }'; }

declare -A PORT=([h2.ballast]=8281 [h2.haproxy]=8282 [h2.nginx]=8283 [tcp.ballast]=8291 [tcp.haproxy]=8292 [tcp.nginx]=8293)
LBS=(ballast haproxy nginx)
RESULTS=$TMP/results.tsv
: >"$RESULTS"
for mode in $MODES; do
    for lb in "${LBS[@]}"; do run "$mode" "${PORT[$mode.$lb]}" 2 >/dev/null; done   # warm-up
    for ((r = 1; r <= ROUNDS; r++)); do
        for lb in "${LBS[@]}"; do
            read -r rps busy < <(run "$mode" "${PORT[$mode.$lb]}" "$DURATION")
            log "$mode round $r: $lb $rps req/s, LB core $busy%"
            printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$r" "$lb" "$rps" "$busy" >>"$RESULTS"
            sleep 1
        done
    done
done

printf '%-5s %-8s %10s %8s %14s\n' mode lb 'req/s' 'LB core' 'req/s/LBcore'
for mode in $MODES; do
    for lb in "${LBS[@]}"; do
        m_rps=$(awk -F'\t' -v m="$mode" -v l="$lb" '$1==m && $3==l { print $4 }' "$RESULTS" | median)
        m_busy=$(awk -F'\t' -v m="$mode" -v l="$lb" '$1==m && $3==l { print $5 }' "$RESULTS" | median)
        m_core=$(awk -F'\t' -v m="$mode" -v l="$lb" '$1==m && $3==l && $5 > 0 { print $4 / ($5 / 100) }' "$RESULTS" | median)
        printf '%-5s %-8s %10.0f %7.1f%% %14.0f\n' "$mode" "$lb" "$m_rps" "$m_busy" "$m_core"
    done
done
echo
echo "Paired ratios (median over rounds of ballast / peer in the same round), per busy LB core:"
for mode in $MODES; do
    for peer in haproxy nginx; do
        ratio=$(awk -F'\t' -v m="$mode" -v p="$peer" '$1==m && $5 > 0 { core[$2" "$3] = $4 / ($5 / 100); rounds[$2] = 1 }
            END { for (r in rounds) if (core[r" ballast"] && core[r" "p]) print core[r" ballast"] / core[r" "p] }' "$RESULTS" | median)
        printf '  %-4s ballast/%-8s %.3fx\n' "$mode" "$peer" "$ratio"
    done
done
