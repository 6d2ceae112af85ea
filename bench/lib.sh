# Shared by the bench scripts (sourced after they cd to the repository root and set PIDS=()):
# progress lines, cleanup of every process they started (by PID, on any exit), free ports.
# BENCH_STOP_SIGNAL (TERM) is sent first; what is still alive after BENCH_STOP_GRACE_S (2) gets KILL.

say() { printf '\n== %s\n' "$*" >&2; }

cleanup() {
  local pid deadline=$((SECONDS + ${BENCH_STOP_GRACE_S:-2}))
  for pid in "${PIDS[@]}"; do kill "-${BENCH_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true; done
  # Wait for them to exit, up to the grace period, instead of a fixed sleep.
  for pid in "${PIDS[@]}"; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  done
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs COMMAND... every 0.2 s until it succeeds, at most TRIES times; ends the script (and with it,
# through the trap, everything it started) if it never does.
wait_until() {
  local what=$1 tries=$2
  shift 2
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$what did not come up" >&2
  exit 1
}

# A redis-server on 127.0.0.1:PORT without persistence, logging to LOG, with any extra arguments;
# its pid joins PIDS. Returns once it answers PING.
start_redis() {
  local port=$1 log=$2
  shift 2
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no "$@" >"$log" 2>&1 &
  PIDS+=($!)
  wait_until "redis-server on $port" 50 redis-cli -p "$port" ping
}

# Returns once every URL (a node's base URL) answers /readyz.
wait_ready() {
  local url
  for url in "$@"; do wait_until "$url/readyz" 100 curl -fsS "$url/readyz"; done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# heaptrack (apt-get install heaptrack) around one node, for BENCH_HEAPTRACK=1 in the scripts that
# offer it. `heap_node_pid BIN` finds the node heaptrack started; `heap_live NODE-PID PREFIX`
# kills it (SIGKILL: a graceful exit would free what is measured), waits for heaptrack to write
# PREFIX.zst, writes PREFIX.txt (the allocations still live, by call site, largest first) and
# prints the live heap in bytes. A release build with line tables names the call sites:
#   CARGO_TARGET_DIR=target/prof CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release
heap_node_pid() {
  local pid
  for _ in $(seq 100); do
    pid=$(pgrep -f -n "^$1 serve" || true)
    [ -n "$pid" ] && { echo "$pid"; return; }
    sleep 0.1
  done
  echo "heaptrack did not start $1" >&2
  return 1
}

heap_live() {
  kill -9 "$1" 2>/dev/null || true
  for _ in $(seq 600); do pgrep -f "heaptrack.*-o $2" >/dev/null || break; sleep 0.1; done
  heaptrack_print --print-leaks 1 --print-peaks 0 --print-allocators 0 --print-temporary 0 \
    "$2.zst" >"$2.txt" 2>&1 || true
  awk '/^total memory leaked:/ { print $4 }' "$2.txt" | python3 -c '
import sys
text = sys.stdin.read().strip() or "0"
scale = {"K": 1e3, "M": 1e6, "G": 1e9}
print(int(float(text.rstrip("KMGB")) * scale.get(text.rstrip("B")[-1:], 1)))'
}
