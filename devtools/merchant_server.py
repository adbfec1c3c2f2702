"""A merchant on loopback for the webhook adapter's tests: it checks signatures,
deduplicates by idempotency key, and can be told to fail or to answer otherwise.
(A merchant is outside the system, so the tests stand one up; the adapter, the HTTP
client and the signing code under test are the real ones.)"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from backend.accounts import signing


class FakeMerchant:
    def __init__(self, secret: str):
        self.secret = secret
        self.orders: dict[str, dict] = {}  # idempotency key -> order
        self.requests: list[str] = []  # idempotency keys, in arrival order
        self.bad_signatures = 0
        self.fail_next = 0  # answer 503 this many times
        self.answer = {"status": "accepted"}
        self._lock = threading.Lock()
        merchant = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = merchant.handle(self.headers, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeMerchant:
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, headers, body: bytes):
        try:
            signing.verify(self.secret, headers, body)
        except signing.BadSignature as err:
            with self._lock:
                self.bad_signatures += 1
            return 401, {"error": str(err)}
        order = json.loads(body)
        key = headers.get("Idempotency-Key")
        with self._lock:
            self.requests.append(key)
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, {"error": "try later"}
            if key not in self.orders:  # a retry gets the first answer, acts once
                self.orders[key] = {**order, **self.answer,
                                    "merchant_ref": f"M-{len(self.orders) + 1}"}
            stored = self.orders[key]
        return 200, {"status": stored["status"], "reason": stored.get("reason"),
                     "merchant_ref": stored["merchant_ref"]}


def send_callback(api_url: str, secret: str, event: dict, *, timestamp: float | None = None,
                  signature: str | None = None) -> tuple[int, dict]:
    """POST a signed status callback to the web app; returns (status, JSON body)."""
    body = json.dumps(event).encode()
    headers = signing.sign_headers(secret, body, now=timestamp)
    if signature is not None:
        headers[signing.SIGNATURE_HEADER] = signature
    request = urllib.request.Request(f"{api_url}/merchant/callback", data=body,
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
