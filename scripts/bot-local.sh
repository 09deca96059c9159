#!/usr/bin/env bash
# The backup bot on a live local chain, in one command: starts `substrate-contracts-node --dev`
# on loopback (PORT, default 9944) with fresh state, deploys the registry with //Alice as admin
# and authority, writes a sample node folder owned by //Bob, runs `backup-bot run --once` (the
# node is skipped: //Bob has not opted in), has //Bob opt in with `create_backup`, runs the bot
# again (the snapshot is recorded), has //Bob request a restore with `cargo contract call`, runs the bot
# again (the restore is served) and compares the two trees with `diff -r`. Work files go to
# target/bot-local; the node is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dev-node.sh

cargo build -q -p backup-bot --locked
bot() { cargo run -q -p backup-bot --locked -- "$@"; }
work="$PWD/target/bot-local"
rm -rf "$work"
mkdir -p "$work/node-1/data/docs" "$work/node-1/data/empty"
echo "hello from node-1" >"$work/node-1/data/docs/hello.txt"
head -c 300000 /dev/urandom >"$work/node-1/data/blob.bin"

start_dev_node "${PORT:-9944}"
deploy_registry
echo "bot-local: registry at $contract; //Alice is admin and the bot's authority"

cat >"$work/bot.toml" <<TOML
url = "$node_url"
contract = "$contract"
metadata = "$PWD/$bundle"
data_dir = "bot-data"

[[nodes]]
node_id = "node-1"
owner = "$bob"
source = "node-1/data"
restore_to = "node-1/restored"
TOML
export BACKUP_BOT_SURI=//Alice

echo "bot-local: first pass (skipped: //Bob has no backup of node-1 yet)"
bot run --once --config "$work/bot.toml"

echo "bot-local: //Bob opts node-1 in"
cargo contract call "$bundle" --url "$node_url" --contract "$contract" --suri //Bob \
    --message create_backup --args '"node-1"' '"sample"' --execute --skip-confirm \
    | grep -E 'ExtrinsicSuccess'

echo "bot-local: second pass (snapshot)"
bot run --once --config "$work/bot.toml"
cargo contract call "$bundle" --url "$node_url" --contract "$contract" --suri //Bob \
    --message latest_snapshot --args "$bob" '"node-1"' | grep -E '^ +Result' -A3

echo "bot-local: //Bob requests a restore of the latest snapshot"
cargo contract call "$bundle" --url "$node_url" --contract "$contract" --suri //Bob \
    --message restore_latest_snapshot --args "$bob" '"node-1"' --execute --skip-confirm \
    | grep -E 'ExtrinsicSuccess'

echo "bot-local: third pass (restore)"
bot run --once --config "$work/bot.toml"
cargo contract call "$bundle" --url "$node_url" --contract "$contract" --suri //Bob \
    --message restore_request --args 0 | grep -E '^ +Result' -A3 | grep -o 'status: [A-Za-z]*'

diff -r "$work/node-1/data" "$work/node-1/restored"
echo "bot-local: restored tree $work/node-1/restored is identical to $work/node-1/data"
