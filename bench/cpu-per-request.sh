#!/usr/bin/env bash
# CPU time, context switches and syscalls per proxied request of the load balancer process,
# for HAProxy, nginx and one or more ballast builds over the same four nginx backends, in the
# same minute. Counting per request is what a loaded machine cannot fool: wall-clock req/s
# swings with the neighbours, the LB's own CPU time per request much less.
#
# Setup as ../shared/bench/peers.sh (its templates, rendered onto other ports so both can run
# at once): backends 127.0.0.1:9201-9204 (one nginx), HAProxy :8181, nginx-as-LB :8182,
# ballast builds :8183, :8184, ...; every LB pinned to LB_CPU, wrk and backends to GEN_CPU.
# Each round runs every LB twice with wrk -t1 -c64 keep-alive GETs for DURATION seconds:
#   pass "cpu": perf stat -e task-clock,context-switches on the LB's processes (cheap counters),
#   pass "sys": perf stat -e raw_syscalls:sys_enter plus the usual I/O syscalls (tracepoints
#               cost a little CPU of their own, so CPU is read from the "cpu" pass only).
# Figures are divided by the requests wrk reports; medians over ROUNDS. Everything started
# here runs in its own process group and is stopped by group on exit.
#
# Usage: bench/cpu-per-request.sh
# Env:   BALLAST="name=/path/to/ballast ..." (default: ballast=target/release/ballast)
#        ROUNDS=3 DURATION=5 CONNECTIONS=64 LB_CPU=1 GEN_CPU=0 TEMPLATES=../shared/bench/templates
#        PEERS=1 (0: ballast builds only, for an A/B of two builds)
#        MODE=perf | instr (instr: every LB runs under valgrind's callgrind; after a warm-up its
#        counters are zeroed, wrk runs 2 s and then DURATION s, and the difference of the
#        user-space instructions the LB executed is divided by the difference of the requests: a count that other load cannot change, but of a
#        slowed-down LB that sees one request per wake-up, and without the kernel's share)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD
TPL=${TEMPLATES:-$ROOT/../shared/bench/templates}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
LB_CPU=${LB_CPU:-1}
GEN_CPU=${GEN_CPU:-0}
BALLAST=${BALLAST:-ballast=$ROOT/target/release/ballast}
PEERS=${PEERS:-1}
MODE=${MODE:-perf}
case $MODE in perf) ;; instr) command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { echo "MODE=instr needs valgrind" >&2; exit 1; } ;; *) echo "MODE must be perf or instr" >&2; exit 1 ;; esac
# Under MODE=instr each LB command is prefixed with callgrind (children of a fork are traced too).
VG=()
[ "$MODE" = perf ] || VG=(valgrind --tool=callgrind --callgrind-out-file=@TMP@/callgrind.%p.out)
SYSCALLS=(read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl futex sched_yield connect)

