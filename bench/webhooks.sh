#!/usr/bin/env bash
# Webhooks under load (issue #13): a release cluster on this machine (one redis-server,
# HOOKS_NODES nodes with `auth = optional` and webhooks on) and bench/webhook_receiver.py as the
# receiver; `rollcall swarm --users HOOKS_CLIENTS --jwt-secret` signs HOOKS_CLIENTS clients in as distinct users in
# HOOKS_ROOMS rooms (zipf) and moves HOOKS_MOVES of them per second for HOOKS_MOVE_SECONDS, then
# disconnects all (every room then vacates). Cases, each on a fresh Redis, nodes and receiver:
#   steady   receiver up all the time
#   outage   the receiver process is stopped HOOKS_OUTAGE_AT seconds into the moves and started
#            again HOOKS_OUTAGE_SECONDS later (connection refused meanwhile)
#   kill     a receiver answering after HOOKS_SLOW_MS (so batches are in flight); the node
#            holding the most group leases is SIGKILLed HOOKS_KILL_AT seconds into the moves
# After the swarm, the script waits until every group's stream is empty and nothing pending,
# then bench/webhook_check.py judges what the receiver got: lost (produced - distinct),
# duplicates, order per room, complete occupied/vacated and joined/left stories, delay from
# the change (the event's `at`, Redis TIME of the step) to the receiver, events per second,
# and (kill) how long after the kill each of the killed node's groups was delivered again.
#
# Usage: bench/webhooks.sh                      all three cases (about 8 minutes on 2 cores)
#        HOOKS_CASES="outage" bench/webhooks.sh
# Env:   HOOKS_CLIENTS (20000), HOOKS_ROOMS (2000), HOOKS_NODES (3), HOOKS_RATE (2000),
#        HOOKS_MOVES (500), HOOKS_MOVE_SECONDS (60), HOOKS_OUTAGE_AT (15), HOOKS_OUTAGE_SECONDS (20),
#        HOOKS_KILL_AT (20), HOOKS_SLOW_MS (200), HOOKS_SEED (1), HOOKS_CASES ("steady outage kill"),
#        ROLLCALL_BIN (target/release/rollcall), BENCH_SKIP_BUILD=1.
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
CLIENTS=${HOOKS_CLIENTS:-20000}
ROOMS=${HOOKS_ROOMS:-2000}
NODES=${HOOKS_NODES:-3}
RATE=${HOOKS_RATE:-2000}
MOVES=${HOOKS_MOVES:-500}
MOVE_SECONDS=${HOOKS_MOVE_SECONDS:-60}
OUTAGE_AT=${HOOKS_OUTAGE_AT:-15}
OUTAGE_SECONDS=${HOOKS_OUTAGE_SECONDS:-20}
KILL_AT=${HOOKS_KILL_AT:-20}
SLOW_MS=${HOOKS_SLOW_MS:-200}
SEED=${HOOKS_SEED:-1}
CASES=${HOOKS_CASES:-steady outage kill}
SECRET=bench-webhook-secret-0123456789
JWT=bench-jwt-secret-0123456789abcdef0123456789
WORK=$(mktemp -d /tmp/rollcall-hooks.XXXXXX)
PIDS=()

# shellcheck source=bench/lib.sh
. bench/lib.sh
now_ms() { date +%s%3N; }

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall
fi

# start_receiver NAME PORT DELAY_MS: appends to $WORK/NAME.events; its PID in RECEIVER
start_receiver() {
  python3 "$ROOT/bench/webhook_receiver.py" --port "$2" --secret "$SECRET" --out "$WORK/$1.events" \
    --delay-ms "$3" 2>>"$WORK/$1-receiver.log" &
  RECEIVER=$!
  PIDS+=("$RECEIVER")
  for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$2/" 2>/dev/null && break
    sleep 0.1
  done
}

# presence_users URL: the cluster total a node shows (empty when unknown)
presence_users() {
  curl -fsS "$1/api/presence" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["users"])' 2>/dev/null || true
}

