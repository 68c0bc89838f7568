#!/usr/bin/env bash
# Keel's whole test suite: formatting, lints, then every unit, property and
# integration test (the integration tests start real clusters of processes).
# Needs only the Rust toolchain with rustfmt and clippy, which rustup installs
# by default; it checks for them and says what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in rustfmt cargo-clippy; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "missing $tool: run 'rustup component add rustfmt clippy'" >&2
    exit 1
  fi
done

# A one-off build from a fresh clone gains nothing from incremental
# compilation's caches, which would take gigabytes of disk beside it.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
