#!/usr/bin/env bash
# The speed of `ballast loadtest` against wrk (Debian's package) and oha, on one core each:
# the generator pinned to core 0, the target (nginx, one worker answering a fixed 200 with
# X-Served-By) pinned to core 1. Closed model: the same connections and duration for every
# tool, interleaved rounds (ballast, wrk, oha, ballast, ...), paired ratios of the maximum
# request rate, of p50/p99 and of CPU time per request (user+sys, from /usr/bin/time: the
# figure least moved by a shared machine) per round, their medians. Open model: ballast's achieved rate
# against its target at 20%..80% of its closed-model maximum, each open run paired with a closed
# run just before it (OPEN_ROUNDS sweeps; the summary gives the median per share and budget).
#
# Usage: bench/loadtest.sh   (ROUNDS=5 DURATION=5 CONNECTIONS=50 OPEN_ROUNDS=1; OHA=/path/to/oha, default
#        /work/oha-bin/bin/oha or `oha` on PATH; without one the oha column is left out)
# Prints a summary (paste into BENCHMARKS.md) and keeps the raw outputs in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
OPEN_ROUNDS=${OPEN_ROUNDS:-1}
OHA=${OHA:-$(command -v oha || echo /work/oha-bin/bin/oha)}
[ -x "$OHA" ] || OHA=""
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is missing: apt-get install nginx" >&2; exit 1; }
cargo build --release -q -p ballast
BALLAST=$PWD/target/release/ballast

work=$(mktemp -d)
# Dated to the minute: a second run the same day keeps the first one's figures.
out=bench/results/loadtest-$(date -u +%Y-%m-%dT%H%MZ).txt
mkdir -p bench/results
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work"/{body,proxy,fastcgi,uwsgi,scgi}
cat >"$work/nginx.conf" <<EOF
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
        location / {
            add_header X-Served-By nginx always;
            return 200 "ok\n";
        }
    }
}
EOF
setsid taskset -c 1 nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
trap 'kill -- -$nginx_pid 2>/dev/null || kill $nginx_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.1
done
url=http://127.0.0.1:$port/

# Milliseconds from wrk's `1.23ms` / `456.00us` / `1.01s`.
to_ms() {
  python3 -c 'import sys,re
v=sys.argv[1]; m=re.match(r"([0-9.]+)(us|ms|s|m)$", v)
n,u=float(m.group(1)),m.group(2)
print(n*{"us":0.001,"ms":1,"s":1000,"m":60000}[u])' "$1"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/rows"
for round in $(seq "$ROUNDS"); do
  # ballast: closed model, one worker thread on core 0.
  /usr/bin/time -f "%U %S" -o "$work/ballast.cpu" taskset -c 0 "$BALLAST" loadtest "$url" \
    -c "$CONNECTIONS" -d "${DURATION}s" --threads 1 --format json >"$work/ballast.json" 2>/dev/null
  b=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); l=r["latency_ms"]
u,s=map(float,open(sys.argv[2]).read().split()[-2:])
print(r["rate"], l["p50"], l["p99"], r["errors"], round((u+s)*1e6/max(r["requests"],1),2))' \
    "$work/ballast.json" "$work/ballast.cpu")
  # wrk: one thread, the same connections.
  /usr/bin/time -f "%U %S" -o "$work/wrk.cpu" taskset -c 0 wrk -t1 -c "$CONNECTIONS" \
    -d "${DURATION}s" --latency "$url" >"$work/wrk.txt"
  w_rate=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")
  w_p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.txt")")
  w_p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.txt")")
  w_cpu=$(python3 -c 'import sys,re
u,s=map(float,open(sys.argv[1]).read().split()[-2:])
n=int(re.search(r"([0-9]+) requests in", open(sys.argv[2]).read()).group(1))
print(round((u+s)*1e6/max(n,1),2))' "$work/wrk.cpu" "$work/wrk.txt")
  o="nan nan nan nan"
  if [ -n "$OHA" ]; then
    # oha: its own runtime on one core (--no-tui: no terminal drawing in the measurement).
    /usr/bin/time -f "%U %S" -o "$work/oha.cpu" taskset -c 0 "$OHA" -c "$CONNECTIONS" \
      -z "${DURATION}s" --no-tui --output-format json "$url" >"$work/oha.json" 2>/dev/null || true
    o=$(python3 -c 'import json,sys
try:
    r=json.load(open(sys.argv[1])); p=r["latencyPercentiles"]
    u,s=map(float,open(sys.argv[2]).read().split()[-2:])
    n=sum(r["statusCodeDistribution"].values())
    print(r["summary"]["requestsPerSec"], p["p50"]*1000, p["p99"]*1000, round((u+s)*1e6/max(n,1),2))
except Exception:
    print("nan nan nan nan")' "$work/oha.json" "$work/oha.cpu")
  fi
  echo "$round $b $w_rate $w_p50 $w_p99 $w_cpu $o" | tee -a "$work/rows"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Open model: ballast's achieved rate against its target, up to 80% of its closed maximum,
# with the default connection budget (--max-connections 1000) and with the closed rounds' own
# ($CONNECTIONS).
# Each open run is paired with a closed run just before it, and its target is a share of that
# run's maximum: on a shared machine the capacity moves between the rounds above and these.
: >"$work/open"
for open_round in $(seq "$OPEN_ROUNDS"); do
  for pct in 20 40 60 80; do
    for budget in 1000 "$CONNECTIONS"; do
      taskset -c 0 "$BALLAST" loadtest "$url" -c "$CONNECTIONS" -d "${DURATION}s" --threads 1 \
        --format json >"$work/closed.json" 2>/dev/null
      max_now=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rate"])' "$work/closed.json")
      target=$(python3 -c "print(round($max_now*$pct/100))")
      taskset -c 0 "$BALLAST" loadtest "$url" --rate "$target" -d "${DURATION}s" --warmup 1s \
        --threads 1 --max-connections "$budget" --format json >"$work/open.json" 2>/dev/null
      python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))
