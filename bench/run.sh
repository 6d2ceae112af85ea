#!/usr/bin/env bash
# Benchmarks rollcall against the Node reference (bench/reference: socket.io + redis adapter +
# INCR/DECR + io.emit on every change) with `rollcall swarm`, and writes BENCHMARKS.md.
#
# Scenarios (each on a fresh redis-server and fresh nodes, everything on 127.0.0.1):
#   burst  10,000 clients on 3 nodes                      (rollcall and reference)
#   hold   50,000 clients on 4 nodes for 30 s             (rollcall; the reference's O(N^2)
#                                                          emits make it impractical, see below)
#   hold    2,000 clients on 4 nodes for 30 s at 200/s    (both: idle memory per connection)
#   churn  10,000 clients on 3 nodes, 200 reconnects/s for 30 s  (rollcall and reference)
# For each: the swarm's JSON report, every node's RSS and CPU time (/proc/PID/status, stat),
# and Redis INFO commandstats (commands per connect).
#
# Usage: bench/run.sh            full run (about 15-25 minutes on 2 cores)
#        BENCH_QUICK=1 bench/run.sh   a smoke run with 1/10 of the clients
# Env:   BENCH_OUT (default BENCHMARKS.md), ROLLCALL_BIN (default target/release/rollcall),
#        SWARM_BIN (the binary whose `swarm` subcommand runs the load; default ROLLCALL_BIN),
#        BENCH_MAX_SECONDS (bound of one swarm run, default 300), BENCH_SKIP_BUILD=1,
#        BENCH_CASES (names of the cases to run, default all of them).
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
SWARM=${SWARM_BIN:-$ROLLCALL}
MAX_SECONDS=${BENCH_MAX_SECONDS:-300}
SCALE=1
[ "${BENCH_QUICK:-0}" = 1 ] && SCALE=10
WORK=$(mktemp -d /tmp/rollcall-bench.XXXXXX)
PIDS=()

# shellcheck source=bench/lib.sh
. bench/lib.sh

# --- prerequisites ---------------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo_=(); [ "$(id -u)" -eq 0 ] || sudo_=(sudo)
  "${sudo_[@]}" apt-get update -qq
  "${sudo_[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -d bench/reference/node_modules ]; then
  say "npm ci (bench/reference)"
  (cd bench/reference && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall
fi

# --- processes -------------------------------------------------------------------------------
REDIS_PORT=
NODE_PIDS=()
NODE_URLS=()
SAMPLER=

fresh_redis() {
  REDIS_PORT=$(free_port)
  start_redis "$REDIS_PORT" "$WORK/redis-$REDIS_PORT.log" --maxclients 10000
}

# start_nodes SYSTEM COUNT: starts the nodes and waits until each answers /api/presence.
start_nodes() {
  local system=$1 count=$2 i port
  NODE_PIDS=(); NODE_URLS=()
  for i in $(seq "$count"); do
    port=$(free_port)
    if [ "$system" = rollcall ]; then
      ROLLCALL_PORT=$port ROLLCALL_BIND=127.0.0.1 ROLLCALL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        ROLLCALL_NODE_ID="bench-$i" ROLLCALL_LOG_LEVEL=warn ROLLCALL_MAX_CONNECTIONS=19000 \
        "$ROLLCALL" serve >"$WORK/$system-$i.log" 2>&1 &
    else
      PORT=$port HOST=127.0.0.1 REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
        node bench/reference/server.js >"$WORK/$system-$i.log" 2>&1 &
    fi
    PIDS+=($!); NODE_PIDS+=($!); NODE_URLS+=("http://127.0.0.1:$port")
  done
  for url in "${NODE_URLS[@]}"; do
    for _ in $(seq 100); do curl -fsS "$url/api/presence" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -fsS "$url/api/presence" >/dev/null || { echo "node $url did not start" >&2; exit 1; }
  done
}

# Samples every node's RSS (kB) and CPU ticks twice a second: "time pid rss utime stime".
start_sampler() {
  local file=$1
  (
    while true; do
      for pid in "${NODE_PIDS[@]}"; do
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        cpu=$(awk '{print $14, $15}' "/proc/$pid/stat" 2>/dev/null || echo "0 0")
        echo "$(date +%s.%N) $pid ${rss:-0} $cpu"
      done
      sleep 0.5
    done
  ) >"$file" &
  SAMPLER=$!
  PIDS+=($SAMPLER)
}

stop_all() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  for pid in "${NODE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${NODE_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  done
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  SAMPLER=; NODE_PIDS=()
}

