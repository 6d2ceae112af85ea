#!/usr/bin/env bash
# Plots the node RSS samples of a soak report (`rollcall swarm --scenario soak --json`, e.g.
# bench/nodes.sh's CLUSTER_OUT/swarm.json) against time, one line per node, as a PNG.
# Usage: bench/plot-soak.sh SWARM.json OUT.png      (needs gnuplot: apt-get install gnuplot-nox)
set -euo pipefail
REPORT=$1 OUT=$2
DATA=$(mktemp /tmp/rollcall-soak.XXXXXX)
trap 'rm -f "$DATA"' EXIT
python3 - "$REPORT" >"$DATA" <<'PY'
import json, sys
soak = json.load(open(sys.argv[1]))["soak"]
print("# t_min " + " ".join(f"pid{pid}" for pid in soak["pids"]))
for sample in soak["samples"]:
    values = ["nan" if kib is None else f"{kib / 1024:.1f}" for kib in sample["rss_kib"]]
    print(f"{sample['t_s'] / 60:.3f} " + " ".join(values))
PY
WARMUP=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["soak"]["warmup_s"] / 60)' "$REPORT")
NODES=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["soak"]["pids"]))' "$REPORT")
gnuplot <<GP
set terminal pngcairo size 900,450
set output "$OUT"
set title "Node RSS during the soak (warm-up ends at the dashed line)"
set xlabel "minutes"
set ylabel "RSS (MiB)"
set yrange [0:*]
set key bottom right
set arrow from $WARMUP, graph 0 to $WARMUP, graph 1 nohead dashtype 2
plot for [i=2:$((NODES + 1))] "$DATA" using 1:i with linespoints title sprintf("node %d", i - 1)
GP
echo "$OUT"
