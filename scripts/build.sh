#!/usr/bin/env bash
# Sets up the toolchain (scripts/setup.sh) and builds the release bundle:
# target/ink/backup_registry.{contract,wasm,json}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo contract build --release
wasm=target/ink/backup_registry.wasm
echo "build: $(wc -c <"$wasm") bytes of optimised wasm in $wasm"
ls -l target/ink/backup_registry.contract target/ink/backup_registry.json
