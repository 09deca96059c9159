#!/usr/bin/env bash
# The project's tests: formatting, clippy with warnings denied (contract and bot), the
# contract's unit tests and e2e scenarios (sandbox always, node when installed), the release
# build of the contract bundle, the bot's tests (unit, in-process chain, UnixFS CIDs against
# the JavaScript importer when npm is installed, a live node when installed), and the deploy
# and bot flows on a local node when one is installed. Installs what it needs first
# (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

step() { printf '\n== %s\n' "$*"; }
have_node() { [ -n "${CONTRACTS_NODE:-}" ] || command -v substrate-contracts-node >/dev/null; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings denied): contract, then bot"
cargo clippy --all-targets --features e2e-tests -- -D warnings
cargo clippy -p backup-bot --all-targets --locked -- -D warnings

# Unit tests, and the e2e scenarios on the in-process sandbox; on a real
# substrate-contracts-node too when one is installed ($CONTRACTS_NODE or PATH).
if have_node; then
    step "contract tests: unit, e2e on the sandbox and on $(command -v "${CONTRACTS_NODE:-substrate-contracts-node}")"
    cargo test --features e2e-tests -- --test-threads=2
else
    step "contract tests: unit, e2e on the sandbox"
    echo "NOTE: substrate-contracts-node is not installed, so the e2e scenarios' node backend"
    echo "      is SKIPPED. Install it with: bash scripts/install-node.sh"
    cargo test --features e2e-tests -- --skip ::node
fi

step "release build of the contract bundle"
bash scripts/build.sh

step "bot tests: unit, in-process chain, UnixFS CIDs against IPFS's JavaScript importer, live node"
skips=()
if command -v npm >/dev/null; then
    (cd bot/unixfs-check && npm ci --no-audit --no-fund --silent)
else
    echo "NOTE: npm is not installed, so the checks of the bot's UnixFS CIDs and snapshot DAGs against IPFS's"
    echo "      JavaScript implementations are SKIPPED."
    skips+=(--skip javascript)
fi
if ! have_node; then
    echo "NOTE: substrate-contracts-node is not installed, so the bot's live-node test is SKIPPED."
    skips+=(--skip live_node)
fi
cargo test -p backup-bot --locked -- "${skips[@]}"

if have_node; then
    step "deploy on a local node: cargo contract flow and the polkadot.js client check"
    PORT="${PORT:-9944}" bash scripts/deploy-local.sh
    step "the bot on a local node: snapshot, restore request, restore, diff"
    PORT="${PORT:-9944}" bash scripts/bot-local.sh
else
    step "deploy and bot flows on a local node: SKIPPED (substrate-contracts-node is not installed)"
fi
