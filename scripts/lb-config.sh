#!/usr/bin/env bash
# Usage: scripts/lb-config.sh LB_PORT PORT1 PORT2 PORT3
#
# Prints deploy/haproxy.cfg (the docker-compose load balancer) rewritten for nodes listening on
# this machine, as the test suite (tests/e2e/lb.test.mjs) runs it:
#   - `bind *:3000`                         -> `bind 127.0.0.1:LB_PORT`
#   - `server rollcall-N rollcall-N:3000 …` -> `server rollcall-N 127.0.0.1:PORTN …`
#   - ` resolvers docker init-addr …` server options removed (no Docker DNS here);
#   - the `resolvers docker` section and the `frontend stats` section removed, each with the
#     comment lines directly above it (no extra listening port in tests).
# Everything else (cookie, health checks, timeouts, `log stdout`) is kept as it is.
# Check the result with: haproxy -c -f <(scripts/lb-config.sh 3100 3101 3102 3103)
set -euo pipefail

usage() {
  echo "usage: $0 LB_PORT PORT1 PORT2 PORT3" >&2
  exit 2
}
[ $# -eq 4 ] || usage
for port in "$@"; do
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || usage
done

cfg="$(dirname "$0")/../deploy/haproxy.cfg"
[ -r "$cfg" ] || {
  echo "$0: cannot read $cfg" >&2
  exit 1
}

out="$(
  awk -v lb="$1" -v p1="$2" -v p2="$3" -v p3="$4" '
    BEGIN { port["rollcall-1"] = p1; port["rollcall-2"] = p2; port["rollcall-3"] = p3; skip = 0; held = "" }
    # A line starting in column 0 (not a comment) opens a section.
    /^[A-Za-z]/ {
      skip = ($1 == "resolvers" || ($1 == "frontend" && $2 == "stats") || ($1 == "listen" && $2 == "stats"))
      if (skip) { held = ""; next }
    }
    skip { next }
    # Hold full-line comments until we know whether the section below them is kept.
    /^#/ { held = held $0 "\n"; next }
    {
      if (held != "") { printf "%s", held; held = "" }
      if ($0 ~ /^[ \t]*bind \*:3000([ \t]|$)/) sub(/\*:3000/, "127.0.0.1:" lb)
      if ($1 == "server" && ($2 in port) && $3 == $2 ":3000") {
        sub($2 ":3000", "127.0.0.1:" port[$2])
        sub(/[ \t]+resolvers docker init-addr [^ \t]+/, "")
      }
      print
    }
    END { if (held != "") printf "%s", held }
  ' "$cfg"
)"

# Fail loudly if the source file drifted from the forms this script rewrites.
problems=()
grep -q "bind 127.0.0.1:$1\$" <<<"$out" || problems+=("no 'bind *:3000' line was rewritten")
for n in 1 2 3; do
  grep -q "^[[:space:]]*server rollcall-$n 127\.0\.0\.1:[0-9]" <<<"$out" || problems+=("no 'server rollcall-$n rollcall-$n:3000' line was rewritten")
done
if grep -v '^[[:space:]]*#' <<<"$out" | grep -qE 'rollcall-[0-9]+:3000|resolvers|\*:[0-9]'; then
  problems+=("a Docker-only address, resolvers reference or wildcard bind is left")
fi
if [ ${#problems[@]} -gt 0 ]; then
  for problem in "${problems[@]}"; do
    echo "$0: deploy/haproxy.cfg does not have the expected form: $problem" >&2
  done
  exit 1
fi
printf '%s\n' "$out"