log() { printf '[cpu/req] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
for t in perf wrk nginx haproxy taskset setsid ss awk sed; do
    command -v "$t" >/dev/null || die "'$t' is missing"
done
[ -d "$TPL" ] || die "no templates at $TPL (set TEMPLATES)"

PGIDS=()
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cpureq.XXXXXX")
chmod 755 "$TMP"
# nginx's workers run as nobody: the callgrind files go to a directory they can write.
mkdir -m 1777 "$TMP/vg"
VG=("${VG[@]/@TMP@/$TMP/vg}")
group_members() { # pgid -> PIDs in that process group
    local d s f
    for d in /proc/[0-9]*; do
        { read -r s <"$d/stat"; } 2>/dev/null || continue
        read -r -a f <<<"${s##*) }"
        [ "${f[2]:-}" = "$1" ] && [ "${f[0]}" != Z ] && printf '%s\n' "${d#/proc/}"
    done
    return 0
}
cleanup() {
    local rc=$? pg i
    trap - EXIT INT TERM
    for pg in "${PGIDS[@]+"${PGIDS[@]}"}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
    for pg in "${PGIDS[@]+"${PGIDS[@]}"}"; do
        for ((i = 0; i < 50; i++)); do [ -z "$(group_members "$pg")" ] && break; sleep 0.1; done
        kill -KILL -- "-$pg" 2>/dev/null || true
        wait "$pg" 2>/dev/null || true
    done
    if [ "$rc" = 0 ] && [ "${KEEP_TMP:-0}" != 1 ]; then rm -rf "$TMP"; else log "temp dir kept: $TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STARTED=
start_group() { # logfile cmd...
    local logf=$1
    shift
    setsid "$@" >"$logf" 2>&1 </dev/null &
    STARTED=$!
    PGIDS+=("$STARTED")
}
wait_port() { # port
    local i
    for ((i = 0; i < 100; i++)); do
        [ -n "$(ss -Hltn "sport = :$1")" ] && return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1 (logs in $TMP)"
}
render() { # template out KEY=VALUE...; backends move from 910N to 920N
    local tpl=$1 out=$2 kv args=(-e 's/127\.0\.0\.1:910\([1-4]\)/127.0.0.1:920\1/g')
    shift 2
    for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${args[@]}" "$tpl" >"$out"
}

for p in 9201 9202 9203 9204 8181 8182 8183 8184 8185 8186; do
    [ -z "$(ss -Hltn "sport = :$p")" ] || die "port $p is in use"
done
taskset -cp "$GEN_CPU" $$ >/dev/null
mkdir -p "$TMP/backends_tmp" "$TMP/nginx-lb_tmp"
render "$TPL/backends.nginx.conf" "$TMP/backends.conf" "TMP=$TMP"
start_group "$TMP/backends.log" taskset -c "$GEN_CPU" nginx -c "$TMP/backends.conf" -p "$TMP/" -e "$TMP/backends.err.log"
for p in 9201 9202 9203 9204; do wait_port "$p"; done

declare -A PORT_OF=() PG_OF=()
LBS=()
if [ "$PEERS" = 1 ]; then
    render "$TPL/haproxy.cfg" "$TMP/haproxy.cfg" PORT=8181 BALANCE=roundrobin FE_MAXCONN=8000
    start_group "$TMP/haproxy.log" taskset -c "$LB_CPU" "${VG[@]}" haproxy -db -f "$TMP/haproxy.cfg"
    LBS+=(haproxy); PORT_OF[haproxy]=8181; PG_OF[haproxy]=$STARTED
    render "$TPL/nginx-lb.conf" "$TMP/nginx-lb.conf" "TMP=$TMP" PORT=8182
    # callgrind_control reaches a process only as its own user: the worker stays root here.
    if [ "$MODE" = instr ] && [ "$(id -u)" = 0 ]; then sed -i '1i user root root;' "$TMP/nginx-lb.conf"; fi
    start_group "$TMP/nginx.log" taskset -c "$LB_CPU" "${VG[@]}" nginx -c "$TMP/nginx-lb.conf" -p "$TMP/" -e "$TMP/nginx-lb.err.log"
    LBS+=(nginx); PORT_OF[nginx]=8182; PG_OF[nginx]=$STARTED
fi
port=8183
for spec in $BALLAST; do
    name=${spec%%=*} bin=${spec#*=}
    [ -x "$bin" ] || die "$name: no executable at $bin"
    sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$port/" -e 's/127\.0\.0\.1:910\([1-4]\)/127.0.0.1:920\1/g' \
        bench/ballast-peers.toml >"$TMP/$name.toml"
    start_group "$TMP/$name.log" taskset -c "$LB_CPU" "${VG[@]}" "$bin" serve -c "$TMP/$name.toml" --seed 1
    LBS+=("$name"); PORT_OF[$name]=$port; PG_OF[$name]=$STARTED
    port=$((port + 1))
done
for lb in "${LBS[@]}"; do wait_port "${PORT_OF[$lb]}"; done
if [ "$MODE" = instr ]; then
    log "MODE=instr: LBs ${LBS[*]} under callgrind; warm-up 4 s, then ${DURATION}s x $ROUNDS rounds each"
    printf '%-16s %14s %10s %10s\n' lb instr_per_req requests rounds
    for lb in "${LBS[@]}"; do
        taskset -c "$GEN_CPU" wrk -t1 -c"$CONNECTIONS" -d4s "http://127.0.0.1:${PORT_OF[$lb]}/" >/dev/null 2>&1
        vals=()
        # Two runs per round, two seconds and DURATION seconds, each on 64 new connections: the
        # slope between them is the cost of a request, without the connections' set-up.
        count() { # seconds -> "<instructions> <requests>" of one zeroed wrk run
            local p f total=0 req
            pids=$(group_members "${PG_OF[$lb]}")
            for p in $pids; do callgrind_control -z "$p" >/dev/null 2>&1 || true; done
            taskset -c "$GEN_CPU" wrk -t1 -c"$CONNECTIONS" -d"$1s" "http://127.0.0.1:${PORT_OF[$lb]}/" >"$TMP/$lb.instr.wrk" 2>&1
            for p in $pids; do callgrind_control -d "$p" >/dev/null 2>&1 || true; done
            sleep 0.5
            req=$(awk '/requests in/ { print $1 }' "$TMP/$lb.instr.wrk")
            for p in $pids; do
                f=$(ls -t "$TMP"/vg/callgrind."$p".out.* 2>/dev/null | head -1 || true)
                [ -z "$f" ] || total=$((total + $(awk '/^summary:/ { print $2 }' "$f")))
            done
            echo "$total $req"
        }
        for ((r = 1; r <= ROUNDS; r++)); do
            read -r i1 n1 < <(count 2)
            read -r i2 n2 < <(count "$DURATION")
            vals+=("$(awk -v a="$i1" -v b="$i2" -v m="$n1" -v n="$n2" 'BEGIN { printf "%.0f", (n > m ? (b - a) / (n - m) : 0) }')")
            reqs=$n2
        done
        med=$(printf '%s\n' "${vals[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
        printf '%-16s %14s %10s %10s   (rounds: %s)\n' "$lb" "$med" "$reqs" "$ROUNDS" "${vals[*]}"
    done
    exit 0
fi
for lb in "${LBS[@]}"; do
    code=$(wrk -t1 -c1 -d1s "http://127.0.0.1:${PORT_OF[$lb]}/" 2>&1 | awk '/Non-2xx/ { print "non-2xx" }')
    [ -z "$code" ] || die "$lb answers non-2xx"
done

sys_events=raw_syscalls:sys_enter
perf list tracepoint 2>/dev/null >"$TMP/tracepoints" || true
for s in "${SYSCALLS[@]}"; do
    if grep -q "syscalls:sys_enter_$s " "$TMP/tracepoints"; then sys_events+=",syscalls:sys_enter_$s"; fi
done
RESULTS=$TMP/results.tsv
: >"$RESULTS"
measure() { # lb pass round
    local lb=$1 pass=$2 round=$3 pids events out req
    pids=$(group_members "${PG_OF[$lb]}" | paste -sd, -)
    [ -n "$pids" ] || die "$lb is gone (log: $TMP/$lb.log)"
    case $pass in cpu) events=task-clock,context-switches ;; sys) events=$sys_events ;; esac
    out=$TMP/$lb.$pass.$round
    taskset -c "$GEN_CPU" perf stat -x, -o "$out.perf" -e "$events" -p "$pids" -- \
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT_OF[$lb]}/" >"$out.wrk" 2>&1
    req=$(awk '/requests in/ { print $1 }' "$out.wrk")
    [ -n "$req" ] && [ "$req" -gt 0 ] || { cat "$out.wrk" >&2; die "wrk against $lb: no requests"; }
    grep -q 'Non-2xx\|Socket errors' "$out.wrk" && log "warning: $lb round $round: $(grep 'Non-2xx\|Socket errors' "$out.wrk")"
    awk -F, -v lb="$lb" -v r="$round" -v req="$req" -v pass="$pass" \
        -v rps="$(awk '/^Requests\/sec/ { print $2 }' "$out.wrk")" \
        -v p99="$(awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
                                       print v * (u == "us" ? 0.001 : u == "s" ? 1000 : 1) }' "$out.wrk")" '
        NF >= 3 && $1 ~ /^[0-9.]+$/ {
            ev = $3; sub(/^syscalls:sys_enter_/, "", ev); sub(/^raw_syscalls:sys_enter/, "syscalls", ev)
            v = $1 / req; if (ev == "task-clock") { ev = "cpu_us"; v = $1 * 1000 / req }
            printf "%s\t%s\t%s\t%s\t%.4f\n", lb, r, pass, ev, v
        }
        END { printf "%s\t%s\t%s\treq_per_s\t%s\n%s\t%s\t%s\tp99_ms\t%s\n", lb, r, pass, rps, lb, r, pass, p99 }' \
        "$out.perf" >>"$RESULTS"
}
log "LBs: ${LBS[*]}; rounds $ROUNDS x ${DURATION}s x 2 passes; load $(cut -d' ' -f1-3 /proc/loadavg)"
for lb in "${LBS[@]}"; do wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:${PORT_OF[$lb]}/" >/dev/null 2>&1; done
for ((r = 1; r <= ROUNDS; r++)); do
    for lb in "${LBS[@]}"; do
        for pass in cpu sys; do measure "$lb" "$pass" "$r"; done
        log "round $r $lb: cpu $(awk -F'\t' -v l="$lb" -v r="$r" '$1==l && $2==r && $4=="cpu_us" { print $5 }' "$RESULTS") us/req"
    done
