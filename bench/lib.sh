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

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