print(sys.argv[2], sys.argv[3], round(float(sys.argv[4])), r["target_rate"], round(r["rate"],1), round(r["rate"]/r["target_rate"],4), r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["errors"], r["connections_opened"])' \
        "$work/open.json" "$pct" "$budget" "$max_now" | tee -a "$work/open"
    done
  done
done

{
  echo "# bench/loadtest.sh $(date -u +%Y-%m-%dT%H:%MZ): ROUNDS=$ROUNDS DURATION=${DURATION}s CONNECTIONS=$CONNECTIONS"
  echo "# target nginx (1 worker, core 1, fixed 200); generators on core 0; oha: ${OHA:-none}"
  echo "# load average before: $load_before; after: $load_after ($(nproc) cores, shared)"
  echo "# round ballast_rps ballast_p50 ballast_p99 ballast_errors ballast_cpu_us_per_req wrk_rps wrk_p50 wrk_p99 wrk_cpu_us_per_req oha_rps oha_p50 oha_p99 oha_cpu_us_per_req"
  cat "$work/rows"
  echo "# open model: pct_of_max max_connections paired_closed_max target achieved achieved/target p50_ms p99_ms errors connections_opened"
  cat "$work/open"
} >"$out"
python3 - "$work/rows" <<'EOF' | tee -a "$out"
import math, statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")
def spread(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return (max(xs) - min(xs)) / statistics.median(xs) if xs else float("nan")
b_rps, b_p50, b_p99, b_cpu = [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows], [r[5] for r in rows]
w_rps, w_p50, w_p99, w_cpu = [r[6] for r in rows], [r[7] for r in rows], [r[8] for r in rows], [r[9] for r in rows]
o_rps, o_p50, o_p99, o_cpu = [r[10] for r in rows], [r[11] for r in rows], [r[12] for r in rows], [r[13] for r in rows]
print(f"median req/s: ballast {med(b_rps):.0f} (spread {spread(b_rps):.0%}), wrk {med(w_rps):.0f} (spread {spread(w_rps):.0%}), oha {med(o_rps):.0f} (spread {spread(o_rps):.0%})")
print(f"median p50/p99 ms: ballast {med(b_p50):.3f}/{med(b_p99):.3f}, wrk {med(w_p50):.3f}/{med(w_p99):.3f}, oha {med(o_p50):.3f}/{med(o_p99):.3f}")
print(f"median CPU per request (user+sys) us: ballast {med(b_cpu):.2f}, wrk {med(w_cpu):.2f}, oha {med(o_cpu):.2f}")
ratio = lambda a, b: med([x / y for x, y in zip(a, b)])
print(f"paired ratios ballast/wrk (median over rounds): req/s {ratio(b_rps, w_rps):.3f}, p50 {ratio(b_p50, w_p50):.3f}, p99 {ratio(b_p99, w_p99):.3f}, CPU/request {ratio(b_cpu, w_cpu):.3f}")
print(f"paired ratios ballast/oha (median over rounds): req/s {ratio(b_rps, o_rps):.3f}, p50 {ratio(b_p50, o_p50):.3f}, p99 {ratio(b_p99, o_p99):.3f}, CPU/request {ratio(b_cpu, o_cpu):.3f}")
EOF
python3 - "$work/open" <<'EOF' | tee -a "$out"
import collections, statistics, sys
by = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if f:
        by[(int(f[0]), f[1])].append(float(f[5]))
for (pct, budget), xs in sorted(by.items()):
    print(f"open model at {pct}% of the paired closed maximum, --max-connections {budget}: achieved/target median {statistics.median(xs):.4f} (min {min(xs):.4f}, {len(xs)} runs)")
EOF
echo "raw: $out"
