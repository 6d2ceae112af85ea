#!/usr/bin/env python3
"""Judges what bench/webhook_receiver.py recorded (one JSON line per received event) for
bench/webhooks.sh, and prints a summary (and --json, a JSON object):

- received events, distinct ids, duplicates (ids received more than once), bad signatures;
- lost: events the nodes produced (--produced, the sum of rollcall_webhook_events_produced_total)
  minus distinct ids received; and per room the story must be complete: room.occupied and
  room.vacated alternate starting with occupied and end with vacated, and per (room, user)
  member.joined and member.left alternate and end with left (every client left at the end);
- order: within each room, versions of the events in first-arrival order never decrease;
- end-to-end delay: arrival at the receiver minus the event's `at` (Redis TIME of the step that
  produced it), p50/p99/max, over first arrivals;
- throughput: distinct events per second over the delivery span and the busiest second;
- with --kill-ms and --groups (groups whose lease the killed node held): per group, the time
  from the kill to the first arrival of that group's events (ids are g<group>-<stream id>).
"""

import argparse
import json
from collections import Counter, defaultdict


def pct(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100.0 * len(sorted_values)))]


def story(events, opening, closing):
    """One room's (or member's) events, (version, type) pairs: how many break the alternation
    opening, closing, opening, ... in version order, and whether the last one leaves it open."""
    events.sort()
    breaks, want = 0, opening
    for _, kind in events:
        breaks += kind != want
        want = closing if kind == opening else opening
    return breaks, int(events[-1][1] != closing)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("events")
    ap.add_argument("--produced", type=int, default=None)
    ap.add_argument("--kill-ms", type=float, default=None)
    ap.add_argument("--groups", default="")
    ap.add_argument("--window", default="", help="START_MS,END_MS: also the delay of events produced in it")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    rows = []
    with open(args.events) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    bad_signatures = sum(1 for r in rows if not r.get("sig_ok"))
    # A POST whose signature did not verify was refused (401): as if never received.
    rows = [r for r in rows if r.get("sig_ok")]
    ids = Counter(r["id"] for r in rows)
    first = {}
    for r in rows:
        first.setdefault(r["id"], r)
    firsts = sorted(first.values(), key=lambda r: r["recv_ms"])
    by_type = Counter(r["type"] for r in firsts)

    # Order per room (first arrivals, in arrival order; a POST's events keep their order).
    order_breaks = 0
    last_version = {}
    # Arrival order: the time the body was read (a group's POSTs are sequential; within a POST,
    # file order; `post` restarts with the receiver).
    for r in sorted(first.values(), key=lambda r: r["recv_ms"]):
        room = r["room"]
        if room in last_version and r["version"] < last_version[room]:
            order_breaks += 1
        last_version[room] = max(r["version"], last_version.get(room, r["version"]))

    # Completeness per room and per (room, user), in version order.
    story_breaks, open_rooms, open_members = 0, 0, 0
    rooms, members = defaultdict(list), defaultdict(list)
    for r in first.values():
        if r["type"].startswith("room."):
            rooms[r["room"]].append((r["version"], r["type"]))
        else:
            members[(r["room"], r.get("user"))].append((r["version"], r["type"]))
    for events in rooms.values():
        breaks, still_open = story(events, "room.occupied", "room.vacated")
        story_breaks, open_rooms = story_breaks + breaks, open_rooms + still_open
    for events in members.values():
        breaks, still_open = story(events, "member.joined", "member.left")
        story_breaks, open_members = story_breaks + breaks, open_members + still_open

    delays = sorted(r["recv_ms"] - r["at"] for r in firsts)
    span_s = (firsts[-1]["recv_ms"] - firsts[0]["recv_ms"]) / 1000.0 if len(firsts) > 1 else 0.0
    per_second = Counter(int(r["recv_ms"] // 1000) for r in firsts)
    result = {
        "received": len(rows),
        "distinct": len(first),
        "duplicates": sum(n - 1 for n in ids.values() if n > 1),
        "duplicated_ids": sum(1 for n in ids.values() if n > 1),
        "bad_signatures": bad_signatures,
        "by_type": dict(by_type),
        "produced": args.produced,
        "lost": None if args.produced is None else args.produced - len(first),
        "order_breaks": order_breaks,
        "story_breaks": story_breaks,
        "rooms": len(rooms),
        "rooms_not_vacated": open_rooms,
        "members_not_left": open_members,
        "delay_ms": {"p50": pct(delays, 50), "p99": pct(delays, 99), "max": delays[-1] if delays else None},
        "span_s": span_s,
        "events_per_s": len(firsts) / span_s if span_s else None,
        "busiest_second": max(per_second.values()) if per_second else 0,
        "posts": max((r["post"] for r in rows), default=0),
    }
    if args.window:
        start, end = (float(x) for x in args.window.split(","))
        inside = sorted(r["recv_ms"] - r["at"] for r in firsts if start <= r["at"] <= end)
        outside = sorted(r["recv_ms"] - r["at"] for r in firsts if not start <= r["at"] <= end)
        result["window_delay_ms"] = {"events": len(inside), "p50": pct(inside, 50), "max": inside[-1] if inside else None}
        result["outside_window_delay_ms"] = {"events": len(outside), "p50": pct(outside, 50), "p99": pct(outside, 99)}
    if args.kill_ms is not None:
        groups = [g for g in args.groups.split(",") if g]
        takeover = {}
        for g in groups:
            after = [r["recv_ms"] for r in rows if r["id"].startswith(f"g{g}-") and r["recv_ms"] > args.kill_ms]
            takeover[g] = round(min(after) - args.kill_ms) if after else None
        done = [t for t in takeover.values() if t is not None]
        result["takeover_ms"] = {"groups": takeover, "max": max(done) if done else None,
                                 "min": min(done) if done else None, "none_after_kill": len(groups) - len(done)}
        result["redelivered_after_kill"] = sum(
            1 for r in rows if ids[r["id"]] > 1 and r["recv_ms"] > args.kill_ms and first[r["id"]] is not r)

    d = result["delay_ms"]
    print(f"  received {result['received']} events in {result['posts']} POSTs; distinct {result['distinct']} "
          f"({', '.join(f'{k} {v}' for k, v in sorted(by_type.items()))})")
    print(f"  produced {result['produced']}, lost {result['lost']}, duplicates {result['duplicates']} "
          f"({result['duplicated_ids']} ids), bad signatures {result['bad_signatures']}")
    print(f"  order breaks per room {order_breaks}; story breaks {story_breaks}; "
          f"rooms not vacated at the end {open_rooms} of {len(rooms)}; members not left {open_members}")
    if delays:
        print(f"  delay change->receiver p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms, max {d['max']:.0f} ms; "
              f"{result['events_per_s'] or 0:.0f} events/s over {span_s:.0f} s, busiest second {result['busiest_second']}")
    if "window_delay_ms" in result:
        w, o = result["window_delay_ms"], result["outside_window_delay_ms"]
        print(f"  produced while the receiver was down: {w['events']} events, delay p50 {w['p50']} ms, max {w['max']} ms; "
              f"others p50 {o['p50']} ms, p99 {o['p99']} ms")
    if "takeover_ms" in result:
        t = result["takeover_ms"]
        print(f"  takeover after the kill: groups {sorted(t['groups'])}, first delivery by another node "
              f"min {t['min']} ms, max {t['max']} ms, groups with none {t['none_after_kill']}; "
              f"re-deliveries after the kill {result['redelivered_after_kill']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
