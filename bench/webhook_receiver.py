#!/usr/bin/env python3
"""A webhook receiver for bench/webhooks.sh: accepts rollcall's POSTs, checks each one's
`Rollcall-Signature` (HMAC-SHA256 of "<t>.<body>" with the shared secret), and appends one JSON
line per event to --out: the event's fields plus `recv_ms` (when the body was read, ms since the
epoch), `post` (this receiver's POST counter) and `sig_ok`. It answers 204 after --delay-ms
(a slow receiver), or 401 when the signature does not verify.

Usage: webhook_receiver.py --port P --secret S --out events.jsonl [--delay-ms 0]
Runs until SIGTERM/SIGINT. Several runs may append to one --out (receiver down, then up).
"""

import argparse
import hashlib
import hmac
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret: bytes, header: str, body: bytes) -> bool:
    """True when `header` is `t=<secs>,v1=<hex>` and v1 is the HMAC of "<t>.<body>"."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    if "t" not in parts or "v1" not in parts:
        return False
    mac = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts["v1"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--delay-ms", type=int, default=0)
    args = ap.parse_args()
    secret = args.secret.encode()
    out = open(args.out, "a", buffering=1)
    lock = threading.Lock()
    posts = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            recv_ms = time.time() * 1000.0
            ok = verify(secret, self.headers.get("Rollcall-Signature", ""), body)
            try:
                events = json.loads(body)["events"]
            except (ValueError, KeyError):
                events = []
            with lock:
                posts[0] += 1
                post = posts[0]
                for event in events:
                    out.write(json.dumps({**event, "recv_ms": recv_ms, "post": post, "sig_ok": ok}) + "\n")
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000.0)
            self.send_response(204 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"receiver on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    out.close()


if __name__ == "__main__":
    main()
