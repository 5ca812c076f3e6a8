#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test in the workspace.
# Installs what the tests need when it is missing (nothing beyond the Rust toolchain yet;
# later suites add HAProxy, nginx and friends here, from Debian's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -q -- -D warnings

echo "== docs/rules.md is generated from the catalogue"
cargo run -q --release -p ballast -- check --list-rules --format markdown | diff -u docs/rules.md - \
  || { echo "docs/rules.md is stale: cargo run -q -- check --list-rules --format markdown > docs/rules.md"; exit 1; }

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --release 2>&1 | tee "$log"
# One closing line with the totals of every test binary (the last binaries are doc-tests with
# nothing to run, which would otherwise close the output with "0 passed").
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed; exit (failed > 0 || passed == 0) }' "$log"
