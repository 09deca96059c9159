#!/usr/bin/env bash
# Starts a js-ipfs 0.66.1 daemon (npm `ipfs`, installed here by `npm ci`) with a fresh repository
# in REPO, its RPC API on 127.0.0.1:PORT, no gateway, no swarm listeners (it dials nobody in a
# test). It prints "Daemon is ready" when the API answers. js-ipfs is another implementation of
# Kubo's RPC API, not Kubo.
# Usage: bash daemon.sh REPO PORT
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export IPFS_PATH="$1"
port="$2"
# Node.js 20 lacks Promise.withResolvers, which this release uses.
export NODE_OPTIONS="--require $here/withresolvers.cjs"
ipfs() { node "$here/node_modules/ipfs/src/cli.js" "$@"; }
ipfs init --profile test > /dev/null
ipfs config Addresses.API "/ip4/127.0.0.1/tcp/$port"
ipfs config Addresses.Gateway /ip4/127.0.0.1/tcp/0
ipfs config --json Addresses.RPC '""'
ipfs config --json Addresses.Swarm '[]'
exec node "$here/node_modules/ipfs/src/cli.js" daemon
