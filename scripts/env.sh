# Sourced by the other scripts: the pinned toolchain's tools and ready-built binaries on PATH.
# Ready-built tools are looked up, before anything is compiled, in:
#   $CARGO_CONTRACT  a cargo-contract 5.0.3 binary (named cargo-contract);
#   $CONTRACTS_NODE  a substrate-contracts-node 0.42.0 binary (also read by ink_e2e);
#   ../shared/bin    copies of both, in this repository's own test environment only.
# shellcheck shell=bash
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
shared_bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/bin"
if [ -d "$shared_bin" ]; then
    PATH="$(cd "$shared_bin" && pwd):$PATH"
fi
unset shared_bin
for ready_tool in "${CARGO_CONTRACT:-}" "${CONTRACTS_NODE:-}"; do
    if [ -n "$ready_tool" ] && [ -x "$ready_tool" ]; then
        PATH="$(cd "$(dirname "$ready_tool")" && pwd):$PATH"
    fi
done
unset ready_tool
