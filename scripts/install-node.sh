#!/usr/bin/env bash
# Installs substrate-contracts-node (crate contracts-node 0.42.0, the last release that ships
# pallet-contracts) unless that version is already on PATH or in $CONTRACTS_NODE. Safe to run
# again. A cold build took 102 minutes on 2 cores here; ../shared/bin holds a ready copy of
# the same release, which scripts/env.sh puts on PATH when it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

NODE_VERSION=0.42.0
node_bin="${CONTRACTS_NODE:-substrate-contracts-node}"

if command -v "$node_bin" >/dev/null && "$node_bin" --version | grep -q " $NODE_VERSION-"; then
    echo "install-node: $("$node_bin" --version) already installed at $(command -v "$node_bin")"
    exit 0
fi

bash scripts/setup.sh

# protoc, clang and libclang for the node's native dependencies.
missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v clang >/dev/null || missing+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd=sudo
    $sudo_cmd apt-get update
    $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi

# substrate-wasm-builder cannot find the node's Cargo.lock under `cargo install` and would
# re-resolve the runtimes' dependencies to versions that do not build on Rust 1.86: point it
# at the lock shipped in the crate, which cargo unpacks here.
registry_src="${CARGO_HOME:-$HOME/.cargo}/registry/src/index.crates.io-1949cf8c6b5b557f"
export WASM_BUILD_WORKSPACE_HINT="$registry_src/contracts-node-$NODE_VERSION"
echo "install-node: building contracts-node $NODE_VERSION (well over an hour on 2 cores)"
start=$(date +%s)
cargo +1.86.0 install contracts-node --version "$NODE_VERSION" --locked
echo "install-node: built in $(( ($(date +%s) - start) / 60 )) minutes"
