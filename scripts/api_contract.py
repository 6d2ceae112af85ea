#!/usr/bin/env python3
"""What scripts/api-contract.sh runs in its venv (python-socketio, schemathesis, requests):

  clients URL READY  python-socketio clients, a third Socket.IO implementation beside the
                     official JavaScript client and the Rust one, join rooms at the handshake
                     (`room=` query, `auth.rooms`) and by `join` / `leave` events, and check the
                     acks and `room users` they get; then READY is written and they stay in their
                     rooms (so the rooms API has data to list) until SIGTERM
  edges URL          requests schemathesis does not make (wrong content type, malformed JSON, a
                     body too large, repeated and unknown parameters, the byte limit of names,
                     unknown paths and methods, the room named `counts`, paging through the rooms
                     the clients hold), each answer checked against the OpenAPI document
  unavailable URL    while the caller has paused the node's Redis: the rooms API answers 503

Every wait has a deadline. Exit code 0 only if every check held.

Imported by schemathesis (SCHEMATHESIS_HOOKS=api_contract), it registers `filter_case` below.
"""

import signal
import sys
import threading
import time
import urllib.parse

import requests
import schemathesis
import socketio

TIMEOUT = 10.0
# What the clients of `clients` hold once they are done: room -> connections (one user each).
ROOMS_HELD = {"/page/x": 2, "counts": 1, "doc/é": 1, "lobby": 1}


class CheckFailed(Exception):
    """A contract check did not hold."""


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def eventually(what, probe, timeout=TIMEOUT):
    """Calls `probe` until it returns without raising CheckFailed; re-raises the last failure."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.05) + 10):
        try:
            return probe()
        except CheckFailed as failure:
            if time.monotonic() > deadline:
                raise CheckFailed(f"{what} within {timeout} s: {failure}") from None
        time.sleep(0.05)
    raise CheckFailed(f"{what}: gave up")


# ---- schemathesis hook -------------------------------------------------------------------------

MAX_NAME_BYTES = 256


def in_the_byte_gap(value):
    """A string JSON Schema calls valid (at most 256 characters) that is over 256 bytes of UTF-8."""
    if isinstance(value, str):
        return len(value) <= MAX_NAME_BYTES < len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return any(in_the_byte_gap(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(in_the_byte_gap(v) for v in value)
    return False


@schemathesis.hook
def filter_case(context, case):
    """Drops positive cases holding a room name or prefix in the byte gap: the document's schema
    bounds characters (JSON Schema cannot count bytes), the server bounds bytes and rightly
    answers 400, which positive_data_acceptance would report. `edges` checks that boundary."""
    generation = getattr(getattr(case, "meta", None), "generation", None)
    if generation is None or generation.mode != schemathesis.GenerationMode.POSITIVE:
        return True
    parts = (case.path_parameters, case.query, case.body)
    return not any(in_the_byte_gap(part) for part in parts)


# ---- clients ------------------------------------------------------------------------------------


class Client:
    """A python-socketio client that records every `room users` payload and connect error."""

    def __init__(self, label):
        self.label = label
        self.sio = socketio.Client(reconnection=False)
        self.lock = threading.Lock()
        self.room_users = []
        self.connect_errors = []
        self.sio.on("room users", self._on_room_users)
        self.sio.on("connect_error", self._on_connect_error)

    def _on_room_users(self, payload):
        with self.lock:
            self.room_users.append(payload)

    def _on_connect_error(self, data=None):
        with self.lock:
            self.connect_errors.append(data)

    def connect(self, url, transport, rooms_query=(), auth=None):
        query = urllib.parse.urlencode([("room", room) for room in rooms_query])
        self.sio.connect(
            f"{url}/?{query}" if query else url,
            auth=auth,
            transports=transport,
            wait_timeout=TIMEOUT,
        )
        return self

    def last(self, room):
        with self.lock:
            seen = [p for p in self.room_users if p.get("room") == room]
        return seen[-1] if seen else None

    def hears(self, room, connections):
        """Waits until this client's latest `room users` for `room` is exact."""
        want = {"room": room, "users": connections, "connections": connections}
        eventually(
            f"{self.label}: room users {want}",
            lambda: check(self.last(room) == want, f"last was {self.last(room)}"),
        )

    def call(self, event, data):
        return self.sio.call(event, data, timeout=TIMEOUT)


def expect_ack(ack, room, connections):
    want = {"ok": True, "room": room, "users": connections, "connections": connections}
    check(ack == want, f"ack {ack!r}, want exactly {want!r}")


def get_json(url):
    """GET a JSON document, which must come with a 200."""
    response = requests.get(url, timeout=TIMEOUT)
    check(response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:200]!r}")
    return response.json()


def presence_local(url):
    return get_json(f"{url}/api/presence")["local"]


