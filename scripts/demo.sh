#!/usr/bin/env bash
# The main job, with nothing running: builds the contract bundle, then `backup-bot demo`
# deploys it on an in-process chain (pallet-contracts in ink_sandbox), backs up a sample
# folder through the bot, has its owner request a restore, serves it and checks the restored
# tree is identical. Work files go to target/bot-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
source scripts/env.sh
cargo run -q -p backup-bot --locked --features sandbox -- demo "$@"
