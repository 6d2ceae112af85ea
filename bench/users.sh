#!/usr/bin/env bash
# Users under load: signed clients, five tabs per person, on a release cluster on this machine
# (one redis-server, USERS_NODES nodes), and what a token costs.
#   verify  rollcall_node::auth::Verifier::verify timed per call for HS256, ES256 and RS256
#           (node/examples/verify_tokens.rs; keys made here with openssl)
#   auth    nodes with auth = "required": USERS_CLIENTS clients sharing USERS_USERS identities
#           (`rollcall swarm --users`, HS256 tokens; a user's tabs share a room) in USERS_ROOMS
#           rooms (zipf, s = 1), connected at USERS_RATE per second, settled (per room on
#           connections and users, cluster-wide on /api/presence unique_users), disconnected
#   anon    the same without auth: anonymous clients, the same rooms, for the Redis comparison
# For each swarm case: its JSON report, the nodes' CPU time and Redis INFO commandstats (reset
# before the swarm starts); a summary on stdout.
#
# Usage: bench/users.sh                (about 6 minutes on 2 cores)
#        USERS_CASES="verify auth" bench/users.sh
# Env:   USERS_CLIENTS (50000), USERS_USERS (10000), USERS_ROOMS (1000), USERS_NODES (4),
#        USERS_RATE (2000), USERS_SEED (1), USERS_SETTLE (60s), USERS_VERIFY_CALLS (20000),
#        USERS_CASES ("verify auth anon"), ROLLCALL_BIN (target/release/rollcall),
#        BENCH_SKIP_BUILD=1.
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
CLIENTS=${USERS_CLIENTS:-50000}
USERS=${USERS_USERS:-10000}
ROOMS=${USERS_ROOMS:-1000}
NODES=${USERS_NODES:-4}
RATE=${USERS_RATE:-2000}
SEED=${USERS_SEED:-1}
SETTLE=${USERS_SETTLE:-60s}
CALLS=${USERS_VERIFY_CALLS:-20000}
CASES=${USERS_CASES:-verify auth anon}
SECRET="bench-users-secret-$RANDOM$RANDOM-long-enough-for-hs256"
WORK=$(mktemp -d /tmp/rollcall-users.XXXXXX)
PIDS=()

# shellcheck source=bench/lib.sh
. bench/lib.sh
wants() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall
  wants verify && cargo build --release -p rollcall-node --example verify_tokens
fi

if wants verify; then
  say "verify: $CALLS verifications per algorithm"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/es256.pem" 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rs256.pem" 2>/dev/null
  "$ROOT/target/release/examples/verify_tokens" "$CALLS" "$WORK/es256.pem" "$WORK/rs256.pem" | tee "$WORK/verify.txt"
fi

node_cpu() {
  local total=0 pid ticks
  for pid in "$@"; do
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ticks))
  done
  echo "$total"
}

