#!/usr/bin/env bash
# Rooms under load: `rollcall swarm --rooms` against a release cluster on this machine (one
# redis-server, ROOMS_NODES nodes), two cases, each on a fresh Redis and fresh nodes:
#   burst  ROOMS_CLIENTS clients in ROOMS_ROOMS rooms (zipf, s = ROOMS_ZIPF_S), connected at
#          ROOMS_RATE per second, settled (per-room convergence), disconnected
#   move   the same clients and rooms, then ROOMS_MOVES moves per second (leave + join by
#          event) for ROOMS_MOVE_SECONDS, settled per room again
# For each: the swarm's JSON report, the nodes' CPU time (/proc/PID/stat), Redis INFO
# commandstats and SLOWLOG (calls of 50 ms or more), and once a second the nodes' RSS and Redis
# used_memory; a summary on stdout
# (connect rate, per-room convergence p50/p99/max, stale rooms, `room users` per client, moves,
# node CPU, Redis calls per connect and per second, node RSS per connection and Redis memory
# per room at the peak).
#
# A node may hold at most ROOMS_MAX_CONNECTIONS sockets (each is an open file; a process may
# open 20,000 here), so ROOMS_CLIENTS / ROOMS_NODES must stay below it.
#
# Usage: bench/rooms.sh                 both cases (about 4 minutes on 2 cores)
#        ROOMS_CASES=burst bench/rooms.sh
# Env:   ROOMS_CLIENTS (20000), ROOMS_ROOMS (2000), ROOMS_ZIPF_S (1.0), ROOMS_NODES (4),
#        ROOMS_RATE (2000), ROOMS_MOVES (500), ROOMS_MOVE_SECONDS (60), ROOMS_SEED (1),
#        ROOMS_CASES ("burst move"), ROOMS_SETTLE (30s), ROOMS_MAX_CONNECTIONS (19000),
#        ROLLCALL_BIN (target/release/rollcall),
#        BENCH_SKIP_BUILD=1.
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
CLIENTS=${ROOMS_CLIENTS:-20000}
ROOMS=${ROOMS_ROOMS:-2000}
ZIPF_S=${ROOMS_ZIPF_S:-1.0}
NODES=${ROOMS_NODES:-4}
RATE=${ROOMS_RATE:-2000}
MOVES=${ROOMS_MOVES:-500}
MOVE_SECONDS=${ROOMS_MOVE_SECONDS:-60}
SEED=${ROOMS_SEED:-1}
SETTLE=${ROOMS_SETTLE:-30s}
CASES=${ROOMS_CASES:-burst move}
MAX_CONNECTIONS=${ROOMS_MAX_CONNECTIONS:-19000}
WORK=$(mktemp -d /tmp/rollcall-rooms.XXXXXX)
PIDS=()

# shellcheck source=bench/lib.sh
. bench/lib.sh

if ! command -v redis-server >/dev/null; then
  say "installing redis-server"
  sudo_=(); [ "$(id -u)" -eq 0 ] || sudo_=(sudo)
  "${sudo_[@]}" apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall
fi

# node_cpu PIDS...: the nodes' user+system CPU ticks, summed.
node_cpu() {
  local total=0 pid ticks
  for pid in "$@"; do
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  echo "$total"
}

