#!/usr/bin/env bash
# Runs the pure-code benchmarks (selection, simulation, check of ballast, HAProxy and nginx
# files) pinned to one core and prints
# criterion's throughput lines. Usage: bench/core.sh [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
core=${BALLAST_BENCH_CORE:-1}
args=(--warm-up-time 1 --measurement-time 4 "${@}")
for target in ballast-core:select ballast-sim:simulate ballast-check:check ballast-check:foreign; do
  cargo bench -q -p "${target%%:*}" --bench "${target##*:}" --no-run
  taskset -c "$core" cargo bench -q -p "${target%%:*}" --bench "${target##*:}" -- "${args[@]}" 2>&1 |
    grep -E '^[a-z_0-9/-]+|time:|thrpt:'
done
