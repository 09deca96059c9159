#!/usr/bin/env bash
# The project's tests: formatting, clippy with warnings denied, the unit tests, the e2e
# scenarios (sandbox always, node when installed), and the release build of the contract
# bundle. Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied)"
cargo clippy --all-targets --features e2e-tests -- -D warnings

# Unit tests, and the e2e scenarios on the in-process sandbox; on a real
# substrate-contracts-node too when one is installed ($CONTRACTS_NODE or PATH).
if [ -n "${CONTRACTS_NODE:-}" ] || command -v substrate-contracts-node >/dev/null; then
    step "cargo test: unit tests, e2e on the sandbox and on $(command -v "${CONTRACTS_NODE:-substrate-contracts-node}")"
    cargo test --features e2e-tests -- --test-threads=2
else
    step "cargo test: unit tests, e2e on the sandbox"
    echo "NOTE: substrate-contracts-node is not installed, so the e2e scenarios' node backend"
    echo "      is SKIPPED. Install it with: bash scripts/install-node.sh"
    cargo test --features e2e-tests -- --skip ::node
fi

step "release build of the contract bundle"
bash scripts/build.sh

if [ -n "${CONTRACTS_NODE:-}" ] || command -v substrate-contracts-node >/dev/null; then
    step "deploy on a local node: cargo contract flow and the polkadot.js client check"
    PORT="${PORT:-9944}" bash scripts/deploy-local.sh
else
    step "deploy on a local node: SKIPPED (substrate-contracts-node is not installed)"
fi
