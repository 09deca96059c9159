# Sourced by the other scripts: the pinned toolchain's tools and the ready binaries on PATH.
# shellcheck shell=bash
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
shared_bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/bin"
if [ -d "$shared_bin" ]; then
    # Ready binaries of the same crates.io releases (see ../shared/bin/README.md).
    PATH="$(cd "$shared_bin" && pwd):$PATH"
fi
unset shared_bin