# produced URL...: the sum of rollcall_webhook_events_produced_total over these nodes
produced() {
  local url total=0 n
  for url in "$@"; do
    n=$(curl -fsS "$url/metrics" 2>/dev/null |
      awk '/^rollcall_webhook_events_produced_total/ {s += $NF} END {printf "%d", s}')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

# backlog REDIS_PORT: undelivered + pending events over all groups' streams
backlog() {
  local port=$1 total=0 key n p
  for key in $(redis-cli -p "$port" --scan --pattern '{rollcall:g*}:events'); do
    n=$(redis-cli -p "$port" xlen "$key")
    p=$(redis-cli -p "$port" xpending "$key" rollcall 2>/dev/null | head -1)
    total=$((total + n + ${p:-0}))
  done
  echo "$total"
}

# watch REDIS_PORT NAME: every 200 ms, the 16 groups' lease holders (a line per change:
# "<ms> <group> <holder>" in NAME.leases) and every second "<ms> <stream entries> <used_memory>"
# in NAME.samples
watch_redis() {
  local port=$1 name=$2 keys=() g tick=0 prev=() now holders line
  for g in $(seq 0 15); do keys+=("{rollcall:g$g}:lease"); done
  while :; do
    now=$(now_ms)
    mapfile -t holders < <(redis-cli -p "$port" mget "${keys[@]}" 2>/dev/null)
    if [ "${#holders[@]}" = 16 ]; then
      for g in $(seq 0 15); do
        [ "${holders[$g]}" != "${prev[$g]:-}" ] && echo "$now $g ${holders[$g]:-none}" >>"$WORK/$name.leases"
      done
      prev=("${holders[@]}")
    fi
    if [ $((tick % 5)) = 0 ]; then
      line=$(for g in $(seq 0 15); do redis-cli -p "$port" xlen "{rollcall:g$g}:events"; done 2>/dev/null |
        awk '{s += $1} END {print s + 0}')
      echo "$now $line $(redis-cli -p "$port" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')" \
        >>"$WORK/$name.samples"
    fi
    tick=$((tick + 1))
    sleep 0.2
  done
}

# xadds REDIS_PORT: events the scripts appended (every event is one XADD inside a script)
xadds() {
  redis-cli -p "$1" info commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_xadd:/ {print $3}'
}

run_case() {
  local name=$1
  case " $CASES " in *" $name "*) ;; *) return 0 ;; esac
  local redis_port rport node_pids=() node_ids=() urls=() url_list=() i port delay=0
  [ "$name" = kill ] && delay=$SLOW_MS
  redis_port=$(free_port)
  start_redis "$redis_port" "$WORK/$name-redis.log" --maxclients 10000
  rport=$(free_port)
  start_receiver "$name" "$rport" "$delay"
  for i in $(seq "$NODES"); do
    port=$(free_port)
    ROLLCALL_PORT=$port ROLLCALL_BIND=127.0.0.1 ROLLCALL_REDIS_URL="redis://127.0.0.1:$redis_port" \
      ROLLCALL_NODE_ID="hooks-$i" ROLLCALL_LOG_LEVEL=warn ROLLCALL_MAX_CONNECTIONS=19000 \
      ROLLCALL_AUTH=optional ROLLCALL_JWT_SECRET="$JWT" \
      ROLLCALL_WEBHOOK_URL="http://127.0.0.1:$rport/hook" ROLLCALL_WEBHOOK_SECRET="$SECRET" \
      "$ROLLCALL" serve >"$WORK/$name-node-$i.log" 2>&1 &
    PIDS+=($!); node_pids+=($!); node_ids+=("hooks-$i")
    urls+=(--url "http://127.0.0.1:$port"); url_list+=("http://127.0.0.1:$port")
  done
  wait_ready "${url_list[@]}"
  watch_redis "$redis_port" "$name" &
  local watcher=$!
  PIDS+=("$watcher")
  say "$name: $NODES nodes, $CLIENTS signed clients in $ROOMS rooms, $MOVES moves/s for ${MOVE_SECONDS}s (work dir $WORK)"
  local swarm code=0
  "$ROLLCALL" swarm "${urls[@]}" --clients "$CLIENTS" --rate "$RATE" --rooms "$ROOMS" \
    --room-distribution zipf --seed "$SEED" --scenario move --move-rate "$MOVES" \
    --duration "${MOVE_SECONDS}s" --users "$CLIENTS" --jwt-secret "$JWT" --settle-timeout 30s --max-duration 8m \
    --json >"$WORK/$name.json" 2>"$WORK/$name.err" &
  swarm=$!
  PIDS+=("$swarm")
  # Wait until every client is connected: the moves start right after the swarm settles.
  for _ in $(seq 600); do
    [ "$(presence_users "${url_list[0]}")" = "$CLIENTS" ] && break
    sleep 0.2
  done
  local args=(--produced 0)
  case $name in
    outage)
      sleep "$OUTAGE_AT"
      local down up
      down=$(now_ms); kill "$RECEIVER"; wait "$RECEIVER" 2>/dev/null || true
      say "receiver down for ${OUTAGE_SECONDS}s"
      sleep "$OUTAGE_SECONDS"
      up=$(now_ms); start_receiver "$name" "$rport" 0
      echo "$down $up" >"$WORK/$name.outage"
      ;;
    kill)
      sleep "$KILL_AT"
      local holders victim victim_i groups kill_ms victim_produced
      holders=$(for g in $(seq 0 15); do echo "$g $(redis-cli -p "$redis_port" get "{rollcall:g$g}:lease")"; done)
      victim=$(echo "$holders" | awk '{print $2}' | sort | uniq -c | sort -rn | awk 'NR == 1 {print $2}')
      groups=$(echo "$holders" | awk -v v="$victim" '$2 == v {print $1}' | paste -sd, -)
      victim_i=${victim#hooks-}
      victim_produced=$(produced "${url_list[$((victim_i - 1))]}")
      kill_ms=$(now_ms)
      kill -9 "${node_pids[$((victim_i - 1))]}"
      say "SIGKILLed $victim (held groups $groups; it had produced $victim_produced events)"
      echo "$victim $groups $kill_ms $victim_produced" >"$WORK/$name.kill"
      unset 'url_list[victim_i-1]'
      url_list=("${url_list[@]}")
      ;;
  esac
  wait "$swarm" || code=$?
  echo "$code" >"$WORK/$name.code"
  # Drain: every group's stream empty and nothing pending, and nothing new for 10 s (a vacancy
  # is produced up to webhook_vacated_delay_ms + 5 heartbeats after the room empties); bounded.
  local left=1 last
  for _ in $(seq 180); do
    sleep 1
    left=$(backlog "$redis_port")
    last=$(stat -c %Y "$WORK/$name.events" 2>/dev/null || echo 0)
    [ "$left" = 0 ] && [ $(( $(date +%s) - last )) -ge 10 ] && break
  done
  kill "$watcher" 2>/dev/null || true
  local total metric
  total=$(xadds "$redis_port")
  metric=$(produced "${url_list[@]}")
  [ -f "$WORK/$name.kill" ] && metric=$((metric + $(awk '{print $4}' "$WORK/$name.kill")))
  local dead
  dead=$(for g in $(seq 0 15); do redis-cli -p "$redis_port" xlen "{rollcall:g$g}:dead" 2>/dev/null; done | awk '{s += $1} END {print s + 0}')
  local mem
  mem=$(redis-cli -p "$redis_port" info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
  {
    echo "$name: swarm exit $code, backlog at the end $left, dead-lettered $dead, Redis used_memory at the end $mem B"
    python3 - "$WORK/$name.json" "$WORK/$name.samples" "$WORK/$name.leases" "$metric" "$total" "$WORK/$name.kill" <<'PY'
import json, os, sys
report, samples, leases, metric, xadds, killfile = sys.argv[1:]
try:
    r = json.load(open(report))
    m = (r.get("rooms") or {}).get("moves", {})
    print(f"  swarm: {r['connects_ok']}/{r['connects_attempted']} connected at {r['connect_rate']:.0f}/s, "
          f"moves {m.get('ok')} ok {m.get('failed')} failed, {r['duration_s']:.0f} s, ending {r['ending']}, "
          f"errors {r['errors'] or 'none'}")
except (OSError, ValueError, KeyError) as error:
    print(f"  swarm: no report ({error})")
rows = [tuple(float(x) for x in line.split()) for line in open(samples) if len(line.split()) == 3]
if rows:
    print(f"  streams: peak {max(n for _, n, _ in rows):.0f} undelivered events; Redis used_memory "
          f"{rows[0][2] / 1e6:.1f} MB at the start, peak {max(m for _, _, m in rows) / 1e6:.1f} MB")
changes = [line.split() for line in open(leases)]
first = {}
moved = 0
for ms, group, holder in changes:
    if group in first and holder != "none":
        moved += 1
    first.setdefault(group, holder)
print(f"  leases: {len(first)} groups; holder changes after the first holder {moved}; "
      f"produced {xadds} (XADD calls), rollcall_webhook_events_produced_total {metric}")
if os.path.exists(killfile):
    victim, groups, kill_ms, _ = open(killfile).read().split()
    taken = {}
    for ms, group, holder in changes:
        if group in groups.split(",") and float(ms) > float(kill_ms) and holder not in (victim, "none"):
            taken.setdefault(group, float(ms) - float(kill_ms))
    waits = sorted(taken.values())
    if waits:
        print(f"  lease takeover after the SIGKILL: {len(waits)} of {len(groups.split(','))} groups taken over, "
              f"after {waits[0] / 1000:.2f}-{waits[-1] / 1000:.2f} s (polled every 0.2 s)")
PY
  } | tee "$WORK/$name.summary"
  args=(--produced "$total" --json "$WORK/$name.check.json")
  if [ -f "$WORK/$name.outage" ]; then
    args+=(--window "$(awk '{print $1 "," $2}' "$WORK/$name.outage")")
    echo "  receiver down $(awk '{print ($2 - $1) / 1000}' "$WORK/$name.outage") s" | tee -a "$WORK/$name.summary"
  fi
  if [ -f "$WORK/$name.kill" ]; then
    args+=(--kill-ms "$(awk '{print $3}' "$WORK/$name.kill")" --groups "$(awk '{print $2}' "$WORK/$name.kill")")
    echo "  killed $(awk '{print $1 " holding groups " $2}' "$WORK/$name.kill"); its produced count read just before the kill" |
      tee -a "$WORK/$name.summary"
  fi
  python3 "$ROOT/bench/webhook_check.py" "$WORK/$name.events" "${args[@]}" | tee -a "$WORK/$name.summary"
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  kill "$RECEIVER" 2>/dev/null || true
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  sleep 1
}

run_case steady
run_case outage
run_case kill
say "raw results in $WORK"