# sample REDIS_PORT OUT PIDS...: every second, "<redis used_memory> <nodes' summed RSS kB>" to OUT
sample() {
  local port=$1 out=$2 pid rss mem; shift 2
  while :; do
    rss=0
    for pid in "$@"; do
      rss=$((rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    mem=$(redis-cli -p "$port" info memory 2>/dev/null | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
    echo "${mem:-0} $rss" >>"$out"
    sleep 1
  done
}

# run_case NAME SWARM_ARGS...: a fresh Redis and fresh nodes, one swarm run, results in $WORK/NAME.*
run_case() {
  local name=$1; shift
  case " $CASES " in *" $name "*) ;; *) return 0 ;; esac
  local redis_port node_pids=() urls=() i port
  redis_port=$(free_port)
  start_redis "$redis_port" "$WORK/$name-redis.log" --maxclients 10000
  # Every call that blocked Redis for 50 ms or more (a script blocks every other client).
  redis-cli -p "$redis_port" config set slowlog-log-slower-than 50000 >/dev/null
  redis-cli -p "$redis_port" config set slowlog-max-len 10000 >/dev/null
  for i in $(seq "$NODES"); do
    port=$(free_port)
    ROLLCALL_PORT=$port ROLLCALL_BIND=127.0.0.1 ROLLCALL_REDIS_URL="redis://127.0.0.1:$redis_port" \
      ROLLCALL_NODE_ID="rooms-$i" ROLLCALL_LOG_LEVEL=warn ROLLCALL_MAX_CONNECTIONS="$MAX_CONNECTIONS" \
      "$ROLLCALL" serve >"$WORK/$name-node-$i.log" 2>&1 &
    PIDS+=($!); node_pids+=($!); urls+=(--url "http://127.0.0.1:$port")
  done
  for i in $(seq 2 2 $((2 * NODES))); do
    wait_ready "${urls[$((i - 1))]}"
  done
  sleep 1
  redis-cli -p "$redis_port" config resetstat >/dev/null
  local cpu_before code=0 sampler
  cpu_before=$(node_cpu "${node_pids[@]}")
  sample "$redis_port" "$WORK/$name.samples" "${node_pids[@]}" &
  sampler=$!
  PIDS+=("$sampler")
  say "$name: $NODES nodes, swarm $*"
  "$ROLLCALL" swarm "${urls[@]}" --clients "$CLIENTS" --rate "$RATE" --rooms "$ROOMS" \
    --room-distribution zipf --zipf-s "$ZIPF_S" --seed "$SEED" --settle-timeout "$SETTLE" \
    --max-duration 15m "$@" --json >"$WORK/$name.json" 2>"$WORK/$name.err" || code=$?
  echo $(( $(node_cpu "${node_pids[@]}") - cpu_before )) >"$WORK/$name.cpu"
  redis-cli -p "$redis_port" info commandstats >"$WORK/$name.redis"
  redis-cli -p "$redis_port" --json slowlog get 10000 >"$WORK/$name.slowlog" 2>/dev/null || true
  kill "$sampler" 2>/dev/null || true
  echo "$code" >"$WORK/$name.code"
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  sleep 1
}

run_case burst --scenario burst
run_case move --scenario move --move-rate "$MOVES" --duration "${MOVE_SECONDS}s"

python3 - "$WORK" "$CASES" <<'PY'
import json, os, sys
work, cases = sys.argv[1], sys.argv[2].split()
tck = os.sysconf("SC_CLK_TCK")
for name in cases:
    try:
        r = json.load(open(f"{work}/{name}.json"))
    except (OSError, ValueError):
        print(f"{name}: no report (see {work}/{name}.err)")
        continue
    rooms, calls = r["rooms"], {}
    for line in open(f"{work}/{name}.redis"):
        if line.startswith("cmdstat_"):
            cmd, rest = line.strip()[8:].split(":", 1)
            calls[cmd] = int(dict(kv.split("=") for kv in rest.split(","))["calls"])
    cpu = int(open(f"{work}/{name}.cpu").read()) / tck
    conv, moves, msgs = rooms["convergence_ms"], rooms["moves"], rooms["room_messages_per_client"]
    ok = max(r["connects_ok"], 1)
    top = ", ".join(f"{c} {n}" for c, n in sorted(calls.items(), key=lambda kv: -kv[1])[:6])
    print(f"{name}: exit {open(f'{work}/{name}.code').read().strip()}, {r['ending']}, {r['duration_s']:.0f} s, "
          f"{r['connects_ok']}/{r['connects_attempted']} connected at {r['connect_rate']:.0f}/s "
          f"(p50 {r['connect_latency_ms']['p50']:.1f} ms, p99 {r['connect_latency_ms']['p99']:.1f} ms)")
    print(f"  total: convergence {r['convergence_ms']} ms, stale {r['stale']}")
    print(f"  rooms: {rooms['rooms_with_clients']} with clients, largest {rooms['largest_room']}; "
          f"convergence p50 {conv['p50']:.0f} ms, p99 {conv['p99']:.0f} ms, max {conv['max']:.0f} ms; "
          f"stale rooms {rooms['stale_rooms']}, stale clients {rooms['stale_clients']}, "
          f"count mismatches {rooms['count_mismatches']}")
    slow = ", ".join(f"{room['room']} ({room['clients']} clients) {room['convergence_ms']:.0f} ms" for room in rooms["slowest_rooms"][:3])
    print(f"  slowest rooms: {slow or 'none'}")
    print(f"  room users per client: mean {msgs['mean']:.1f}, max {msgs['max']}; "
          f"refresh users per client: mean {r['refresh_messages_per_client']['mean']:.1f}")
    if moves["attempted"]:
        print(f"  moves: {moves['ok']} ok, {moves['failed']} failed of {moves['attempted']}; "
              f"latency p50 {moves['latency_ms']['p50']:.1f} ms, p99 {moves['latency_ms']['p99']:.1f} ms")
    print(f"  nodes: {cpu:.1f} CPU s in all; Redis: {sum(calls.values())} calls "
          f"({sum(calls.values()) / ok:.2f} per connect; evalsha {calls.get('evalsha', 0) / ok:.3f} per connect); top {top}")
    try:
        samples = [tuple(int(x) for x in line.split()) for line in open(f"{work}/{name}.samples") if len(line.split()) == 2]
    except OSError:
        samples = []
    if samples:
        mem0, rss0 = samples[0]
        peak_mem, peak_rss = max(m for m, _ in samples), max(k for _, k in samples)
        per_room = (peak_mem - mem0) / max(rooms["rooms_with_clients"], 1)
        per_conn = (peak_rss - rss0) / max(r["peak_connected"], 1)
        print(f"  memory at the peak: Redis +{(peak_mem - mem0) / 1e6:.1f} MB ({per_room:.0f} B per room with clients); "
              f"nodes +{(peak_rss - rss0) / 1e3:.0f} MB RSS ({per_conn:.1f} kB per connection, rooms included)")
    print(f"  Redis calls per second: {sum(calls.values()) / max(r['duration_s'], 1e-9):.0f} "
          f"(evalsha {calls.get('evalsha', 0) / max(r['duration_s'], 1e-9):.0f}) over {r['duration_s']:.0f} s")
    try:
        slow = json.load(open(f"{work}/{name}.slowlog"))
    except (OSError, ValueError):
        slow = []
    if slow:
        worst = max(slow, key=lambda e: e[2])
        print(f"  Redis blocked >= 50 ms {len(slow)} times, {sum(e[2] for e in slow) / 1e6:.1f} s in all; "
              f"longest {worst[2] / 1e3:.0f} ms ({' '.join(str(a) for a in worst[3][:2])}, {len(str(worst[3]))} chars of arguments)")
    print(f"  errors: {r['errors'] or 'none'}")
print(f"raw results in {work}")
PY
