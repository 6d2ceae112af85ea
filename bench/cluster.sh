#!/usr/bin/env bash
# Rooms on one Redis vs on a 3-shard Redis Cluster (3 primaries + 3 replicas), this machine,
# release build, CLUSTER_NODES rollcall nodes, a fresh Redis and fresh nodes per topology:
#   burst     CLUSTER_CLIENTS clients in CLUSTER_ROOMS rooms (zipf 1.0) connected at
#             CLUSTER_RATE per second, settled per room, disconnected: per-room convergence
#             p50/p99 (the swarm's report), per Redis server: CPU seconds (INFO cpu) and calls
#             (INFO commandstats)
#   failover  (cluster only) the same clients held; the primary serving the global slot is
#             SIGKILLed; the time until every node's /api/presence shows the total again (not
#             degraded) and every room's count (POST /api/rooms/counts) equals its count before
#
# Usage: bench/cluster.sh                      both topologies (about 5 minutes on 2 cores)
#        CLUSTER_TOPOLOGIES=cluster bench/cluster.sh
# Env:   CLUSTER_CLIENTS (20000), CLUSTER_ROOMS (2000), CLUSTER_NODES (4), CLUSTER_RATE (2000),
#        CLUSTER_NODE_TIMEOUT_MS (1500: Redis's cluster-node-timeout), CLUSTER_TOPOLOGIES
#        ("single cluster"), ROLLCALL_BIN (target/release/rollcall), BENCH_SKIP_BUILD=1.
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
CLIENTS=${CLUSTER_CLIENTS:-20000}
ROOMS=${CLUSTER_ROOMS:-2000}
NODES=${CLUSTER_NODES:-4}
RATE=${CLUSTER_RATE:-2000}
NODE_TIMEOUT=${CLUSTER_NODE_TIMEOUT_MS:-1500}
TOPOLOGIES=${CLUSTER_TOPOLOGIES:-single cluster}
WORK=$(mktemp -d /tmp/rollcall-cluster-bench.XXXXXX)
PIDS=()

# shellcheck source=bench/lib.sh
. bench/lib.sh

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall
fi

# redis_up PORT [ARGS...]: a redis-server without persistence on PORT; waits for PING.
REDIS_PIDS=()
redis_up() {
  local port=$1; shift
  mkdir -p "$WORK/redis-$port"
  (cd "$WORK/redis-$port" && exec redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --maxclients 10000 "$@" >"$WORK/redis-$port.log" 2>&1) &
  PIDS+=($!); REDIS_PIDS+=("$port:$!")
  wait_until "redis-server on $port" 50 redis-cli -p "$port" ping
}

# cluster_up: six cluster nodes, one replica per primary; sets CLUSTER_PORTS.
cluster_up() {
  CLUSTER_PORTS=()
  local port i
  for i in $(seq 6); do
    port=$(free_port)
    redis_up "$port" --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-node-timeout "$NODE_TIMEOUT" --cluster-port "$(free_port)"
    CLUSTER_PORTS+=("$port")
  done
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") --cluster-replicas 1 \
    --cluster-yes >"$WORK/cluster-create.log" 2>&1
  for _ in $(seq 300); do
    local ok=0
    for port in "${CLUSTER_PORTS[@]}"; do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q cluster_state:ok && ok=$((ok + 1))
    done
    [ "$ok" = 6 ] && return 0
    sleep 0.1
  done
  echo "the cluster did not become ok" >&2; exit 1
}

# primaries_of PORTS...: the ports that are primaries now.
primaries_of() {
  local port
  for port in "$@"; do
    redis-cli -p "$port" role 2>/dev/null | head -1 | grep -q master && echo "$port"
  done
  return 0
}