def refused_at_connect(url, label, **how):
    """A handshake with an invalid room: connect_error whose message says why, nobody counted."""
    client = Client(label)
    try:
        client.connect(url, ["websocket"], **how)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        client.sio.disconnect()
        raise CheckFailed(f"{label}: connected despite an invalid room")
    messages = [e.get("message", "") if isinstance(e, dict) else str(e) for e in client.connect_errors]
    check(any("invalid room" in m for m in messages), f"{label}: connect_error said {messages!r}")


def run_clients(url, ready_path):
    watcher = Client("watcher").connect(url, ["websocket"])
    a = Client("a").connect(url, ["websocket"], rooms_query=["/page/x"], auth={"rooms": ["lobby", "doc/é"]})
    for room in ("/page/x", "lobby", "doc/é"):
        a.hears(room, 1)
    b = Client("b").connect(url, ["polling"])
    expect_ack(b.call("join", "/page/x"), "/page/x", 2)
    b.hears("/page/x", 2)
    a.hears("/page/x", 2)
    expect_ack(b.call("join", {"room": "counts"}), "counts", 1)
    expect_ack(b.call("join", "doc/é"), "doc/é", 2)
    a.hears("doc/é", 2)
    expect_ack(b.call("leave", "doc/é"), "doc/é", 1)
    a.hears("doc/é", 1)
    # Leaving a room one is not in changes nothing and still answers with its count.
    expect_ack(b.call("leave", "lobby"), "lobby", 1)
    refusal = b.call("join", "")
    check(refusal.keys() == {"ok", "error"} and refusal["ok"] is False, f"join '': {refusal!r}")
    refused_at_connect(url, "bad-auth", auth={"rooms": ["line\nbreak"]})
    refused_at_connect(url, "bad-query", rooms_query=[""])
    eventually("3 sockets on the node", lambda: check(presence_local(url) == 3, f"local {presence_local(url)}"))
    check(watcher.last("/page/x") is None and not watcher.room_users, f"watcher heard {watcher.room_users}")
    check(a.last("counts") is None, f"a heard a room it is not in: {a.last('counts')}")
    for room, connections in ROOMS_HELD.items():
        path = urllib.parse.quote(room, safe="")
        want = {"room": room, "users": connections, "connections": connections}
        eventually(
            f"GET /api/rooms/{path}",
            lambda: check(get_json(f"{url}/api/rooms/{path}") == want, want),
        )
    hold(ready_path)
    check(not watcher.room_users, f"watcher heard {watcher.room_users}")
    for client in (watcher, a, b):
        client.sio.disconnect()


