#!/usr/bin/env bash
# The HTTP API against its OpenAPI document, and rooms from a third Socket.IO client.
#
# Starts the real binary twice on free loopback ports: standalone, and on a real redis-server
# (no persistence). Against each node:
#   clients      python-socketio clients (WebSocket and long-polling) join rooms at the handshake
#                and by `join` / `leave` events, check acks, `room users` and refusals, and stay
#                in their rooms so that the rooms API lists data (scripts/api_contract.py)
#   schemathesis every operation of /api/openapi.json with every check (`--checks all`: server
#                errors, status code, content type, headers and schema conformance, negative data
#                rejected, positive data accepted, unsupported methods with Allow, and the auth and
#                resource checks, which find nothing to do here); bounded by --max-examples,
#                reproducible by --seed, no example database kept
#   edges        the requests schemathesis does not make (content type, bad JSON, 413, repeated and
#                unknown parameters, the byte limit of names, 404 and 405, paging), each answer
#                checked against the document
# and, on the Redis node with Redis paused (SIGSTOP), the rooms API's documented 503. These two
# nodes have no `api_keys`: the document they serve lists no security. A third node, standalone
# with `auth = optional`, `api_keys` and `public_presence = false` (its document lists the key on
# every protected operation, /api/presence included):
#   users        python-socketio clients with signed tokens are counted as users (two tabs of one
#                user once), see `member joined`, and bad tokens are refused with their reason
#   schemathesis with the API key, every check (ignored_auth sends each operation again without
#                the key and with a wrong one, and wants a 401)
#   keyed        without the key (or with a wrong one) every protected operation answers the
#                documented 401, with it 200; the members API pages through the signed members
#
# Needs target/debug/rollcall (scripts/test.sh builds it; ROLLCALL_BIN to use another) and
# redis-server. schemathesis and python-socketio (pinned) are installed once into a venv under
# ${XDG_CACHE_HOME:-~/.cache}/rollcall-api-contract. Every process started here is killed by its
# PID on exit. Exits 1 if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

VENV="${XDG_CACHE_HOME:-$HOME/.cache}/rollcall-api-contract"
REQUIREMENTS=(
  schemathesis==4.32.5
  'python-socketio[client]==5.18.1'
)
BIN="${ROLLCALL_BIN:-target/debug/rollcall}"
SEED="${API_CONTRACT_SEED:-20260601}"
MAX_EXAMPLES="${API_CONTRACT_MAX_EXAMPLES:-100}"
DEADLINE_S=30 # for one process to get ready
# schemathesis imports scripts/api_contract.py as its hooks: leave no __pycache__ in the tree.
export PYTHONDONTWRITEBYTECODE=1

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
note() { printf '%s\n' "$*" >&2; }
fail() { note "api-contract: $*"; exit 1; }

setup_venv() {
  local stamp="$VENV/.rollcall-requirements" want
  want="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return
  fi
  note "installing schemathesis and python-socketio into $VENV"
  if ! python3 -m venv --clear "$VENV" >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv --clear "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}"
  printf '%s\n' "$want" >"$stamp"
}

