#!/usr/bin/env bash
# The guard's costs: CPU per detector round over 1,000 pools × 50 servers (target ≤ 10 ms),
# best of three `perf stat -e task-clock` runs with the cost of building the samples
# subtracted, for the three detectors over a window of two samples and for the watcher's
# whole round; and the nginx access-log tail (criterion), whose lines/s say what tailing
# 10,000 lines/s costs (target ≤ 5% of a core). Needs `perf` (Debian: linux-perf).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-100}
bin=$(cargo bench -p ballast-guard --bench detectors --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*detectors[^"]*"' | tail -1 | cut -d'"' -f4)
best() { for _ in 1 2 3; do BENCH_ROUNDS=$1 BENCH_FLEET=$2 BENCH_ONLY=$3 perf stat -x, -e task-clock "$bin" 2>&1 | grep task-clock | cut -d, -f1; done | sort -n | head -1; }
for fleet in healthy troubled; do
  setup=$(best 0 "$fleet" "")
  for only in all distribution saturation errors; do
    o=$only; [ "$only" = all ] && o=""
    t=$(best "$rounds" "$fleet" "$o")
    awk -v f="$fleet" -v o="$only" -v t="$t" -v s="$setup" -v r="$rounds" \
      'BEGIN{printf "detectors %-8s %-12s %6.2f ms/round\n", f, o, (t-s)/r}'
  done
done
# The whole round `ballast watch` runs: every detector, drift, the cause statements and the
# alert lifecycle over the default 5 s window of 1 s samples (6 samples), its CPU time measured
# inside the bench (the thread's time on CPU) over 20 steady rounds after a minute of history.
for fleet in healthy troubled; do
  printf "watcher  %-8s " "$fleet"
  BENCH_ROUNDS=20 BENCH_FLEET=$fleet BENCH_ONLY=watcher "$bin"
done
cargo bench -p ballast-guard --bench nginx_log 2>/dev/null | grep -E "^nginx|time:|thrpt:" || true
# The healthy soak on `ballast serve` (false alerts, target 0) is bench/soak-healthy.sh.