# redis_snapshot FILE PORTS...: per port "port cpu_seconds calls evalsha" (INFO cpu, commandstats).
redis_snapshot() {
  local file=$1 port; shift
  : >"$file"
  for port in "$@"; do
    redis-cli -p "$port" info all 2>/dev/null | tr -d '\r' | awk -v port="$port" -F'[:,=]' '
      /^used_cpu_sys:/ { cpu += $2 } /^used_cpu_user:/ { cpu += $2 }
      /^cmdstat_/ { calls += $3; if ($1 == "cmdstat_evalsha") evalsha = $3 }
      END { printf "%s %.2f %d %d\n", port, cpu, calls, evalsha }' >>"$file"
  done
}

# nodes_up SETTINGS...: NODES rollcall nodes with the given env settings; sets NODE_PIDS, URLS.
nodes_up() {
  NODE_PIDS=(); URLS=()
  local i port
  for i in $(seq "$NODES"); do
    port=$(free_port)
    env ROLLCALL_PORT="$port" ROLLCALL_BIND=127.0.0.1 ROLLCALL_NODE_ID="bench-$i" ROLLCALL_LOG_LEVEL=warn \
      ROLLCALL_MAX_CONNECTIONS=19000 "$@" "$ROLLCALL" serve >"$WORK/node-$i.log" 2>&1 &
    PIDS+=($!); NODE_PIDS+=($!); URLS+=("http://127.0.0.1:$port")
  done
  wait_ready "${URLS[@]}"
  sleep 1
}

nodes_down() {
  for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 1
}

# burst NAME PORTS...: one swarm burst; its report and the servers' counters before and after.
burst() {
  local name=$1; shift
  local args=() url
  for url in "${URLS[@]}"; do args+=(--url "$url"); done
  redis_snapshot "$WORK/$name.before" "$@"
  say "$name: burst, $CLIENTS clients in $ROOMS rooms over $NODES nodes"
  "$ROLLCALL" swarm "${args[@]}" --clients "$CLIENTS" --rate "$RATE" --rooms "$ROOMS" \
    --room-distribution zipf --zipf-s 1.0 --seed 1 --settle-timeout 60s --max-duration 8m \
    --scenario burst --json >"$WORK/$name.json" 2>"$WORK/$name.err" || true
  redis_snapshot "$WORK/$name.after" "$@"
}

# failover: clients held, the global slot's primary killed, the time until every node is exact.
failover() {
  local args=() url
  for url in "${URLS[@]}"; do args+=(--url "$url"); done
  say "cluster: failover with $CLIENTS clients held"
  "$ROLLCALL" swarm "${args[@]}" --clients "$CLIENTS" --rate "$RATE" --rooms "$ROOMS" \
    --room-distribution zipf --zipf-s 1.0 --seed 2 --settle-timeout 60s --max-duration 8m \
    --scenario hold --duration 60s --json >"$WORK/hold.json" 2>"$WORK/hold.err" &
  local swarm=$!
  PIDS+=($swarm)
  python3 - "$WORK" "$CLIENTS" "$ROOMS" "${CLUSTER_PORTS[*]}" "${URLS[@]}" <<'PY'
import json, subprocess, sys, time, urllib.request
work, clients, rooms, ports, urls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].split(), sys.argv[5:]
names = [f"room-{i}" for i in range(rooms)]

def get(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)

