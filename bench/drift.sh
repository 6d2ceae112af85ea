#!/usr/bin/env bash
# The drift hunt as a benchmark: `rollcall swarm --scenario hunt` for DRIFT_MINUTES against a
# cluster on this machine (one redis-server, DRIFT_NODES release nodes with
# DRIFT_WORKER_THREADS async threads each and short Engine.IO pings) with DRIFT_BURNERS CPU
# burners beside, then prints how many sequences ran, for how long, and the drifts found
# (with the first one's position and the shortest failing round). tests/it/drift.rs is the
# short CI variant of the same hunt.
#
# Usage: bench/drift.sh                     a 10-minute hunt
#        DRIFT_MINUTES=5 bench/drift.sh
# Env:   DRIFT_MINUTES (10), DRIFT_NODES (2), DRIFT_BURNERS (2), DRIFT_WORKER_THREADS (2: with one
#        thread a node never runs a close and a connect at the same time), DRIFT_ROUND_SIZE (200),
#        DRIFT_SHRINK_TRIALS (200), DRIFT_SEED (random), DRIFT_OUT (the JSON report; default in
#        the work directory), ROLLCALL_BIN (default target/release/rollcall), BENCH_SKIP_BUILD=1.
# Exit code: the hunter's (0 only when no drift was found).
# Every process this script starts is killed by PID when it exits (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROLLCALL=${ROLLCALL_BIN:-$ROOT/target/release/rollcall}
MINUTES=${DRIFT_MINUTES:-10}
NODES=${DRIFT_NODES:-2}
BURNERS=${DRIFT_BURNERS:-2}
THREADS=${DRIFT_WORKER_THREADS:-2}
WORK=$(mktemp -d /tmp/rollcall-drift.XXXXXX)
OUT=${DRIFT_OUT:-$WORK/hunt.json}
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

REDIS_PORT=$(free_port)
start_redis "$REDIS_PORT" "$WORK/redis.log"

URLS=()
for i in $(seq "$NODES"); do
  port=$(free_port)
  ROLLCALL_PORT=$port ROLLCALL_BIND=127.0.0.1 ROLLCALL_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    ROLLCALL_NODE_ID="drift-$i" ROLLCALL_LOG_LEVEL=warn ROLLCALL_WORKER_THREADS="$THREADS" \
    ROLLCALL_PING_INTERVAL_MS=500 ROLLCALL_PING_TIMEOUT_MS=1000 \
    "$ROLLCALL" serve >"$WORK/node-$i.log" 2>&1 &
  PIDS+=($!)
  URLS+=(--url "http://127.0.0.1:$port")
  wait_ready "http://127.0.0.1:$port"
done

ARGS=(swarm --scenario hunt "${URLS[@]}" --duration "${MINUTES}m" --max-duration "$((MINUTES + 10))m"
  --burners "$BURNERS" --round-size "${DRIFT_ROUND_SIZE:-200}" --settle-timeout 5s
  --shrink-trials "${DRIFT_SHRINK_TRIALS:-200}" --json)
[ -n "${DRIFT_SEED:-}" ] && ARGS+=(--seed "$DRIFT_SEED")
say "hunting for $MINUTES min: $NODES nodes × $THREADS threads, $BURNERS burners (work dir $WORK)"
code=0
"$ROLLCALL" "${ARGS[@]}" >"$OUT" 2> >(tee "$WORK/hunt.err" | grep -v '^rollcall swarm: DRIFT' >&2) &
hunter=$!
PIDS+=($hunter)
wait "$hunter" || code=$?

python3 - "$OUT" "$MINUTES" "$NODES" "$THREADS" "$BURNERS" <<'PY'
import json, sys
out, minutes, nodes, threads, burners = sys.argv[1:]
try:
    r = json.load(open(out))
except (OSError, ValueError) as error:
    sys.exit(f"no report in {out}: {error}")
print(f"\ndrift hunt: {nodes} nodes x {threads} threads, {burners} burners, {minutes} min, seed {r['seed']}")
print(f"  sequences  {r['sequences']} in {r['rounds']} rounds, {r['duration_s']:.1f} s "
      f"({r['sequences'] / max(r['duration_s'], 1e-9):.0f}/s), {r['sequences_failed']} failed")
first = r.get("first_drift_after_sequences")
when = f" (the first after {first} sequences, {r['first_drift_after_s']:.1f} s)" if first is not None else ""
print(f"  drifts     {r['drifts']}{when}")
suspects = sorted(((c["drift_rounds"] / max(c["rounds"], 1), k, c) for k, c in r["per_kind"].items()
                   if c["drift_rounds"]), key=lambda s: -s[0])
if suspects:
    print("  suspects   " + ", ".join(f"{k} {c['drift_rounds']}/{c['rounds']} rounds" for _, k, c in suspects[:6]))
for drift in r["drift_rounds"][:10]:
    nodes = ", ".join(f"node {n['node']} users {n['expected_users']}->{n['seen_users']} "
                      f"local {n['expected_local']}->{n['seen_local']}" for n in drift["nodes"])
    print(f"    round {drift['round']} after {drift['after_sequences']}: {nodes}")
shortest = r.get("shortest")
if shortest:
    ran = " ".join(f"{op}x{count}" for op, count in shortest["ran"].items())
    print(f"  shortest   {len(shortest['steps'])} steps on nodes {shortest['nodes']}: {ran} "
          f"(seed {shortest['seed']} round {shortest['round']}; "
          f"{shortest['shrink_reproduced']} of {shortest['shrink_trials']} shrink trials drifted)")
    print(f"  replay     {shortest['replay']}")
print(f"  ending     {r['ending']}, exit code {r['exit_code']}; report {out}")
PY
exit "$code"
