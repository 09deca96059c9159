#!/usr/bin/env bash
# The bot's benchmark against restic: builds backup-bot in release mode, generates a tree of
# about 1 GiB (SIZE_MIB to change) of mixed files in target/bot-bench, and prints one table,
# the medians (and ranges) of RUNS runs (3 unless set), each on a fresh tree, of: first
# snapshot (MiB/s, with sha256sum as the hashing reference), second snapshot of the unchanged
# tree and third after changing 1 % of the files (seconds, new bytes stored), restore of the
# latest (MiB/s), store sizes and peak memory, each with its target against restic. Then one
# run on a tree of MANY_FILES small files (1,000,000 unless set; 0 skips it; about a quarter
# of an hour on 2 cores): first snapshot, unchanged tree, restore and peak memory of both.
# Then the bot's real pass on a local node (scripts/bench-pass.sh; REAL_PASS=0 skips it).
# Installs restic 0.14 from Debian when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v restic > /dev/null; then
    echo "bench-bot: installing restic (Debian package)"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq restic
fi
source scripts/env.sh
cargo run -q --release -p backup-bot --locked -- bench --size-mib "${SIZE_MIB:-1024}" --runs "${RUNS:-3}"
if [ "${MANY_FILES:-1000000}" != 0 ]; then
    cargo run -q --release -p backup-bot --locked -- bench --many-files "${MANY_FILES:-1000000}"
fi
if [ "${REAL_PASS:-1}" != 0 ]; then
    bash scripts/bench-pass.sh
fi