# run_case NAME SYSTEM NODES SWARM_ARGS...: one scenario on one system, results in $WORK/NAME.*
run_case() {
  local name=$1 system=$2 nodes=$3; shift 3
  case " ${BENCH_CASES:-$name} " in *" $name "*) ;; *) return 0 ;; esac
  say "$name: $system, $nodes nodes: swarm $*"
  fresh_redis
  start_nodes "$system" "$nodes"
  sleep 2
  start_sampler "$WORK/$name.samples"
  sleep 1.5
  redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
  local urls=() url
  for url in "${NODE_URLS[@]}"; do urls+=(--url "$url"); done
  local code=0 swarm_pid
  timeout --signal=INT $((MAX_SECONDS + 60)) "$SWARM" swarm "${urls[@]}" "$@" --json \
    --max-duration "${MAX_SECONDS}s" >"$WORK/$name.json" 2>"$WORK/$name.err" &
  swarm_pid=$!
  PIDS+=($swarm_pid)
  wait "$swarm_pid" || code=$?
  redis-cli -p "$REDIS_PORT" info commandstats >"$WORK/$name.redis" 2>/dev/null || true
  echo "$code" >"$WORK/$name.code"
  printf '%s\n' "$system" "$nodes" \
    "rollcall swarm $(printf -- '--url %s ' "${NODE_URLS[@]}")$* --json --max-duration ${MAX_SECONDS}s" \
    >"$WORK/$name.meta"
  stop_all
  echo "   exit code $code; $(head -c 300 "$WORK/$name.json")" >&2
}

N_BURST=$((10000 / SCALE)); N_HOLD=$((50000 / SCALE)); N_CHURN=$((10000 / SCALE))
N_SMALL=$((2000 / SCALE))
CHURN_RATE=$((200 / SCALE))
BURST=(--scenario burst --clients "$N_BURST" --rate 1000)
HOLD=(--scenario hold --clients "$N_HOLD" --rate 2000 --duration 30s)
SMALL=(--scenario hold --clients "$N_SMALL" --rate 200 --duration 30s)
CHURN=(--scenario churn --clients "$N_CHURN" --rate 1000 --churn-rate "$CHURN_RATE" --duration 30s)

run_case burst-rollcall rollcall 3 "${BURST[@]}"
run_case burst-reference reference 3 "${BURST[@]}"
run_case hold-rollcall rollcall 4 "${HOLD[@]}"
run_case small-hold-rollcall rollcall 4 "${SMALL[@]}"
run_case small-hold-reference reference 4 "${SMALL[@]}"
run_case churn-rollcall rollcall 3 "${CHURN[@]}"
run_case churn-reference reference 3 "${CHURN[@]}"

say "writing $OUT"
python3 - "$WORK" "$OUT" "$N_HOLD" <<'PY'
import json, os, platform, subprocess, sys
work, out, n_hold = sys.argv[1], sys.argv[2], int(sys.argv[3])
tck = os.sysconf("SC_CLK_TCK")