def hold(ready_path):
    """Writes `ready_path`, then waits for SIGTERM (at most 10 minutes)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(ready_path, "w", encoding="utf-8") as ready:
        ready.write("ready\n")
    check(stop.wait(600), "no SIGTERM within 10 minutes")


# ---- edges --------------------------------------------------------------------------------------


class Api:
    """Requests against one node, each answer checked against its OpenAPI document."""

    def __init__(self, url):
        self.url = url
        self.document = requests.get(f"{url}/api/openapi.json", timeout=TIMEOUT).json()
        self.schema = schemathesis.openapi.from_dict(self.document)

    def resolve(self, node):
        """Follows local `$ref`s ("#/components/...") to what they name."""
        for _ in range(8):
            if "$ref" not in node:
                return node
            target = self.document
            for key in node["$ref"].removeprefix("#/").split("/"):
                target = target[key]
            node = target
        raise CheckFailed(f"a $ref cycle at {node}")

    def send(self, method, path, operation, status, **kwargs):
        """Sends one request; checks the status, that the document lists it, and the body."""
        response = requests.request(method, f"{self.url}{path}", timeout=TIMEOUT, **kwargs)
        where = f"{method} {path[:80]}"
        check(response.status_code == status, f"{where}: {response.status_code} {response.text[:200]}, want {status}")
        if operation is None:
            # 404 and 405: the document states them once for every path.
            check(response.json().keys() == {"error"}, f"{where}: {response.text[:200]}")
            return response
        documented = self.document["paths"][operation[1]][operation[0]]["responses"]
        check(str(status) in documented, f"{where}: {status} is not in the document")
        media = response.headers.get("content-type", "").split(";")[0]
        content = self.resolve(documented[str(status)]).get("content", {})
        check(media in content, f"{where}: content type {media!r}, documented {list(content)}")
        try:
            self.schema[operation[1]][operation[0].upper()].validate_response(response)
        except BaseExceptionGroup as failures:  # schemathesis' FailureGroup: one per broken rule
            raise CheckFailed(f"{where}: " + "; ".join(str(f) for f in failures.exceptions)) from None
        if status >= 400:
            check(isinstance(response.json().get("error"), str), f"{where}: {response.text[:200]}")
        return response


ONE = ("get", "/api/rooms/{room}")
LIST = ("get", "/api/rooms")
MANY = ("post", "/api/rooms/counts")
COUNTS_ROOM = ("get", "/api/rooms/counts")


def run_edges(url):
    api = Api(url)
    held = {room: {"room": room, "users": n, "connections": n} for room, n in ROOMS_HELD.items()}
    in_order = sorted(held, key=lambda room: room.encode())
    check(api.send("GET", "/api/rooms/counts", COUNTS_ROOM, 200).json() == held["counts"], "the room `counts`")
    check(api.send("GET", "/api/rooms/%2Fpage%2Fx", ONE, 200).json() == held["/page/x"], "/page/x")
    check(api.send("GET", "/api/rooms/%2E%2E", ONE, 200).json()["room"] == "..", "the room `..`")
    everything = api.send("GET", "/api/rooms", LIST, 200).json()
    check(everything == {"rooms": [held[r] for r in in_order], "next": None}, f"listing: {everything}")
    check_paging(api, held, in_order)
    page = api.send("GET", "/api/rooms?prefix=doc%2F", LIST, 200).json()
    check(page == {"rooms": [held["doc/é"]], "next": None}, f"prefix doc/: {page}")
    asked = {"rooms": ["lobby", "nobody", "/page/x"]}
    many = api.send("POST", "/api/rooms/counts", MANY, 200, json=asked).json()
    check([r["connections"] for r in many["rooms"]] == [1, 0, 2], f"counts: {many}")
    check_refusals(api)


def check_paging(api, held, in_order):
    seen, cursor = [], None
    for _ in range(len(in_order) + 1):
        query = urllib.parse.urlencode({"limit": 1, **({"cursor": cursor} if cursor else {})})
        page = api.send("GET", f"/api/rooms?{query}", LIST, 200).json()
        seen.extend(page["rooms"])
        cursor = page["next"]
        if cursor is None:
            break
    check(seen == [held[r] for r in in_order], f"pages of one: {seen}")


def check_refusals(api):
    json_type = {"content-type": "application/json"}
    api.send("POST", "/api/rooms/counts", MANY, 415, data='{"rooms": []}')
    api.send("POST", "/api/rooms/counts", MANY, 415, data='{"rooms": []}', headers={"content-type": "text/plain"})
    for body in ['{"rooms": [', '{"rooms": "a"}', '{"rooms": [], "x": 1}', "{}", "null", '{"rooms": [""]}']:
        api.send("POST", "/api/rooms/counts", MANY, 400, data=body, headers=json_type)
    api.send("POST", "/api/rooms/counts", MANY, 400, json={"rooms": ["r"] * 1001})
    api.send("POST", "/api/rooms/counts", MANY, 413, json={"rooms": ["a" * (1 << 20)]})
    for query in [
        *["limit=0", "limit=1001", "limit=ten", "limit=1&limit=2", "unknown=1"],
        *["cursor=", "prefix=a%0Ab", "prefix=%FF", "cursor=caf%C3"],
    ]:
        api.send("GET", f"/api/rooms?{query}", LIST, 400)
    for path in ["/api/rooms/%FF", "/api/rooms/a%01b"]:
        api.send("GET", path, ONE, 400)
    # 256 bytes of UTF-8 is the limit, whatever the number of characters.
    at_limit, over = urllib.parse.quote("é" * 128), urllib.parse.quote("é" * 129)
    check(api.send("GET", f"/api/rooms/{at_limit}", ONE, 200).json()["connections"] == 0, "256 bytes")
    over_limit = api.send("GET", f"/api/rooms/{over}", ONE, 400).json()["error"]
    check("256 bytes" in over_limit, f"the error names the byte limit: {over_limit}")
    api.send("GET", f"/api/rooms?prefix={over}", LIST, 400)
    api.send("GET", f"/api/rooms?cursor={over}", LIST, 400)
    api.send("POST", "/api/rooms/counts", MANY, 400, json={"rooms": ["é" * 129]})
    api.send("GET", "/api/nothing-here", None, 404)
    api.send("GET", "/api/rooms/", None, 404)
    allowed = api.send("DELETE", "/api/rooms", None, 405).headers.get("allow")
    check(allowed == "GET,HEAD", f"405 Allow: {allowed}")
    allowed = api.send("PUT", "/api/rooms/counts", None, 405).headers.get("allow")
    check(allowed == "GET,HEAD,POST", f"405 Allow: {allowed}")


def run_unavailable(url):
    api = Api(url)
    for method, path, operation, body in [
        ("GET", "/api/rooms/lobby", ONE, None),
        ("GET", "/api/rooms/counts", COUNTS_ROOM, None),
        ("GET", "/api/rooms?prefix=a", LIST, None),
        ("POST", "/api/rooms/counts", MANY, {"rooms": ["lobby"]}),
    ]:
        api.send(method, path, operation, 503, json=body)


def main(argv):
    commands = {
        "clients": lambda: run_clients(argv[2], argv[3]),
        "edges": lambda: run_edges(argv[2]),
        "unavailable": lambda: run_unavailable(argv[2]),
    }
    if len(argv) < 3 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        commands[argv[1]]()
    except (CheckFailed, requests.RequestException, socketio.exceptions.SocketIOError) as error:
        print(f"api-contract {argv[1]} {argv[2]}: FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"api-contract {argv[1]} {argv[2]}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
