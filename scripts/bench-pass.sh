#!/usr/bin/env bash
# The bot's real pass, timed: each figure of the benchmark taken by `backup-bot run --once` (a
# process each: start, chain connection, start-up collection, the pass, every chain call
# included) against a local `substrate-contracts-node --dev` with the registry deployed, on
# the benchmark's tree of SIZE_MIB MiB (1024 unless set). Each of RUNS runs (3 unless set)
# serves a node of its own (a fresh tree, store and state folder) owned by //Bob, and times:
# the first snapshot; a snapshot of the unchanged tree //Bob asks for (`request_snapshot`);
# one after the benchmark's 1 % change, asked for too; the restore of the latest snapshot
# //Bob asks for (`restore_latest_snapshot`, checked identical with `diff -r`); and a pass
# with nothing due. Prints the medians (min–max). Work files go to target/bot-bench-pass.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dev-node.sh

cargo build -q --release -p backup-bot --locked
bot="$PWD/target/release/backup-bot"
size_mib="${SIZE_MIB:-1024}"
runs="${RUNS:-3}"
work="$PWD/target/bot-bench-pass"
rm -rf "$work"
mkdir -p "$work"

start_dev_node "${PORT:-9955}"
deploy_registry
export BACKUP_BOT_SURI=//Alice

as_bob() {
    local message="$1"
    shift
    cargo contract call "$bundle" --url "$node_url" --contract "$contract" --suri //Bob \
        --message "$message" --args "$@" --execute --skip-confirm \
        | grep ExtrinsicSuccess >/dev/null \
        || { echo "bench-pass: //Bob's $message failed"; exit 1; }
}

# Seconds `backup-bot run --once` takes with the configuration $1; its output goes to $2.
timed_pass() {
    local start end
    start="$(date +%s.%N)"
    "$bot" run --once --config "$1" >>"$2" 2>&1 || { cat "$2"; exit 1; }
    end="$(date +%s.%N)"
    awk -v start="$start" -v end="$end" 'BEGIN { printf "%.2f\n", end - start }'
}

steps="first unchanged changed restore idle"
for number in $(seq "$runs"); do
    run="$work/run-$number"
    node="bench-$number"
    "$bot" bench --write-tree "$run/tree" --size-mib "$size_mib" >/dev/null
    cat >"$run/bot.toml" <<TOML
url = "$node_url"
contract = "$contract"
metadata = "$PWD/$bundle"
data_dir = "bot-data"

[[nodes]]
node_id = "$node"
owner = "$bob"
source = "tree"
restore_to = "restored"
TOML
    log="$run/bot.log"
    as_bob create_backup "\"$node\"" '"benchmark"'
    sync
    timed_pass "$run/bot.toml" "$log" >>"$work/first"
    as_bob request_snapshot "\"$node\""
    sync
    timed_pass "$run/bot.toml" "$log" >>"$work/unchanged"
    "$bot" bench --change-tree "$run/tree" >/dev/null
    as_bob request_snapshot "\"$node\""
    sync
    timed_pass "$run/bot.toml" "$log" >>"$work/changed"
    as_bob restore_latest_snapshot "$bob" "\"$node\""
    sync
    timed_pass "$run/bot.toml" "$log" >>"$work/restore"
    diff -r "$run/tree" "$run/restored"
    timed_pass "$run/bot.toml" "$log" >>"$work/idle"
    grep -c "snapshot recorded" "$log" | grep -qx 3 \
        || { cat "$log"; echo "bench-pass: run $number did not record three snapshots"; exit 1; }
    figures="$(for step in $steps; do printf '%s %s s; ' "$step" "$(tail -1 "$work/$step")"; done)"
    echo "run $number of $runs: $figures"
done

# The median (the upper one of an even count) and the range of the figures in file $1.
median_range() {
    sort -n "$1" | awk '{ v[NR] = $1 } END { printf "%s (%s–%s)", v[int(NR / 2) + 1], v[1], v[NR] }'
}
tree_mib="$(du -sm "$work/run-1/restored" | cut -f1)"
echo
echo "the bot's real pass: \`run --once\` on a local node, chain calls included; $runs run(s) on ~$tree_mib MiB, median (min–max), seconds"
echo
echo "| pass | seconds |"
echo "|---|---:|"
echo "| first snapshot | $(median_range "$work/first") |"
echo "| snapshot of the unchanged tree, asked for | $(median_range "$work/unchanged") |"
echo "| snapshot after the 1 % change, asked for | $(median_range "$work/changed") |"
echo "| restore of the latest snapshot | $(median_range "$work/restore") |"
echo "| nothing due | $(median_range "$work/idle") |"
rm -rf "$work"
