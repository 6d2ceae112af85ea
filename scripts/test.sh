#!/usr/bin/env bash
# The whole test suite. On a fresh Debian/Ubuntu machine with Rust it first installs what is
# missing (redis-server, chromium, haproxy, Prometheus, Node.js, the npm test clients), then runs:
#   1. cargo test              (unit tests + the integration binary tests/it: real redis-server,
#                               real nodes, a real Rust Socket.IO client, a real Prometheus)
#   2. node --test tests/e2e   (the official socket.io-client and headless Chromium, end to end)
#   3. scripts/api-contract.sh (the HTTP API against its OpenAPI document with schemathesis, and
#                              rooms from python-socketio, on a standalone and a Redis node)
#   4. scripts/check-observability.sh (alert rules and their promtool tests, Grafana dashboard)
#   5. scripts/validate-deploy.sh (Dockerfile, compose, k8s and load-balancer configs, offline)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== [%4ds] %s\n' "$SECONDS" "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
command -v redis-cli >/dev/null || missing+=(redis-tools)
# scripts/api-contract.sh and scripts/validate-deploy.sh make their venvs with it (python3-venv
# is installed by them when `python3 -m venv` needs it).
command -v python3 >/dev/null || missing+=(python3)
command -v chromium >/dev/null || missing+=(chromium)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# The chaos tests (tests/it/chaos.rs) put nodes and Redis on network namespaces of their own.
command -v ip >/dev/null || missing+=(iproute2)
command -v nft >/dev/null || missing+=(nftables)
# Prometheus and promtool: tests/it/prometheus.rs and scripts/check-observability.sh start their
# own; the package's system service (enabled where systemd runs) is not used.
{ command -v promtool >/dev/null && [ -x /usr/bin/prometheus ]; } || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $node_major found; the end-to-end tests need Node.js 20 or newer (node --test, playwright-core)." >&2
  echo "Install it from your distribution's backports or NodeSource, then run this script again." >&2
  exit 1
fi

say "npm test clients (tests/e2e)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

say "cargo test"
cargo build --locked --workspace --bins
cargo test --workspace --locked

say "end to end: official socket.io-client and Chromium"
export ROLLCALL_BIN="$PWD/target/debug/rollcall"
node --test --test-concurrency=1 tests/e2e/

say "HTTP API against its OpenAPI document (schemathesis), rooms from python-socketio"
scripts/api-contract.sh

say "alert rules (promtool) and Grafana dashboard"
scripts/check-observability.sh

if [ -x scripts/validate-deploy.sh ]; then
  say "deploy files, validated offline"
  scripts/validate-deploy.sh
fi
say "all tests passed"
