#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test in the workspace.
# Installs what the tests need when it is missing, from Debian's packages: HAProxy and nginx,
# which the fidelity and guard tests run as real peers; Prometheus (with promtool) and
# Alertmanager, which the guard's tests run to evaluate the generated rules and receive alerts;
# Chromium and chromedriver, which the dashboard's browser test runs.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v nginx >/dev/null || missing+=(nginx)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
# The dashboard's browser test drives headless Chromium through chromedriver.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# bench/loadtest.sh compares `ballast loadtest` with wrk.
command -v wrk >/dev/null || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages) for the tests with real peers"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  # The packages start their services; the tests run their own instances on free ports.
  $sudo_cmd systemctl stop haproxy nginx prometheus prometheus-alertmanager \
    prometheus-node-exporter >/dev/null 2>&1 || true
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings

echo "== docs/rules.md is generated from the catalogue"
cargo run -q --release -p ballast -- check --list-rules --format markdown | diff -u docs/rules.md - \
  || { echo "docs/rules.md is stale: cargo run -q -- check --list-rules --format markdown > docs/rules.md"; exit 1; }

echo "== docs/runbook.md is generated from the detectors"
cargo run -q --release -p ballast -- rules runbook | diff -u docs/runbook.md - \
  || { echo "docs/runbook.md is stale: cargo run -q --release -- rules runbook > docs/runbook.md"; exit 1; }

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --release 2>&1 | tee "$log"
# One closing line with the totals of every test binary (the last binaries are doc-tests with
# nothing to run, which would otherwise close the output with "0 passed").
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed; exit (failed > 0 || passed == 0) }' "$log"
