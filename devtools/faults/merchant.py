"""The tests' fake merchant (devtools/merchant_server.py), plus two faults: it can be
down (its port closed: connection refused) and it can stall one delivery (hold the
request open) so that the worker delivering it can be killed mid-delivery."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

from devtools.merchant_server import FakeMerchant

_STALL_MAX_S = 60.0


class FaultyMerchant(FakeMerchant):
    def __init__(self, secret: str):
        super().__init__(secret)
        self.server.handle_error = _QuietServer.handle_error.__get__(self.server)
        self.port = self.server.server_address[1]
        self._handler = self.server.RequestHandlerClass
        self._stall_armed = False
        self.stalled = threading.Event()  # a delivery is being held open
        self._release = threading.Event()

    def down(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)

    def up(self) -> None:
        self.server = _QuietServer(("127.0.0.1", self.port), self._handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stall_next(self) -> None:
        """Hold the next delivery open (before the merchant acts on it) until release()."""
        self.stalled.clear()
        self._release.clear()
        self._stall_armed = True

    def release(self) -> None:
        self._release.set()

    def handle(self, headers, body: bytes):
        with self._lock:
            stall, self._stall_armed = self._stall_armed, False
        if stall:
            self.stalled.set()
            self._release.wait(_STALL_MAX_S)
        return super().handle(headers, body)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """The answer to a delivery whose worker was killed has nobody to go to."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)
