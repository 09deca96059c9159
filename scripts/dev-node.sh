# Sourced by the scripts that deploy the registry on a throwaway chain. Sourcing it installs
# the node if needed (install-node.sh), builds the bundle (build.sh), puts the tools on PATH
# (env.sh) and sets `bundle` and the dev accounts `alice` and `bob`. Then:
# - `start_dev_node PORT` starts `substrate-contracts-node --dev` on 127.0.0.1:PORT with fresh
#   state, waits until its RPC server runs, sets `node_url`, and stops the node and removes
#   its state on exit;
# - `deploy_registry` instantiates the bundle there with //Alice as admin and authority and
#   sets `contract` to its address.
# shellcheck shell=bash

bash scripts/install-node.sh
bash scripts/build.sh
source scripts/env.sh
bundle=target/ink/backup_registry.contract
alice=5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY
bob=5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty

start_dev_node() {
    local port="$1" node_bin="${CONTRACTS_NODE:-substrate-contracts-node}"
    dev_node_dir="$(mktemp -d)"
    "$node_bin" --dev --base-path "$dev_node_dir" --rpc-port "$port" >"$dev_node_dir/node.log" 2>&1 &
    dev_node_pid=$!
    # Stopping the node is all the teardown judges: the flow's own commands have already
    # failed the script if the node misbehaved, and under `set -e` a node that had already
    # exited (kill fails) or exits non-zero when stopped would fail a flow that passed.
    trap 'kill "$dev_node_pid" 2>/dev/null || true; wait "$dev_node_pid" 2>/dev/null || true; rm -rf "$dev_node_dir"' EXIT
    for _ in $(seq 60); do
        grep -q "Running JSON-RPC server" "$dev_node_dir/node.log" && break
        kill -0 "$dev_node_pid" 2>/dev/null || { cat "$dev_node_dir/node.log"; exit 1; }
        sleep 1
    done
    node_url="ws://127.0.0.1:$port"
    echo "node $("$node_bin" --version) on $node_url"
}

deploy_registry() {
    local instantiate_json
    instantiate_json="$(cargo contract instantiate "$bundle" --url "$node_url" --suri //Alice \
        --constructor with_default_config --args "[$alice]" --execute --skip-confirm \
        --output-json)"
    contract="$(printf '%s' "$instantiate_json" | sed -n 's/^ *"contract": "\(.*\)",*$/\1/p')"
    [ -n "$contract" ] || { echo "instantiation failed: $instantiate_json"; exit 1; }
}
