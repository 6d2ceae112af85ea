#!/usr/bin/env python3
"""Room counts through the HTTP API, for bench/rooms-kill.sh.

  rooms_heal.py snapshot URL PREFIX OUT.json
      every non-empty room under PREFIX (GET /api/rooms, paged) -> {room: connections}
  rooms_heal.py wait URL... --at-least N --stable S --timeout S
      until every node's /api/presence shows the same total (at least N), the rooms under --prefix
      hold that many connections, and neither changed for S seconds; exit 1 on timeout
  rooms_heal.py heal URL... --before ALL.json --minus GONE.json --kill-ms MS --timeout S --json OUT
      the truth after a node died is ALL - GONE per room (ALL: every room before the kill; GONE:
      the dead node's part); polls POST /api/rooms/counts (1,000 rooms a request) on every URL
      until a whole round finds every room exact on every node, and /api/presence exact too;
      prints how long after --kill-ms that was, and checks that two more rounds stay exact.
"""

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def post(url, doc):
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def snapshot(url, prefix):
    rooms, cursor = {}, None
    for _ in range(10_000):
        q = {"prefix": prefix, "limit": "1000"}
        if cursor:
            q["cursor"] = cursor
        page = get(f"{url}/api/rooms?{urllib.parse.urlencode(q)}")
        for room in page["rooms"]:
            rooms[room["room"]] = room["connections"]
        cursor = page.get("next")
        if not cursor:
            return rooms
    raise SystemExit("GET /api/rooms: too many pages")


def users(url):
    return get(f"{url}/api/presence").get("users")


def cmd_wait(args):
    """Until every node shows the same total, the rooms hold that many connections, and both
    stayed so for --stable seconds (clients that failed to connect are not waited for)."""
    deadline = time.monotonic() + args.timeout
    seen, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            totals = {users(u) for u in args.urls}
            rooms = sum(snapshot(args.urls[0], args.prefix).values())
            now = (totals.pop(), rooms) if len(totals) == 1 else None
        except OSError:
            now = None
        if now is None or now[0] != now[1] or now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= args.stable and now[0] >= args.at_least:
            print(f"{now[0]} users, all in rooms, stable for {args.stable:.0f} s", file=sys.stderr)
            return 0
        time.sleep(0.5)
    print(f"timed out waiting for a stable count in rooms (last {seen})", file=sys.stderr)
    return 1


def mismatches(url, truth, names):
    bad = 0
    for i in range(0, len(names), 1000):
        chunk = names[i:i + 1000]
        for room in post(f"{url}/api/rooms/counts", {"rooms": chunk})["rooms"]:
            bad += room["connections"] != truth[room["room"]]
    return bad


def cmd_heal(args):
    before, gone = json.load(open(args.before)), json.load(open(args.minus))
    truth = {room: n - gone.get(room, 0) for room, n in before.items()}
    assert all(v >= 0 for v in truth.values()), "the dead node's part exceeds the total"
    names = sorted(truth)
    total = sum(truth.values())
    touched = sum(1 for room in gone if gone[room])
    kill_s = args.kill_ms / 1000.0
    deadline = time.time() + args.timeout
    rounds, first_total_ok, healed, worst = 0, None, None, 0
    while time.time() < deadline:
        start = time.time()
        rounds += 1
        try:
            bad = [mismatches(u, truth, names) for u in args.urls]
            total_ok = all(users(u) == total for u in args.urls)
        except OSError as error:
            print(f"round {rounds}: {error}", file=sys.stderr)
            continue
        worst = max(worst, sum(bad))
        if total_ok and first_total_ok is None:
            first_total_ok = start - kill_s
        if sum(bad) == 0 and total_ok:
            healed = {"round_started_s": start - kill_s, "round_ended_s": time.time() - kill_s}
            break
        time.sleep(0.05)
    stays = None
    if healed:
        stays = all(mismatches(u, truth, names) == 0 for _ in range(2) for u in args.urls)
    result = {"rooms_checked": len(names), "dead_node_rooms": touched, "true_total": total,
              "rounds": rounds, "worst_mismatches": worst, "healed": healed,
              "presence_exact_s": first_total_ok, "stays_exact": stays}
    print(json.dumps(result))
    if args.json:
        json.dump(result, open(args.json, "w"), indent=1)
    return 0 if healed and stays else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("snapshot")
    s.add_argument("url"); s.add_argument("prefix"); s.add_argument("out")
    w = sub.add_parser("wait")
    w.add_argument("urls", nargs="+"); w.add_argument("--at-least", type=int, default=1)
    w.add_argument("--stable", type=float, default=5)
    w.add_argument("--prefix", default="room-"); w.add_argument("--timeout", type=float, default=300)
    h = sub.add_parser("heal")
    h.add_argument("urls", nargs="+"); h.add_argument("--before", required=True)
    h.add_argument("--minus", required=True); h.add_argument("--kill-ms", type=float, required=True)
    h.add_argument("--timeout", type=float, default=60); h.add_argument("--json")
    args = ap.parse_args()
    if args.cmd == "snapshot":
        rooms = snapshot(args.url, args.prefix)
        json.dump(rooms, open(args.out, "w"))
        print(f"{len(rooms)} rooms, {sum(rooms.values())} connections", file=sys.stderr)
        return 0
    return cmd_wait(args) if args.cmd == "wait" else cmd_heal(args)


if __name__ == "__main__":
    sys.exit(main())