done
log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Median per LB and metric (cpu_us, context-switches, req/s and p99 from the cpu pass; the
# syscall counts from the sys pass).
awk -F'\t' -v order="${LBS[*]}" '
    ($3 == "cpu" && ($4 == "cpu_us" || $4 == "context-switches" || $4 == "req_per_s" || $4 == "p99_ms")) ||
    ($3 == "sys" && $4 != "req_per_s" && $4 != "p99_ms") {
        k = $1 SUBSEP $4; n[k]++; v[k, n[k]] = $5; if (!($4 in seen)) { seen[$4] = 1; ms[++nm] = $4 }
    }
    function median(k,   i, j, t, c, a) {
        c = n[k]; for (i = 1; i <= c; i++) a[i] = v[k, i]
        for (i = 2; i <= c; i++) { t = a[i]
            for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return c ? a[int((c + 1) / 2)] : "NA"
    }
    END {
        nl = split(order, lbs, " ")
        printf "%-16s", "per request"; for (i = 1; i <= nl; i++) printf " %12s", lbs[i]; printf "\n"
        for (m = 1; m <= nm; m++) {
            printf "%-16s", ms[m]
            for (i = 1; i <= nl; i++) { k = lbs[i] SUBSEP ms[m]; printf " %12s", (k in n) ? median(k) : "-" }
            printf "\n"
        }
    }' "$RESULTS"