def load(name):
    try:
        with open(f"{work}/{name}.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def node_stats(name):
    """Per node: first and peak RSS, CPU seconds over the run; summed over nodes."""
    per = {}
    try:
        for line in open(f"{work}/{name}.samples"):
            parts = line.split()
            if len(parts) != 5 or parts[2] == "0":
                continue
            _, pid, rss, ut, st = parts
            cpu = (int(ut) + int(st)) / tck
            p = per.setdefault(pid, {"rss0": int(rss), "peak": 0, "cpu0": cpu, "cpu": cpu})
            p["peak"] = max(p["peak"], int(rss)); p["cpu"] = cpu
    except OSError:
        pass
    return {
        "idle_kb": sum(p["rss0"] for p in per.values()),
        "peak_kb": sum(p["peak"] for p in per.values()),
        "cpu_s": sum(p["cpu"] - p["cpu0"] for p in per.values()),
    }

# Commands a client sends itself. When scripts ran (rollcall), every other command in
# commandstats was executed inside a script and cost no network round trip.
TOP_LEVEL = {"evalsha", "eval", "evalsha_ro", "eval_ro", "script", "ping", "subscribe", "hello",
             "client", "select", "info", "config"}

def redis_calls(name):
    total, top, calls_by_cmd = 0, [], {}
    try:
        for line in open(f"{work}/{name}.redis"):
            if line.startswith("cmdstat_"):
                cmd, rest = line.strip()[8:].split(":", 1)
                calls = int(dict(kv.split("=") for kv in rest.split(","))["calls"])
                total += calls; top.append((calls, cmd)); calls_by_cmd[cmd] = calls
    except (OSError, KeyError, ValueError):
        pass
    scripted = any(c in calls_by_cmd for c in ("evalsha", "eval"))
    trips = sum(n for c, n in calls_by_cmd.items() if c in TOP_LEVEL) if scripted else total
    return total, trips, sorted(top, reverse=True)[:4]

def fmt(value, spec="{:.0f}"):
    return "n/a" if value is None else spec.format(value)

def row(name):
    r = load(name)
    meta = open(f"{work}/{name}.meta").read().split("\n") if os.path.exists(f"{work}/{name}.meta") else ["?", "?", ""]
    if r is None:
        return f"| {name} | {meta[0]} | {meta[1]} | no report (swarm failed, see stderr) |" + " |" * 11, None
    s, (calls, trips, top) = node_stats(name), redis_calls(name)
    peak = max(r["peak_connected"], 1)
    per_conn = (s["peak_kb"] - s["idle_kb"]) / peak if r["peak_connected"] else None
    lat = r["connect_latency_ms"]
    per_connect = calls / r["connects_ok"] if r["connects_ok"] else None
    trips_per_connect = trips / r["connects_ok"] if r["connects_ok"] else None
    ending = r["ending"] + ("" if r["ending"] == "completed" else f" ({r['duration_s']:.0f} s)")
    cells = [name, meta[0], meta[1], ending,
             f"{r['connects_ok']}/{r['connects_attempted']}", fmt(r["connect_rate"]),
             fmt(lat["p50"], "{:.1f}"), fmt(lat["p99"], "{:.1f}"),
             fmt(r["convergence_ms"], "{:.0f}"), str(r["stale"]),
             f"{r['refresh_messages_per_client']['mean']:.1f} / {r['refresh_messages_per_client']['max']}",
             fmt(per_conn, "{:.1f}"), fmt(s["cpu_s"], "{:.1f}"), fmt(trips_per_connect, "{:.2f}"), fmt(per_connect, "{:.2f}")]
    detail = f"- `{name}`: `{meta[2]}`; exit code {open(f'{work}/{name}.code').read().strip()}; " \
             f"errors {r['errors'] or 'none'}; top Redis commands {', '.join(f'{c} {n}' for n, c in top) or 'none'}"
    return "| " + " | ".join(cells) + " |", detail

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"

names = ["burst-rollcall", "burst-reference", "hold-rollcall", "small-hold-rollcall",
         "small-hold-reference", "churn-rollcall", "churn-reference"]
names = [n for n in names if os.path.exists(f"{work}/{n}.meta")]
rows, details = zip(*(row(n) for n in names))
mem = sh("free -h | awk '/^Mem:/ {print $2}'")
node_version = sh("node --version")
redis_version = sh("redis-server --version").split(" v=")[-1].split(" ")[0]
today = sh("date -u +%Y-%m-%d")
lines = [
    "# Benchmarks",
    "",
    "Generated by `bench/run.sh`: `rollcall swarm` against rollcall (release build) and against the",
    "Node reference in `bench/reference/` (the Socket.IO tutorial's server scaled the usual way:",
    "socket.io 4.8 + `@socket.io/redis-adapter` + Redis `INCR`/`DECR` and `io.emit('refresh users')`",
    "on every connect and disconnect). Swarm, nodes and Redis share one machine, so every number",
    "includes the load generator's own CPU use.",
    "",
    f"Machine: {sh('nproc')} cores, {mem} memory, Linux {platform.release()}; "
    f"Node.js {node_version}, Redis {redis_version}; run on {today}.",
    "",
    "| case | system | nodes | ending | connected | connect rate /s | connect p50 ms | connect p99 ms "
    "| convergence ms | stale | refresh msgs per client (mean / max) | node RSS per connection kB (peak) "
    "| node CPU s | Redis round trips per connect | Redis cmds executed per connect |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    *rows,
    "",
    "Columns: *convergence* is the time from the swarm's last connect or disconnect until every",
    "connected client's last `refresh users` value equals the true total (`GET /api/presence`, all",
    "nodes agreeing); *stale* counts clients that never got there within the settle timeout (10 s).",
    "*Node RSS per connection* is the nodes' peak RSS minus their RSS before the swarm started, over",
    "the peak number of connected clients; in the hold cases that peak is the idle plateau (the",
    "small hold compares both systems where the reference still keeps up). *Node CPU s* is the",
    "nodes' user+system CPU time over the whole case (swarm and Redis not included).",
    "*Redis round trips per connect* counts the commands nodes sent (for rollcall: EVALSHA/EVAL,",
    "one per batched write, heartbeat or presence read; for the reference: every INCR, DECR and",
    "PUBLISH) over the successful connects; *Redis cmds executed per connect* also counts the",
    "commands run inside rollcall's Lua scripts (about ten per script). Both include disconnects,",
    "heartbeats and the swarm's presence polls during the case.",
    "",
    f"The reference is not run at {n_hold} clients: every connect makes it emit to every client,",
    f"so holding {n_hold} clients means about {n_hold * n_hold // 2:,} `refresh users` messages.",
    "",
    "Commands:",
    "",
    *[d for d in details if d],
    "",
]
with open(out, "w") as f:
    f.write("\n".join(lines))
PY
say "done: $OUT (raw results in $WORK)"
