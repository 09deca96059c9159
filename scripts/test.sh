#!/usr/bin/env bash
# The project's tests: formatting, clippy with warnings denied, the unit tests, and the
# release build of the contract bundle. Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --all-targets --features e2e-tests -- -D warnings

step "cargo test (unit tests)"
cargo test --features e2e-tests

step "release build of the contract bundle"
bash scripts/build.sh