# ---- processes ----------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rollcall-api-contract.XXXXXX")"
PIDS=()
cleanup() {
  local status=$? pid
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    for log in "$WORK"/*.log; do
      [ -e "$log" ] && { note "----- $(basename "$log") (tail)"; tail -n 40 "$log" >&2; }
    done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until "$@" succeeds, while process $1's PID lives; at most DEADLINE_S.
wait_for() {
  local pid=$1 what=$2 i
  shift 2
  for ((i = 0; i < DEADLINE_S * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "$what: the process exited"
    sleep 0.1
  done
  fail "$what: not within ${DEADLINE_S} s"
}

# Sends SIGTERM to $1 (started here) and waits at most DEADLINE_S for it; returns its status.
stop_and_wait() {
  local pid=$1 i status=0 kept=()
  kill -TERM "$pid"
  for ((i = 0; i < DEADLINE_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  wait "$pid" || status=$?
  # Reaped: its PID may be reused, so the cleanup must not signal it any more.
  for i in "${PIDS[@]}"; do [ "$i" = "$pid" ] || kept+=("$i"); done
  PIDS=("${kept[@]}")
  return "$status"
}

http_ok() { "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1"; }

start_redis() {
  REDIS_PORT="$(free_port)"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --loglevel warning >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_for "$REDIS_PID" "redis-server on $REDIS_PORT" redis-cli -p "$REDIS_PORT" ping
}

# start_node NAME [ENV=VALUE...]: sets NODE_URL.
start_node() {
  local name=$1 port pid var unset=()
  shift
  port="$(free_port)"
  # No ROLLCALL_* setting leaks in from the caller's shell.
  for var in $(compgen -e); do if [[ $var == ROLLCALL_* ]]; then unset+=(-u "$var"); fi; done
  env "${unset[@]}" ROLLCALL_PORT="$port" ROLLCALL_BIND=127.0.0.1 ROLLCALL_NODE_ID="$name" \
    ROLLCALL_LOG_LEVEL=warn "$@" "$BIN" serve >"$WORK/$name.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  NODE_URL="http://127.0.0.1:$port"
  wait_for "$pid" "node $name" http_ok "$NODE_URL/readyz"
}

# ---- one node -----------------------------------------------------------------------------------
# contract NAME URL CLIENTS EDGES [SCHEMATHESIS ARGS...]: the clients command holds its sockets
# while schemathesis and the edges command run.
contract() {
  local name=$1 url=$2 ready="$WORK/$1.ready" clients_command=$3 edges_command=$4 clients
  shift 4
  note "== $name: python-socketio clients ($clients_command)"
  "$VENV/bin/python" scripts/api_contract.py "$clients_command" "$url" "$ready" >"$WORK/$name-clients.log" 2>&1 &
  clients=$!
  PIDS+=("$clients")
  wait_for "$clients" "$name: clients in their rooms" test -e "$ready"
  note "== $name: schemathesis (seed $SEED, at most $MAX_EXAMPLES examples per operation)"
  # From $WORK: schemathesis keeps a crash cache under ./.schemathesis.
  (cd "$WORK" && SCHEMATHESIS_HOOKS=api_contract PYTHONPATH="$REPO/scripts" timeout 300 \
    "$VENV/bin/schemathesis" run "$url/api/openapi.json" \
    --checks all --seed "$SEED" --max-examples "$MAX_EXAMPLES" --generation-database none \
    --no-color --request-timeout 10 --wait-for-schema 10 "$@") \
    || fail "$name: schemathesis found the server and its document disagreeing (above)"
  note "== $name: $edges_command"
  "$VENV/bin/python" scripts/api_contract.py "$edges_command" "$url" || fail "$name: $edges_command"
  stop_and_wait "$clients" || fail "$name: clients: $(tail -n 5 "$WORK/$name-clients.log")"
  cat "$WORK/$name-clients.log"
}

command -v redis-server >/dev/null || fail "redis-server not found (scripts/test.sh installs it)"
[ -x "$BIN" ] || fail "$BIN not found: build it (cargo build) or set ROLLCALL_BIN"
setup_venv
started=$SECONDS

start_node standalone
contract standalone "$NODE_URL" clients edges

start_redis
start_node on-redis ROLLCALL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" ROLLCALL_REDIS_PREFIX=api-contract
contract on-redis "$NODE_URL" clients edges
note "== on-redis: Redis paused, the rooms API answers 503"
kill -STOP "$REDIS_PID"
"$VENV/bin/python" scripts/api_contract.py unavailable "$NODE_URL" || fail "on-redis: 503"
kill -CONT "$REDIS_PID"

export API_CONTRACT_API_KEY="api-contract-key-$RANDOM$RANDOM" API_CONTRACT_JWT_SECRET="api-contract-secret-$RANDOM-at-least-32-bytes"
start_node keyed ROLLCALL_AUTH=optional ROLLCALL_JWT_SECRET="$API_CONTRACT_JWT_SECRET" \
  ROLLCALL_API_KEYS="$API_CONTRACT_API_KEY,a-second-key" ROLLCALL_PUBLIC_PRESENCE=false
contract keyed "$NODE_URL" users keyed -H "Authorization: Bearer $API_CONTRACT_API_KEY"

note "api-contract: all checks held in $((SECONDS - started)) s"
