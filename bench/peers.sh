#!/usr/bin/env bash
# Benchmarks `ballast serve` against HAProxy and nginx with the shared harness
# (../shared/bench/peers.sh): same four backends, each balancer pinned to one core, wrk on the
# other, interleaved rounds. Installs haproxy, nginx and wrk from Debian when missing.
# Usage: bench/peers.sh            (ROUNDS, DURATION, CONNECTIONS as the harness takes them)
set -euo pipefail
cd "$(dirname "$0")/.."
harness=${BALLAST_PEERS_HARNESS:-../shared/bench/peers.sh}
[ -x "$harness" ] || [ -f "$harness" ] || { echo "no harness at $harness" >&2; exit 1; }
cargo build --release -q -p ballast
CANDIDATE_NAME=ballast \
CANDIDATE_CMD="exec $PWD/target/release/ballast serve -c $PWD/bench/ballast-peers.toml --seed 1" \
    bash "$harness"
