#!/usr/bin/env bash
# The bot's throughput benchmark: builds backup-bot in release mode, generates a tree of about
# 1 GiB (SIZE_MIB to change) in target/bot-bench, and prints, measured in the same run, the
# throughput of the snapshot pipeline (tar + age + UnixFS CID + local store) next to
# `sha256sum` of the same files and `restic backup` of the same tree (when restic is
# installed: apt-get install restic).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo run -q --release -p backup-bot --locked -- bench --size-mib "${SIZE_MIB:-1024}"
