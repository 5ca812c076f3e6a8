#!/usr/bin/env bash
# A longer healthy run on `ballast serve` (crates/ballast/tests/guard_healthy.rs): round-robin,
# random and power-of-two pools at a low and a high rate, watched by `ballast watch` alerting a
# real Alertmanager, for SOAK_SECONDS (default 300: the issue's "several minutes"). Prints the
# run's GUARD-HEALTHY line: samples, requests and the count of false alerts (target 0).
# Needs prometheus-alertmanager (Debian) on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SOAK_SECONDS:-300}
BALLAST_SOAK_SECONDS=$seconds cargo test --release -p ballast --test guard_healthy -- \
  --nocapture 2>&1 | grep -E "GUARD-HEALTHY|test result|panicked|FAILED" || true
