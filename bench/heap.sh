#!/usr/bin/env bash
# A heap profile of one node under churn: what is still allocated once every client has left.
# One redis-server and one node under `heaptrack`; a `rollcall swarm --scenario soak` against it;
# then, with no client left, the node is killed and heaptrack lists the allocations it still held
# by call site. Memory that grows with the number of reconnects shows up here; the allocator's
# own growth (freed memory it keeps) does not.
#
# Usage: bench/heap.sh [SWARM-ARGS...]   (default: --clients 5000 --rate 1000 --churn-rate 200
#        --rooms 50 --move-rate 20 --duration 4m --warmup 1m)
# Env:   ROLLCALL_BIN: a release build with line tables (default target/prof/release/rollcall;
#          how to build it: bench/lib.sh)
#        HEAP_OUT (directory for the profile and reports; default a new /tmp directory, printed).
# Output: HEAP_OUT/node.txt (heaptrack_print --print-leaks: what was live at the kill, by call
#        site) and a `HEAP` line on stdout: reconnects, live heap bytes with no client left.
# Needs: heaptrack (apt-get install heaptrack). Take the bench lock: flock /work/notes/bench.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
ROLLCALL=${ROLLCALL_BIN:-$PWD/target/prof/release/rollcall}
OUT=${HEAP_OUT:-$(mktemp -d /tmp/rollcall-heap.XXXXXX)}
mkdir -p "$OUT"
PIDS=()
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v heaptrack >/dev/null || { echo "heaptrack is not installed (apt-get install heaptrack)" >&2; exit 1; }
[ -x "$ROLLCALL" ] || { echo "no binary at $ROLLCALL: see the usage above" >&2; exit 1; }
[ $# -gt 0 ] || set -- --clients 5000 --rate 1000 --churn-rate 200 --rooms 50 --move-rate 20 --duration 4m --warmup 1m

REDIS_PORT=$(free_port) PORT=$(free_port)
start_redis "$REDIS_PORT" "$OUT/redis.log"
ROLLCALL_PORT=$PORT ROLLCALL_REDIS_URL=redis://127.0.0.1:$REDIS_PORT ROLLCALL_NODE_ID=heap \
  ROLLCALL_LOG_LEVEL=warn heaptrack -o "$OUT/node" "$ROLLCALL" serve >"$OUT/node.log" 2>&1 &
PIDS+=($!)
NODE=$(heap_node_pid "$ROLLCALL")
PIDS+=("$NODE")
URL=http://127.0.0.1:$PORT
wait_ready "$URL"

say "swarm --url $URL --scenario soak --rss-pid $NODE $*"
set +e
"$ROLLCALL" swarm --url "$URL" --scenario soak --rss-pid "$NODE" "$@" --json >"$OUT/swarm.json" 2>"$OUT/swarm.log"
CODE=$?
set -e
local_count() { curl -fsS "$URL/api/presence" | python3 -c 'import json, sys; print(json.load(sys.stdin)["local"])'; }
for _ in $(seq 300); do [ "$(local_count)" = 0 ] && break; sleep 0.1; done
say "no client left ($(local_count) local); RSS $(awk '$1 == "VmRSS:" { print $2 }' "/proc/$NODE/status") KiB"
LIVE=$(heap_live "$NODE" "$OUT/node")
grep -E "^(total runtime|calls to allocation|peak heap|peak RSS|total memory leaked)" "$OUT/node.txt" >&2 || true
RECONNECTS=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("churn_reconnects", 0))' "$OUT/swarm.json" 2>/dev/null || echo 0)
echo "HEAP reconnects=$RECONNECTS live_heap_bytes_with_no_client=$LIVE call_sites=$OUT/node.txt swarm_exit=$CODE out=$OUT"
