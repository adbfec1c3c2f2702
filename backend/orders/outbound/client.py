"""One HTTP POST to a checked destination, bounded in time, redirects not followed.

urllib would resolve the name again (DNS rebinding past the address check), follow
redirects (to anywhere, loopback included) and bound each socket operation but not the
whole call (a server that trickles a byte at a time holds it forever). So:

- the connection goes to the addresses `AddressPolicy.check` returned, in order, each
  with the connect timeout; the request carries the name in `Host` (and in TLS: SNI and
  certificate check against the name);
- a watchdog shuts the socket down when the total deadline passes, whatever the call
  is blocked in (TLS handshake, headers, body);
- a 3xx is an answer like any other: the caller sees it and does not follow it;
- at most `MAX_ANSWER_BYTES` of the answer are read.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from backend.orders.outbound.policy import AddressPolicy, Destination

MAX_ANSWER_BYTES = 64 * 1024


class OutboundError(Exception):
    """No usable answer: connection refused, timeout, reset, TLS failure."""


@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    total_s: float


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    @property
    def redirect(self) -> bool:
        return 300 <= self.status < 400


class _Guarded:
    """The socket a call is blocked on (replaced by its TLS wrapper once wrapped)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.cut = False  # shut down by the watchdog: whatever was read is incomplete


class _Watchdog:
    """One daemon thread that shuts sockets down at their deadline (or on `abort_all`)."""

    def __init__(self):
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, _Guarded] = {}
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, sock: socket.socket, deadline: float):
        with self._cond:
            ident = next(self._ids)
            guarded = self._live[ident] = _Guarded(sock)
            heapq.heappush(self._heap, (deadline, ident))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outbound-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield guarded
        finally:
            with self._cond:
                self._live.pop(ident, None)

    def abort_all(self) -> int:
        """Shut down every guarded socket now (stopping): the calls fail at once."""
        with self._cond:
            guarded = list(self._live.values())
        for each in guarded:
            each.cut = True
            _shutdown(each.sock)
        return len(guarded)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, ident = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                guarded = self._live[ident]
                guarded.cut = True
            _shutdown(guarded.sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_TLS = ssl.create_default_context()


def _connect(destination: Destination, timeouts: Timeouts, deadline: float) -> socket.socket:
    errors = []
    for address in destination.addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            return socket.create_connection((address, destination.port),
                                            timeout=min(timeouts.connect_s, left))
        except OSError as err:
            errors.append(f"{address}: {type(err).__name__}: {err}")
    raise OutboundError(f"cannot connect to {destination.key} ({'; '.join(errors) or 'timeout'})")


class Outbound:
    """What a sender needs: the address policy, the timeouts, and its own watchdog (so
    that stopping one worker aborts its calls, not another's)."""

    def __init__(self, policy: AddressPolicy, timeouts: Timeouts,
                 tls: ssl.SSLContext | None = None):
        self.policy = policy
        self.timeouts = timeouts
        self.tls = tls  # None: the system's trusted certificates
        self.watchdog = _Watchdog()

    def post(self, url: str, body: bytes, headers: dict[str, str],
             what: str = "URL") -> Answer:
        """Check `url` now (AddressRefused) and POST to the addresses checked."""
        return post(self.policy.check(url, what), body, headers, self.timeouts,
                    self.watchdog, self.tls)

    def abort_all(self) -> int:
        return self.watchdog.abort_all()


def post(destination: Destination, body: bytes, headers: dict[str, str],
         timeouts: Timeouts, watchdog: _Watchdog,
         tls: ssl.SSLContext | None = None) -> Answer:
    """POST `body` to the checked `destination`; the answer, whatever its status.
    Raises OutboundError when there is none within `timeouts`."""
    deadline = time.monotonic() + timeouts.total_s
    sock = _connect(destination, timeouts, deadline)
    try:
        with watchdog.guard(sock, deadline) as guarded:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            if destination.scheme == "https":
                sock = guarded.sock = (tls or _TLS).wrap_socket(
                    sock, server_hostname=destination.host)
            conn = http.client.HTTPConnection(destination.host, destination.port)
            conn.sock = sock  # connected already: http.client does not connect again
            conn.request("POST", destination.path, body=body,
                         headers={"Host": destination.host_header,
                                  "Content-Type": "application/json",
                                  "Connection": "close", **headers})
            response = conn.getresponse()
            answer = Answer(response.status, response.read(MAX_ANSWER_BYTES))
            conn.close()
        if guarded.cut:  # an answer cut short parses as a short one: never use it
            raise OSError("cut off")
        return answer
    except (OSError, http.client.HTTPException, ValueError) as err:
        if guarded.cut or time.monotonic() >= deadline:
            raise OutboundError(f"{destination.key}: no answer within "
                                f"{timeouts.total_s:g} s") from None
        raise OutboundError(f"{destination.key}: {type(err).__name__}: {err}") from None
    finally:
        sock.close()