def counts(url):
    out = []
    for i in range(0, len(names), 1000):
        body = json.dumps({"rooms": names[i:i + 1000]}).encode()
        req = urllib.request.Request(f"{url}/api/rooms/counts", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as r:
            out += [c["connections"] for c in json.load(r)["rooms"]]
    return out

def exact(total, expected):
    try:
        for url in urls:
            doc = get(f"{url}/api/presence")
            if doc["users"] != total or doc["degraded"]:
                return False
            if counts(url) != expected:
                return False
        return True
    except Exception:
        return False

deadline = time.time() + 240
while time.time() < deadline:
    try:
        if all(get(f"{u}/api/presence")["users"] == clients for u in urls):
            break
    except Exception:
        pass
    time.sleep(0.5)
else:
    sys.exit("clients never all connected")
time.sleep(3)
before = counts(urls[0])
assert exact(clients, before), "not exact before the kill"
slot = subprocess.check_output(["redis-cli", "-p", ports[0], "cluster", "keyslot", "{rollcall}:agg"], text=True).strip()
victim = None
for line in subprocess.check_output(["redis-cli", "-p", ports[0], "cluster", "nodes"], text=True).splitlines():
    f = line.split()
    if "master" not in f[2] or "fail" in f[2]:
        continue
    for r in f[8:]:
        lo, _, hi = r.partition("-")
        if lo.isdigit() and int(lo) <= int(slot) <= int(hi or lo):
            victim = f[1].split(":")[1].split("@")[0]
pid = subprocess.check_output(["redis-cli", "-p", victim, "info", "server"], text=True)
pid = [l.split(":")[1].strip() for l in pid.splitlines() if l.startswith("process_id:")][0]
subprocess.run(["kill", "-KILL", pid], check=True)
killed = time.time()
while time.time() - killed < 120:
    if exact(clients, before):
        break
    time.sleep(0.05)
healed = time.time() - killed
print(json.dumps({"victim_port": victim, "heal_ms": round(healed * 1000), "exact": exact(clients, before)}))
open(f"{work}/failover.json", "w").write(json.dumps({"victim_port": victim, "heal_ms": round(healed * 1000)}))
PY
  wait "$swarm" || true
}

for topology in $TOPOLOGIES; do
  case $topology in
    single)
      port=$(free_port)
      redis_up "$port"
      nodes_up ROLLCALL_REDIS_URL="redis://127.0.0.1:$port"
      burst single "$port"
      nodes_down
      redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
      ;;
    cluster)
      cluster_up
      nodes_up ROLLCALL_REDIS_CLUSTER_NODES="127.0.0.1:${CLUSTER_PORTS[0]},127.0.0.1:${CLUSTER_PORTS[1]},127.0.0.1:${CLUSTER_PORTS[2]}"
      burst cluster $(primaries_of "${CLUSTER_PORTS[@]}")
      failover
      nodes_down
      ;;
  esac
done

python3 - "$WORK" "$TOPOLOGIES" <<'PY'
import json, os, sys
work, topologies = sys.argv[1], sys.argv[2].split()
for name in topologies:
    try:
        r = json.load(open(f"{work}/{name}.json"))
    except (OSError, ValueError):
        print(f"{name}: no report (see {work}/{name}.err)")
        continue
    rooms, conv = r["rooms"], r["rooms"]["convergence_ms"]
    print(f"{name}: {r['ending']}, {r['connects_ok']}/{r['connects_attempted']} connected at {r['connect_rate']:.0f}/s; "
          f"total convergence {r['convergence_ms']} ms; rooms {rooms['rooms_with_clients']} with clients, "
          f"convergence p50 {conv['p50']:.0f} ms, p99 {conv['p99']:.0f} ms, max {conv['max']:.0f} ms; "
          f"stale rooms {rooms['stale_rooms']}, mismatches {rooms['count_mismatches']}; errors {r['errors'] or 'none'}")
    before = {l.split()[0]: l.split()[1:] for l in open(f"{work}/{name}.before")}
    after = {l.split()[0]: l.split()[1:] for l in open(f"{work}/{name}.after")}
    secs = r["duration_s"] or 1
    for port, (cpu, calls, evalsha) in sorted(after.items()):
        b = before.get(port, ["0", "0", "0"])
        print(f"  redis :{port}: CPU {float(cpu) - float(b[0]):.1f} s, {int(calls) - int(b[1])} calls "
              f"({(int(calls) - int(b[1])) / secs:.0f}/s over {secs:.0f} s), evalsha {int(evalsha) - int(b[2])}")
if os.path.exists(f"{work}/failover.json"):
    f = json.load(open(f"{work}/failover.json"))
    print(f"cluster failover: primary :{f['victim_port']} (global slot) SIGKILLed; every node exact after {f['heal_ms']} ms")
print(f"raw results in {work}")
PY
