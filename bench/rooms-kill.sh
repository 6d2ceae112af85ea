#!/usr/bin/env bash
# SIGKILL of one of 4 nodes whose clients are spread over ~5,000 rooms (issue #11): how long
# until every room's count is exact again on the survivors.
#
# One redis-server and 4 release nodes on this machine. First a swarm against node 4 alone puts
# KILL_VICTIM_CLIENTS clients uniformly over KILL_ROOMS rooms (about 5,000 rooms touched with
# the defaults); once they are counted the rooms are read (GET /api/rooms): that is node 4's
# part (the counts must agree on every node and stay put for 5 s). Then a second swarm puts KILL_CLIENTS clients on nodes 1-3 over the same rooms (zipf);
# once counted the rooms are read again: everything. Node 4 is SIGKILLed, and
# bench/rooms_heal.py polls POST /api/rooms/counts on nodes 1-3 for every room until each
# node shows everything minus node 4's part in every room (and in /api/presence), and checks
# that it stays so. Both swarms hold their clients (scenario hold) and are stopped after.
#
# Usage: bench/rooms-kill.sh            (about 3 minutes on 2 cores)
# Env:   KILL_VICTIM_CLIENTS (7000), KILL_CLIENTS (21000), KILL_ROOMS (10000), KILL_RATE (2000),
#        KILL_TIMEOUT (60: seconds the heal may take), ROLLCALL_BIN (target/release/rollcall),
#        BENCH_SKIP_BUILD=1.
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
VICTIM_CLIENTS=${KILL_VICTIM_CLIENTS:-7000}
CLIENTS=${KILL_CLIENTS:-21000}
ROOMS=${KILL_ROOMS:-10000}
RATE=${KILL_RATE:-2000}
TIMEOUT=${KILL_TIMEOUT:-60}
WORK=$(mktemp -d /tmp/rollcall-rooms-kill.XXXXXX)
HEAL=(python3 "$ROOT/bench/rooms_heal.py")
PIDS=()

BENCH_STOP_SIGNAL=INT
# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall
fi

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT" "$WORK/redis.log" --maxclients 10000

NODE_PIDS=()
URLS=()
for i in 1 2 3 4; do
  port=$(free_port)
  ROLLCALL_PORT=$port ROLLCALL_BIND=127.0.0.1 ROLLCALL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    ROLLCALL_NODE_ID="kill-$i" ROLLCALL_LOG_LEVEL=warn ROLLCALL_MAX_CONNECTIONS=19000 \
    "$ROLLCALL" serve >"$WORK/node-$i.log" 2>&1 &
  PIDS+=($!); NODE_PIDS+=($!); URLS+=("http://127.0.0.1:$port")
done
wait_ready "${URLS[@]}"

swarm() { # swarm NAME SEED DISTRIBUTION CLIENTS URL...
  local name=$1 seed=$2 dist=$3 clients=$4; shift 4
  local urls=() url
  for url in "$@"; do urls+=(--url "$url"); done
  "$ROLLCALL" swarm "${urls[@]}" --clients "$clients" --rate "$RATE" --rooms "$ROOMS" \
    --room-distribution "$dist" --seed "$seed" --scenario hold --duration 10m --settle-timeout 30s \
    --max-duration 12m --json >"$WORK/$name.json" 2>"$WORK/$name.err" &
  PIDS+=($!)
}

say "node 4: $VICTIM_CLIENTS clients, uniform over $ROOMS rooms (work dir $WORK)"
swarm victim 2 uniform "$VICTIM_CLIENTS" "${URLS[3]}"
"${HEAL[@]}" wait "${URLS[@]}" --at-least $((VICTIM_CLIENTS * 9 / 10))
"${HEAL[@]}" snapshot "${URLS[0]}" room- "$WORK/gone.json"

say "nodes 1-3: $CLIENTS clients, zipf over the same rooms"
swarm rest 1 zipf "$CLIENTS" "${URLS[0]}" "${URLS[1]}" "${URLS[2]}"
"${HEAL[@]}" wait "${URLS[@]}" --at-least $(((VICTIM_CLIENTS + CLIENTS) * 9 / 10))
"${HEAL[@]}" snapshot "${URLS[0]}" room- "$WORK/before.json"

kill_ms=$(date +%s%3N)
kill -9 "${NODE_PIDS[3]}"
say "SIGKILLed node 4; polling nodes 1-3"
code=0
"${HEAL[@]}" heal "${URLS[0]}" "${URLS[1]}" "${URLS[2]}" --before "$WORK/before.json" \
  --minus "$WORK/gone.json" --kill-ms "$kill_ms" --timeout "$TIMEOUT" --json "$WORK/heal.json" || code=$?

python3 - "$WORK" "$VICTIM_CLIENTS" "$CLIENTS" <<'PY'
import json, sys
work, victim, rest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = json.load(open(f"{work}/heal.json"))
healed = h["healed"]
print(f"kill: node 4 held {victim} clients in {h['dead_node_rooms']} rooms; nodes 1-3 held {rest}; "
      f"{h['rooms_checked']} rooms checked on 3 survivors per round ({h['rounds']} rounds)")
if healed:
    print(f"  every room exact on every survivor {healed['round_started_s']:.2f}-{healed['round_ended_s']:.2f} s "
          f"after the SIGKILL (the round that first found all exact); /api/presence exact after "
          f"{h['presence_exact_s']:.2f} s; stays exact: {h['stays_exact']}; most wrong rooms in a round {h['worst_mismatches']}")
else:
    print(f"  NOT healed within the timeout; most wrong rooms in a round {h['worst_mismatches']}")
print(f"raw results in {work}")
PY
exit "$code"
