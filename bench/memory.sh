#!/usr/bin/env bash
# RSS per idle connection of one standalone node (release build): start the node with a 1 s
# Engine.IO ping, read its RSS (/proc/PID/status VmRSS), connect MEM_CLIENTS swarm clients with
# `rollcall swarm --scenario hold`, wait until the node holds all of them, hold MEM_HOLD seconds
# (with 1 s pings every socket has seen 2 x MEM_HOLD packets by then), read the RSS again, and
# print (RSS at steady state - RSS before) / clients.
#
# Usage: bench/memory.sh                                   10,000 WebSocket clients, 60 s hold
#        MEM_TRANSPORT=polling bench/memory.sh             the official client's default path
#        MEM_LABEL=arena2 MALLOC_ARENA_MAX=2 bench/memory.sh
#        ROLLCALL_MEMORY_LEAN_REQUEST_HEAD=false bench/memory.sh   (any ROLLCALL_* setting passes)
#        BENCH_HEAPTRACK=1 ROLLCALL_BIN=target/prof/release/rollcall bench/memory.sh
#            the node under heaptrack: its live heap per connection at steady state and the call
#            sites holding it (RSS then includes heaptrack's own; see bench/lib.sh for the build)
# Env:   MEM_CLIENTS (10000), MEM_HOLD (60), MEM_TRANSPORT (websocket | polling), MEM_RATE
#        (2000 connects/s), MEM_LABEL (a name for the result line), MEM_WORKER_THREADS (0: one per
#        core), ROLLCALL_BIN (default target/release/rollcall), SWARM_BIN (the `rollcall` that runs
#        the swarm; default ROLLCALL_BIN: set it to measure an older node), BENCH_SKIP_BUILD=1.
#        Every variable of the caller's environment reaches the node (MALLOC_*, ROLLCALL_*).
# Output: one line `MEMORY label=... clients=... transport=... before_kib=... steady_kib=...
#        per_conn_kb=...` on stdout (KB = 1000 bytes), details on stderr.
# Take the benchmark lock around it: flock /work/notes/bench.lock bench/memory.sh
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
SWARM=${SWARM_BIN:-$ROLLCALL}
CLIENTS=${MEM_CLIENTS:-10000}
HOLD=${MEM_HOLD:-60}
TRANSPORT=${MEM_TRANSPORT:-websocket}
RATE=${MEM_RATE:-2000}
LABEL=${MEM_LABEL:-default}
WORK=$(mktemp -d /tmp/rollcall-memory.XXXXXX)
PIDS=()

# shellcheck source=bench/lib.sh
. bench/lib.sh
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
local_sockets() {
  curl -fsS "$1/api/presence" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["local"])' \
    2>/dev/null || echo -1
}

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall >&2
fi

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
HEAPTRACK=()
[ "${BENCH_HEAPTRACK:-0}" = 1 ] && HEAPTRACK=(heaptrack -o "$WORK/heap")
ROLLCALL_PORT=$PORT ROLLCALL_MAX_CONNECTIONS=$((CLIENTS + 1000)) ROLLCALL_PING_INTERVAL_MS=1000 \
  ROLLCALL_WORKER_THREADS=${MEM_WORKER_THREADS:-0} ROLLCALL_LOG_LEVEL=warn \
  "${HEAPTRACK[@]}" "$ROLLCALL" serve >"$WORK/node.log" 2>&1 &
NODE=$!
PIDS+=("$NODE")
if [ ${#HEAPTRACK[@]} -gt 0 ]; then
  NODE=$(heap_node_pid "$ROLLCALL")
  PIDS+=("$NODE")
fi
wait_ready "$URL"
BEFORE=$(rss_kib "$NODE")
say "node $NODE on $URL: RSS before $BEFORE KiB"

"$SWARM" swarm --url "$URL" --clients "$CLIENTS" --rate "$RATE" --scenario hold \
  --transport "$TRANSPORT" --duration "$((HOLD + 60))s" --max-duration "$((HOLD + 300))s" --json \
  >"$WORK/swarm.json" 2>"$WORK/swarm.log" &
SWARM_PID=$!
PIDS+=("$SWARM_PID")

# Bounded: all clients connected within (clients / rate + 60) s; on a loaded machine a few connects
# may time out: at least 99 % must be held, and the result divides by the number held.
deadline=$((SECONDS + CLIENTS / RATE + 60))
while [ "$(local_sockets "$URL")" != "$CLIENTS" ] && [ $SECONDS -le $deadline ]; do
  if ! kill -0 "$SWARM_PID" 2>/dev/null; then break; fi
  sleep 0.5
done
HELD=$(local_sockets "$URL")
if [ "$HELD" -lt $((CLIENTS * 99 / 100)) ]; then
  say "the node holds only $HELD of $CLIENTS clients; swarm log:"
  tail -5 "$WORK/swarm.log" >&2
  exit 1
fi
say "$HELD of $CLIENTS held (RSS $(rss_kib "$NODE") KiB); holding ${HOLD}s with 1 s pings"
sleep "$HOLD"
HELD=$(local_sockets "$URL")
STEADY=$(rss_kib "$NODE")
HEAP=
if [ ${#HEAPTRACK[@]} -gt 0 ]; then
  LIVE=$(heap_live "$NODE" "$WORK/heap")
  HEAP=" live_heap_bytes=$LIVE heap_per_conn_kb=$(python3 -c "print(f'{$LIVE / $HELD / 1000:.1f}')") call_sites=$WORK/heap.txt"
fi
kill "$SWARM_PID" 2>/dev/null || true
PER=$(python3 -c "print(f'{($STEADY - $BEFORE) * 1024 / $HELD / 1000:.1f}')")
echo "MEMORY label=$LABEL clients=$CLIENTS held=$HELD transport=$TRANSPORT before_kib=$BEFORE steady_kib=$STEADY per_conn_kb=$PER$HEAP"
