# Sourced by the scripts that need a throwaway chain: `start_dev_node PORT` starts
# `substrate-contracts-node --dev` on 127.0.0.1:PORT with fresh state, waits until its RPC
# server runs, sets `node_url`, and stops the node and removes its state on exit.
# shellcheck shell=bash

start_dev_node() {
    local port="$1" node_bin="${CONTRACTS_NODE:-substrate-contracts-node}"
    dev_node_dir="$(mktemp -d)"
    "$node_bin" --dev --base-path "$dev_node_dir" --rpc-port "$port" >"$dev_node_dir/node.log" 2>&1 &
    dev_node_pid=$!
    trap 'kill "$dev_node_pid" 2>/dev/null; wait "$dev_node_pid" 2>/dev/null; rm -rf "$dev_node_dir"' EXIT
    for _ in $(seq 60); do
        grep -q "Running JSON-RPC server" "$dev_node_dir/node.log" && break
        kill -0 "$dev_node_pid" 2>/dev/null || { cat "$dev_node_dir/node.log"; exit 1; }
        sleep 1
    done
    node_url="ws://127.0.0.1:$port"
    echo "node $("$node_bin" --version) on $node_url"
}
