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
  users URL READY    against a node with `auth = optional`, `jwt_secret` = $API_CONTRACT_JWT_SECRET
                     and `api_keys` holding $API_CONTRACT_API_KEY: python-socketio clients with
                     signed tokens (two tabs of one user, another user, an anonymous watcher of
                     the members) are counted as users, `member joined` reaches the watcher, bad
                     tokens are refused with the CONNECT_ERROR message naming why; then READY and
                     they stay, like `clients`
  keyed URL          against that node: every protected operation answers 401 (the documented
                     error) without the key, with a wrong one or another scheme, and the members
                     API, with the key, pages through the members the `users` clients hold

Every wait has a deadline. Exit code 0 only if every check held.

Imported by schemathesis (SCHEMATHESIS_HOOKS=api_contract), it registers `filter_case` below.
"""

import base64
import hashlib
import hmac
import json
import os
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
        self.member_changes = []
        self.sio.on("member joined", self._on_member("joined"))
        self.sio.on("member left", self._on_member("left"))

    def _on_room_users(self, payload):
        with self.lock:
            self.room_users.append(payload)

    def _on_connect_error(self, data=None):
        with self.lock:
            self.connect_errors.append(data)

    def _on_member(self, kind):
        def record(payload):
            with self.lock:
                self.member_changes.append((kind, payload))

        return record

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

    def hears(self, room, connections, users=None):
        """Waits until this client's latest `room users` for `room` is exact (users: connections,
        unless given)."""
        want = {"room": room, "users": connections if users is None else users, "connections": connections}
        eventually(
            f"{self.label}: room users {want}",
            lambda: check(self.last(room) == want, f"last was {self.last(room)}"),
        )

    def call(self, event, data):
        return self.sio.call(event, data, timeout=TIMEOUT)


def expect_ack(ack, room, connections):
    want = {"ok": True, "room": room, "users": connections, "connections": connections}
    check(ack == want, f"ack {ack!r}, want exactly {want!r}")


def get_json(url, headers=None):
    """GET a JSON document, which must come with a 200."""
    response = requests.get(url, timeout=TIMEOUT, headers=headers)
    check(response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:200]!r}")
    return response.json()


def presence_local(url):
    return get_json(f"{url}/api/presence")["local"]


def refused_at_connect(url, label, message="invalid room", **how):
    """A refused handshake: connect_error whose message says why, nobody counted."""
    client = Client(label)
    try:
        client.connect(url, ["websocket"], **how)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        client.sio.disconnect()
        raise CheckFailed(f"{label}: connected despite being refused")
    messages = [e.get("message", "") if isinstance(e, dict) else str(e) for e in client.connect_errors]
    check(any(message in m for m in messages), f"{label}: connect_error said {messages!r}, want {message!r}")


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


# ---- signed users -------------------------------------------------------------------------------

# What the clients of `users` hold in USERS_ROOM: alice with two tabs, bob, and the anonymous
# watcher (its own user, not a member).
USERS_ROOM = "doc/42"
MEMBERS = [
    {"user": "alice", "info": {"name": "Alice"}, "connections": 2},
    {"user": "bob", "info": None, "connections": 1},
]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(claims, secret, alg="HS256"):
    """A JWT: HS256 is HMAC-SHA256 over `header.payload`; `alg` only changes the header."""
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(mac)}"


def token(sub, secret, **claims):
    return sign({"sub": sub, "exp": int(time.time()) + 600, **claims}, secret)


def key_header():
    return {"Authorization": f"Bearer {os.environ['API_CONTRACT_API_KEY']}"}


def run_users(url, ready_path):
    secret = os.environ["API_CONTRACT_JWT_SECRET"]
    watcher = Client("watcher").connect(url, ["websocket"])
    ack = watcher.call("join", {"room": USERS_ROOM, "members": True})
    check(ack == {"ok": True, "room": USERS_ROOM, "users": 1, "connections": 1, "members": [], "truncated": False},
          f"watcher's join: {ack!r}")
    alice = token("alice", secret, info={"name": "Alice"}, rooms=["doc/*"])
    tabs = [Client(f"alice-{t}").connect(url, [t], auth={"token": alice, "rooms": [USERS_ROOM]})
            for t in ("websocket", "polling")]
    bob = Client("bob").connect(url, ["websocket"], auth={"token": token("bob", secret)})
    ack = bob.call("join", {"room": USERS_ROOM, "members": True})
    check(ack == {"ok": True, "room": USERS_ROOM, "users": 3, "connections": 4, "members": MEMBERS, "truncated": False},
          f"bob's join: {ack!r}")
    watcher.hears(USERS_ROOM, 4, users=3)
    want = [("joined", {"room": USERS_ROOM, "user": m["user"], "info": m["info"]}) for m in MEMBERS]
    in_order = lambda changes: sorted(changes, key=lambda change: change[1]["user"])  # noqa: E731
    eventually("member joined for alice and bob",
               lambda: check(in_order(watcher.member_changes) == want, f"heard {watcher.member_changes}"))
    now = int(time.time())
    refusals = [
        ("malformed", {"token": "not.a.jwt"}, "the token is malformed"),
        ("expired", {"token": sign({"sub": "eve", "exp": now - 600}, secret)}, "the token has expired"),
        ("wrong-key", {"token": token("eve", "another-secret-just-as-long-as-the-real-one")}, "signature is invalid"),
        ("alg-none", {"token": sign({"sub": "eve", "exp": now + 600}, secret, alg="none")}, "algorithm is not allowed"),
        ("empty-sub", {"token": token("", secret)}, "sub must be a non-empty string"),
        ("room", {"token": alice, "rooms": ["lobby"]}, "is not allowed by the token"),
    ]
    for label, auth, message in refusals:
        refused_at_connect(url, label, message, auth=auth)
    eventually("4 connections of 3 users", lambda: check(
        {k: get_json(f"{url}/api/presence", key_header())[k] for k in ("connections", "unique_users")}
        == {"connections": 4, "unique_users": 3}, "presence"))
    room = get_json(f"{url}/api/rooms/{urllib.parse.quote(USERS_ROOM, safe='')}", key_header())
    check(room == {"room": USERS_ROOM, "users": 3, "connections": 4}, f"room: {room}")
    hold(ready_path)
    for client in (watcher, *tabs, bob):
        client.sio.disconnect()


# ---- edges --------------------------------------------------------------------------------------


class Api:
    """Requests against one node, each answer checked against its OpenAPI document."""

    def __init__(self, url, headers=None):
        self.url = url
        self.headers = headers or {}
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
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
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
MEMBERS_OF = ("get", "/api/rooms/{room}/members")
DEAD = ("get", "/api/webhooks/dead")
PRESENCE = ("get", "/api/presence")


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


def run_keyed(url):
    """The API key: 401 without it on every protected operation; the members API with it."""
    room = urllib.parse.quote(USERS_ROOM, safe="")
    protected = [
        ("GET", "/api/rooms", LIST, None),
        ("GET", "/api/rooms/counts", COUNTS_ROOM, None),
        ("POST", "/api/rooms/counts", MANY, {"rooms": [USERS_ROOM]}),
        ("GET", f"/api/rooms/{room}", ONE, None),
        ("GET", f"/api/rooms/{room}/members", MEMBERS_OF, None),
        ("GET", "/api/webhooks/dead", DEAD, None),
        ("GET", "/api/presence", PRESENCE, None),
    ]
    wrong_keys = [{}, {"Authorization": "Bearer not-the-key"}, {"Authorization": "Bearer "},
                  {"Authorization": f"Basic {os.environ['API_CONTRACT_API_KEY']}"}]
    for headers in wrong_keys:
        api = Api(url, headers)
        for method, path, operation, body in protected:
            error = api.send(method, path, operation, 401, json=body).json()["error"]
            check(error == "an API key is required: Authorization: Bearer <key>", f"{path}: 401 says {error!r}")
    api = Api(url, key_header())
    for method, path, operation, body in protected:
        api.send(method, path, operation, 200, json=body)
    for public in ["/", "/healthz", "/readyz", "/metrics", "/api/openapi.json", "/socket.io/socket.io.js"]:
        response = requests.get(f"{url}{public}", timeout=TIMEOUT)
        check(response.status_code == 200, f"{public} is public: {response.status_code}")
    whole = api.send("GET", f"/api/rooms/{room}/members", MEMBERS_OF, 200).json()
    check(whole == {"members": MEMBERS, "next": None}, f"members: {whole}")
    seen, cursor = [], None
    for _ in range(len(MEMBERS) + 1):
        query = urllib.parse.urlencode({"limit": 1, **({"cursor": cursor} if cursor else {})})
        page = api.send("GET", f"/api/rooms/{room}/members?{query}", MEMBERS_OF, 200).json()
        seen.extend(page["members"])
        cursor = page["next"]
        if cursor is None:
            break
    check(seen == MEMBERS, f"pages of one member: {seen}")
    for query in ["limit=0", "limit=1001", "cursor=", "cursor=a%0Ab", "other=1", "limit=1&limit=2"]:
        api.send("GET", f"/api/rooms/{room}/members?{query}", MEMBERS_OF, 400)
    api.send("GET", "/api/rooms/%01/members", MEMBERS_OF, 400)
    empty = api.send("GET", "/api/rooms/nobody-here/members", MEMBERS_OF, 200).json()
    check(empty == {"members": [], "next": None}, f"an empty room: {empty}")
    check(api.send("GET", "/api/webhooks/dead", DEAD, 200).json() == {"events": []}, "no dead letters")
    for query in ["limit=0", "limit=1001", "limit=x", "other=1"]:
        api.send("GET", f"/api/webhooks/dead?{query}", DEAD, 400)


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
        "users": lambda: run_users(argv[2], argv[3]),
        "keyed": lambda: run_keyed(argv[2]),
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
