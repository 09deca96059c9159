#!/usr/bin/env bash
# Installs what building and testing the contract needs, skipping what is already there:
# the Rust toolchain pinned in rust-toolchain.toml (with rust-src, clippy, rustfmt and the
# wasm32 target) and cargo-contract 5.0.3. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

TOOLCHAIN=1.86.0
CARGO_CONTRACT_VERSION=5.0.3

if ! command -v rustup >/dev/null; then
    echo "setup: rustup is missing; install it from https://rustup.rs first" >&2
    exit 1
fi

# rustup does not always install a pinned toolchain's components by itself; this is quick
# when everything is present already.
rustup toolchain install "$TOOLCHAIN" --profile minimal \
    -c rust-src -c clippy -c rustfmt -t wasm32-unknown-unknown

# It prints e.g. "cargo-contract-contract 5.0.3-unknown-x86_64-unknown-linux-gnu".
if cargo contract --version 2>/dev/null | grep -qE " ${CARGO_CONTRACT_VERSION//./\\.}([-+ ]|$)"; then
    echo "setup: $(cargo contract --version) already installed"
else
    echo "setup: installing cargo-contract $CARGO_CONTRACT_VERSION (about 25-35 minutes on 2 cores)"
    cargo install cargo-contract --version "$CARGO_CONTRACT_VERSION" --locked
fi