# run_case NAME "NODE ENV..." SWARM_ARGS...: fresh Redis and nodes, one swarm burst.
run_case() {
  local name=$1 node_env=$2; shift 2
  wants "$name" || return 0
  local redis_port node_pids=() urls=() i port
  redis_port=$(free_port)
  start_redis "$redis_port" "$WORK/$name-redis.log" --maxclients 10000
  for i in $(seq "$NODES"); do
    port=$(free_port)
    # shellcheck disable=SC2086 # node_env is a list of VAR=value words
    env ROLLCALL_PORT="$port" ROLLCALL_BIND=127.0.0.1 ROLLCALL_REDIS_URL="redis://127.0.0.1:$redis_port" \
      ROLLCALL_NODE_ID="users-$i" ROLLCALL_LOG_LEVEL=warn ROLLCALL_MAX_CONNECTIONS=19000 $node_env \
      "$ROLLCALL" serve >"$WORK/$name-node-$i.log" 2>&1 &
    PIDS+=($!); node_pids+=($!); urls+=(--url "http://127.0.0.1:$port")
  done
  for i in $(seq 2 2 $((2 * NODES))); do
    wait_ready "${urls[$((i - 1))]}"
  done
  sleep 1
  redis-cli -p "$redis_port" config resetstat >/dev/null
  local cpu_before code=0
  cpu_before=$(node_cpu "${node_pids[@]}")
  say "$name: $NODES nodes ($node_env), swarm $*"
  "$ROLLCALL" swarm "${urls[@]}" --clients "$CLIENTS" --rate "$RATE" --rooms "$ROOMS" \
    --room-distribution zipf --zipf-s 1.0 --seed "$SEED" --settle-timeout "$SETTLE" \
    --max-duration 9m "$@" --json >"$WORK/$name.json" 2>"$WORK/$name.err" || code=$?
  echo $(( $(node_cpu "${node_pids[@]}") - cpu_before )) >"$WORK/$name.cpu"
  redis-cli -p "$redis_port" info commandstats >"$WORK/$name.redis"
  echo "$code" >"$WORK/$name.code"
  for pid in "${node_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  sleep 1
}

export ROLLCALL_SWARM_JWT_SECRET="$SECRET"
run_case auth "ROLLCALL_AUTH=required ROLLCALL_JWT_SECRET=$SECRET" --users "$USERS"
run_case anon "ROLLCALL_AUTH=off"

python3 - "$WORK" "$CASES" <<'PY'
import json, os, sys
work, cases = sys.argv[1], sys.argv[2].split()
tck = os.sysconf("SC_CLK_TCK")
per_connect = {}
for name in [c for c in cases if c != "verify"]:
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
    conv = rooms["convergence_ms"]
    ok = max(r["connects_ok"], 1)
    per_connect[name] = sum(calls.values()) / ok
    top = ", ".join(f"{c} {n}" for c, n in sorted(calls.items(), key=lambda kv: -kv[1])[:6])
    print(f"{name}: exit {open(f'{work}/{name}.code').read().strip()}, {r['ending']}, {r['duration_s']:.0f} s, "
          f"{r['connects_ok']}/{r['connects_attempted']} connected at {r['connect_rate']:.0f}/s "
          f"(p50 {r['connect_latency_ms']['p50']:.1f} ms, p99 {r['connect_latency_ms']['p99']:.1f} ms)")
    print(f"  total (refresh users = connections): convergence {r['convergence_ms']} ms, stale {r['stale']}")
    users = r.get("users")
    if users:
        print(f"  unique users: {users['seen']} seen, {users['expected']} expected "
              f"({users['swarm_users']} of {users['identities']} identities), converged {users['converged']} "
              f"after {users['convergence_ms']} ms")
    print(f"  rooms: {rooms['rooms_with_clients']} with clients, largest {rooms['largest_room']} clients; "
          f"convergence (connections{' and users' if users else ''}) p50 {conv['p50']:.0f} ms, "
          f"p99 {conv['p99']:.0f} ms, max {conv['max']:.0f} ms; stale rooms {rooms['stale_rooms']}, "
          f"stale clients {rooms['stale_clients']}, count mismatches {rooms['count_mismatches']}, "
          f"user count mismatches {rooms.get('user_count_mismatches', 0)}")
    print(f"  nodes: {cpu:.1f} CPU s in all ({cpu * 1e6 / ok:.0f} µs per connect+disconnect); Redis: "
          f"{sum(calls.values())} calls ({per_connect[name]:.2f} per connect; evalsha "
          f"{calls.get('evalsha', 0) / ok:.3f}); top {top}")
    print(f"  errors: {r['errors'] or 'none'}")
if "auth" in per_connect and "anon" in per_connect:
    print(f"Redis calls per connect: auth on {per_connect['auth']:.2f}, off {per_connect['anon']:.2f}")
print(f"raw results in {work}")
PY
