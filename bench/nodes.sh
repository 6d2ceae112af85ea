#!/usr/bin/env bash
# One `rollcall swarm` run against a cluster on this machine (one redis-server, CLUSTER_NODES
# release nodes), with each node's RSS and CPU time around it. For the long runs of
# BENCHMARKS.md: the soak and the 100,000-client hold.
#
# Usage: bench/nodes.sh SWARM-ARGS...          (the --url flags are added)
#   CLUSTER_NODES=2 bench/nodes.sh --scenario soak --clients 20000 --rate 1000 --churn-rate 200 \
#       --rooms 200 --move-rate 20 --duration 30m --warmup 5m --max-duration 40m   (adds --rss-pid)
#   CLUSTER_NODES=6 bench/nodes.sh --scenario hold --clients 100000 --rate 2500 --duration 30s
# Env:   CLUSTER_NODES (6), CLUSTER_OUT (directory for swarm.json, nodes.txt, metrics; default a
#        new /tmp directory, printed), CLUSTER_PERF=1 (record `perf` on the first node during the
#        run: perf.data + perf.txt), ROLLCALL_BIN (default target/release/rollcall), SWARM_BIN
#        (default ROLLCALL_BIN), BENCH_SKIP_BUILD=1. ROLLCALL_* variables reach every node.
# Output: the swarm's text report on stderr; its JSON in CLUSTER_OUT/swarm.json; one line per
#        node `NODE i pid=... rss_before_kib=... rss_peak_kib=... cpu_s=... emits_deferred=...
#        refresh_messages=...`
#        and a `CLUSTER` summary line (CPU µs per connect) on stdout.
# Take the benchmark lock around it: flock /work/notes/bench.lock bench/nodes.sh ...
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
SWARM=${SWARM_BIN:-$ROLLCALL}
NODES=${CLUSTER_NODES:-6}
OUT=${CLUSTER_OUT:-$(mktemp -d /tmp/rollcall-cluster.XXXXXX)}
mkdir -p "$OUT"
PIDS=()
TICKS=$(getconf CLK_TCK)

# shellcheck source=bench/lib.sh
. bench/lib.sh
status_kib() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
metric() {
  curl -fsS "$1/metrics" 2>/dev/null | awk -v name="$2" '$1 == name { print $2 }' | head -1
}

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  say "cargo build --release"
  cargo build --release --bin rollcall >&2
fi

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT" "$OUT/redis.log"

URLS=() NODE_PIDS=() ARGS=()
for i in $(seq "$NODES"); do
  port=$(free_port)
  ROLLCALL_PORT=$port ROLLCALL_REDIS_URL=redis://127.0.0.1:$REDIS_PORT ROLLCALL_NODE_ID=n$i \
    ROLLCALL_MAX_CONNECTIONS=${ROLLCALL_MAX_CONNECTIONS:-19000} ROLLCALL_LOG_LEVEL=${ROLLCALL_LOG_LEVEL:-warn} \
    "$ROLLCALL" serve >"$OUT/node$i.log" 2>&1 &
  PIDS+=($!) NODE_PIDS+=($!) URLS+=("http://127.0.0.1:$port")
  ARGS+=(--url "http://127.0.0.1:$port")
done
wait_ready "${URLS[@]}"
BEFORE=() CPU_BEFORE=()
for pid in "${NODE_PIDS[@]}"; do
  BEFORE+=("$(status_kib "$pid" VmRSS)") CPU_BEFORE+=("$(cpu_ticks "$pid")")
done
case " $* " in *" soak "*) for pid in "${NODE_PIDS[@]}"; do ARGS+=(--rss-pid "$pid"); done ;; esac

PERF=
if [ "${CLUSTER_PERF:-0}" = 1 ] && command -v perf >/dev/null; then
  perf record -F 99 -g -p "${NODE_PIDS[0]}" -o "$OUT/perf.data" >/dev/null 2>&1 &
  PERF=$!
  PIDS+=("$PERF")
fi
say "swarm ${ARGS[*]} $*"
set +e
"$SWARM" swarm "${ARGS[@]}" "$@" --json >"$OUT/swarm.json" 2>"$OUT/swarm.log"
CODE=$?
set -e
if [ -n "$PERF" ]; then
  kill -INT "$PERF" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$PERF" 2>/dev/null || break; sleep 0.1; done
  perf report -i "$OUT/perf.data" --no-children --percent-limit 1 --stdio 2>/dev/null | head -150 >"$OUT/perf.txt" || true
fi
python3 - "$OUT/swarm.json" >&2 <<'EOF' || true
import json, sys
r = json.load(open(sys.argv[1]))
keep = ["scenario", "ending", "clients", "connects_ok", "connect_errors", "dropped", "errors", "connect_rate",
        "connect_latency_ms", "peak_connected", "converged", "convergence_ms", "stale", "true_users",
        "churn_reconnects", "refresh_messages_per_client", "exit_code"]
print(json.dumps({k: r.get(k) for k in keep}, indent=1))
if r.get("soak"):
    s = r["soak"]
    print("soak slopes KiB/min", s["slope_kib_per_min"], "after warm-up", s["after_warmup_kib"], "moves", s["moves_ok"])
EOF
CONNECTS=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["connects_ok"])' "$OUT/swarm.json" 2>/dev/null || echo 0)
for i in "${!NODE_PIDS[@]}"; do
  pid=${NODE_PIDS[$i]}
  cpu=$(python3 -c "print(($(cpu_ticks "$pid") - ${CPU_BEFORE[$i]}) / $TICKS)")
  msgs=$(metric "${URLS[$i]}" rollcall_refresh_messages_total); msgs=${msgs:-0}
  deferred=$(metric "${URLS[$i]}" rollcall_emits_deferred_total)
  echo "NODE $((i + 1)) pid=$pid rss_before_kib=${BEFORE[$i]} rss_peak_kib=$(status_kib "$pid" VmHWM) cpu_s=$cpu emits_deferred=${deferred:-n/a} refresh_messages=$msgs"
done | tee "$OUT/nodes.txt"
TOTAL_CPU=$(awk -F'cpu_s=' '{ split($2, a, " "); s += a[1] } END { print s + 0 }' "$OUT/nodes.txt")
TOTAL_MSGS=$(awk -F'refresh_messages=' '{ s += $2 } END { print s + 0 }' "$OUT/nodes.txt")
echo "CLUSTER nodes=$NODES connects_ok=$CONNECTS node_cpu_s=$TOTAL_CPU cpu_us_per_connect=$(python3 -c "print(round($TOTAL_CPU * 1e6 / max($CONNECTS, 1)))") refresh_messages=$TOTAL_MSGS swarm_exit=$CODE out=$OUT"
exit "$CODE"
