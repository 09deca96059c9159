#!/usr/bin/env bash
# Deploys the registry on a throwaway local chain and walks the whole flow with
# `cargo contract`: starts `substrate-contracts-node --dev` on loopback (fresh state), builds
# the bundle, instantiates it with //Alice as admin and authority, then creates a backup,
# adds a snapshot, sets a frequency, grants access, requests, claims and fulfils a restore,
# printing each result; then runs the polkadot.js client check (client/check.mjs: every
# message and event through @polkadot/api-contract) and stops the node. PORT (default 9944)
# picks the RPC port.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/dev-node.sh
start_dev_node "${PORT:-9944}"
deploy_registry
charlie=5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y
cid=bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku

echo "deploy-local: contract at $contract (admin and authority: //Alice)"

# dry_run SURI MESSAGE ARGS...: runs the message without submitting it; prints its result.
dry_run() {
    local suri="$1" message="$2"
    shift 2
    echo
    echo "== $message $* (as $suri)"
    args=(--url "$node_url" --contract "$contract" --suri "$suri" --message "$message")
    [ $# -gt 0 ] && args+=(--args "$@")
    cargo contract call "$bundle" "${args[@]}" | grep -E '^ +Result|Reverted'
}

# call SURI MESSAGE ARGS...: prints the dry run's result, then submits the message.
call() {
    dry_run "$@"
    cargo contract call "$bundle" "${args[@]}" --execute --skip-confirm \
        | grep -E 'ContractEmitted|ExtrinsicSuccess' | sed 's/^ */   /'
}

call //Bob create_backup '"node-1"' '"laptop"'
call //Alice add_snapshot '"node-1"' "\"$cid\"" '"nightly"' 1 "$bob" 4096
call //Bob set_backup_offchain_worker_frequency 600
call //Bob grant_access '"node-1"' "$charlie"
dry_run //Alice backup "$bob" '"node-1"'
dry_run //Alice snapshots "$bob" '"node-1"' 0 10
dry_run //Eve restore_from_snapshot "\"$cid\""   # refused: neither owner nor grantee
call //Charlie restore_from_snapshot "\"$cid\""
dry_run //Alice pending_restore_requests 0 10
call //Alice claim_restore_request 0
call //Alice fulfil_restore_request 0
dry_run //Alice restore_request 0
dry_run //Alice fulfil_restore_request 0   # refused: already fulfilled

# The same contract from the library under Contracts UI: every message, every event.
echo
if command -v npm >/dev/null; then
    echo "deploy-local: polkadot.js client check (client/check.mjs)"
    (cd client && npm ci --no-audit --no-fund --silent && node check.mjs "$node_url")
else
    echo "deploy-local: npm is not installed, so the polkadot.js client check is SKIPPED"
fi
echo
echo "deploy-local: flow done; stopping the node"
