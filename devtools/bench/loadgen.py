"""A CoAP load generator that is not the bottleneck.

- Events are encoded before the clock starts (`Workload`): real COSE_Mac0 events from
  many simulated devices, each device with its own increasing sequence numbers.
- Each device has at most one request in flight, as a real button has; a pool of UDP
  sockets (one per device up to `sockets`) gives the server many remotes, because
  aiocoap keeps message-id state per remote for 247 s.
- Confirmable POSTs with RFC 7252 retransmission (ACK_TIMEOUT 2 s, random factor 1.5,
  MAX_RETRANSMIT 4), a distinct message id per socket and a distinct token per request.
- Two modes: `window` (saturation: keep W requests outstanding) or `rate` (a fixed
  offered rate, open loop, still one request per device at a time).
- Every answer is matched by token; with keys, its MAC is verified with
  `backend.protocol.decode_answer` against the request's tag and its `seq` and
  `result` must match the request and the CoAP code.
"""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from backend import protocol
from backend.protocol import Kind, WireEvent
from devtools.bench import coapwire

UNAVAILABLE = 163  # 5.03
ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4

# RFC 7252 4.4: a Message ID is not reused with the same peer within EXCHANGE_LIFETIME
# (247 s). Every generator opens new sockets, and the OS sometimes gives one the port
# an earlier generator's socket had against the same server; started at a random ID,
# its IDs can overlap that socket's, and the server rightly answers such requests with
# the earlier responses (its deduplication). That is the likely cause of 38-43 events
# of one phase "lost" in 2 of 8 full runs (inferred from their signature: twice as
# many unmatched answers, "Duplicate CON" in the server's log). So each port's last ID
# is kept for the life of the process, and a socket given that port again goes on
# from it.
_LAST_MID: dict[int, int] = {}


@dataclass
class Device:
    kid: bytes
    key: bytes
    next_seq: int = 1


@dataclass
class Request:
    """One pre-encoded event: the bytes sent and what its answer must say."""

    device: int
    seq: int
    payload: bytes
    tag: bytes
    expected: int | None = None  # the code its answer must carry (fleet day: by kind)


class Workload:
    """Per device, a queue of pre-encoded presses (slot 0) with fresh sequence numbers."""

    def __init__(self, devices: list[Device], verify: bool = True):
        self.devices = devices
        self.verify = verify
        self.queues: list[deque[Request]] = [deque() for _ in devices]
        self._cursor = 0

    def prepare(self, total: int) -> None:
        """Encode `total` more events, spread round-robin over the devices."""
        n = len(self.devices)
        for i in range(self._cursor, self._cursor + total):
            d = i % n
            device = self.devices[d]
            seq = device.next_seq
            device.next_seq += 1
            payload = protocol.encode_event(device.key, device.kid,
                                            WireEvent(seq=seq, kind=Kind.PRESS, slot=0))
            self.queues[d].append(Request(d, seq, payload, payload[-protocol.TAG_BYTES:]))
        self._cursor = (self._cursor + total) % n

    def pending(self) -> int:
        return sum(len(q) for q in self.queues)


def anonymous_devices(count: int) -> list[Device]:
    """Devices with random keys, for servers that do not check (bare aiocoap)."""
    return [Device(random.randbytes(8), random.randbytes(32)) for _ in range(count)]


class _Inflight:
    __slots__ = ("request", "sock", "mid", "token", "datagram", "first_sent", "rto",
                 "tries", "acked", "timer")


@dataclass
class PhaseResult:
    mode: str
    duration_s: float
    window: int | None = None
    offered_per_s: float | None = None
    sent: int = 0
    answered: int = 0
    answered_in_phase: int = 0
    lost: int = 0
    retransmitted: int = 0
    errors: int = 0
    unmatched: int = 0
    backlog: int = 0
    shed: int = 0  # 5.03 with Max-Age: the device keeps the event and backs off
    # Answers not piggybacked on the ACK (later than the server's empty-ACK delay): each
    # cost the server an empty ACK, the answer and the device's ACK to it.
    separate: int = 0
    exhausted: bool = False
    codes: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unchecked: list = field(default_factory=list)  # (request, answer): `check_after`
    # This generator's own garbage collections during the phase: an answer that
    # arrives during one waits for it, and its latency includes the pause.
    gc_pauses_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        lat = sorted(self.latencies)

        def pct(p):
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 3)

        out = {
            "mode": self.mode,
            "duration_s": round(self.duration_s, 3),
            "sent": self.sent,
            "answered": self.answered,
            "events_per_s": round(self.answered_in_phase / self.duration_s, 1),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "max_ms": round(lat[-1] * 1000, 3) if lat else None,
            "lost": self.lost,
            "retransmitted": self.retransmitted,
            "errors": self.errors,
            "codes": {_dotted(c): n for c, n in sorted(self.codes.items())},
        }
        if self.window is not None:
            out["window"] = self.window
        if self.offered_per_s is not None:
            out["offered_per_s"] = self.offered_per_s
            out["backlog"] = self.backlog
        if self.exhausted:
            out["exhausted"] = True
        if self.unmatched:
            out["unmatched"] = self.unmatched
        if self.shed:
            out["shed"] = self.shed
        if self.separate:
            out["separate"] = self.separate
        if self.gc_pauses_ms:
            out["client_gc"] = {"collections": len(self.gc_pauses_ms),
                                "total_ms": round(sum(self.gc_pauses_ms), 1),
                                "max_ms": round(max(self.gc_pauses_ms), 1)}
        return out


class _GcPauses:
    """A `gc.callbacks` entry that times each collection into a list."""

    def __init__(self, pauses: list[float]):
        self._pauses = pauses
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pauses.append((time.perf_counter() - self._started) * 1e3)


def _dotted(code: int) -> str:
    return f"{code >> 5}.{code & 31:02d}"


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, gen: LoadGenerator, index: int):
        self.gen, self.index = gen, index

    def datagram_received(self, data, addr):
        self.gen._on_datagram(self.index, data)

    def error_received(self, exc):
        self.gen._errors_received += 1


class LoadGenerator:
    """Drive one server (host, port) with a workload; one instance per server."""

    def __init__(self, host: str, port: int, workload: Workload, sockets: int = 256,
                 expected_codes: frozenset[int] | None = None, on_answer=None,
                 check_after: bool = False):
        self.addr = (host, port)
        self.workload = workload
        self.nsockets = max(1, min(sockets, len(workload.devices)))
        self.expected = expected_codes
        self.on_answer = on_answer  # called (request, parsed answer, Answer or None)
        # Keep the answers and check them in `check`, after the phase: a real device
        # verifies its answer on its own CPU, not on the server's host; here that
        # verification took the server's cores while it was being measured.
        self.check_after = check_after and on_answer is None
        self._transports: list[asyncio.DatagramTransport] = []
        self._mids: list[int] = []  # each socket's last Message ID
        self._ports: list[int] = []
        self._token = random.getrandbits(32)
        self._prefix = coapwire.post_prefix()
        self._inflight: dict[bytes, _Inflight] = {}
        self._by_mid: dict[tuple[int, int], _Inflight] = {}
        self._idle: deque[int] = deque()
        self._result: PhaseResult | None = None
        self._phase_end = 0.0
        self._sending = False
        self._done = None
        self._emptied = None
        self._errors_received = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.nsockets):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind(("127.0.0.1", 0))
            transport, _ = await loop.create_datagram_endpoint(
                lambda i=i: _Protocol(self, i), sock=sock)
            self._transports.append(transport)
            port = sock.getsockname()[1]
            self._ports.append(port)
            self._mids.append(_LAST_MID.get(port, random.getrandbits(16)))

    def close(self) -> None:
        for inflight in self._inflight.values():
            if inflight.timer is not None:
                inflight.timer.cancel()
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        _LAST_MID.update(zip(self._ports, self._mids))
        self._ports.clear()

    # -- sending -------------------------------------------------------------------

    def _send_next(self, now: float) -> bool:
        """Send the next event of the next idle device; False when none can go."""
        queues = self.workload.queues
        while self._idle:
            d = self._idle.popleft()
            if queues[d]:
                break
        else:
            return False
        request = queues[d].popleft()
        s = d % self.nsockets
        mid = self._mids[s] = (self._mids[s] + 1) & 0xFFFF
        self._token = (self._token + 1) & 0xFFFFFFFF
        token = self._token.to_bytes(4, "big")
        inflight = _Inflight()
        inflight.request, inflight.sock, inflight.mid, inflight.token = request, s, mid, token
        inflight.datagram = coapwire.encode_con_post(mid, token, self._prefix, request.payload)
        inflight.first_sent = now
        inflight.rto = ACK_TIMEOUT * (1 + random.random() * (ACK_RANDOM_FACTOR - 1))
        inflight.tries = 0
        inflight.acked = False
        self._inflight[token] = inflight
        self._by_mid[(s, mid)] = inflight
        self._transports[s].sendto(inflight.datagram, self.addr)
        inflight.timer = asyncio.get_running_loop().call_later(
            inflight.rto, self._timeout, inflight)
        self._result.sent += 1
        return True

    def _timeout(self, inflight: _Inflight) -> None:
        if inflight.token not in self._inflight or inflight.acked:
            return
        if inflight.tries >= MAX_RETRANSMIT:
            self._give_up(inflight)
            return
        inflight.tries += 1
        inflight.rto *= 2
        self._result.retransmitted += 1
        self._transports[inflight.sock].sendto(inflight.datagram, self.addr)
        inflight.timer = asyncio.get_running_loop().call_later(
            inflight.rto, self._timeout, inflight)

    def _give_up(self, inflight: _Inflight) -> None:
        self._forget(inflight)
        self._result.lost += 1
        self._after_completion()

    def _forget(self, inflight: _Inflight, back_off_s: float = 0.0) -> None:
        del self._inflight[inflight.token]
        self._by_mid.pop((inflight.sock, inflight.mid), None)
        if inflight.timer is not None:
            inflight.timer.cancel()
        device = inflight.request.device
        if back_off_s:  # as the firmware does: keep the event, retry after Max-Age
            self.workload.queues[device].appendleft(inflight.request)
            delay = back_off_s * (1 + random.random() * (ACK_RANDOM_FACTOR - 1))
            asyncio.get_running_loop().call_later(delay, self._idle.append, device)
        else:
            self._idle.append(device)

    def _after_completion(self) -> None:
        if self._result.mode == "saturation" and self._sending:
            if not self._send_next(time.perf_counter()) and not self._inflight:
                if not self._emptied.done():  # every prepared event is answered
                    self._emptied.set_result(None)
        if not self._sending and not self._inflight and self._done and not self._done.done():
            self._done.set_result(None)

    # -- receiving -----------------------------------------------------------------

    def _on_datagram(self, s: int, data: bytes) -> None:
        now = time.perf_counter()
        msg = coapwire.parse(data)
        if msg is None or self._result is None:
            return
        if msg.type == coapwire.CON:  # a separate response: acknowledge it
            self._transports[s].sendto(coapwire.encode_empty_ack(msg.mid), self.addr)
        if msg.code == coapwire.EMPTY:
            inflight = self._by_mid.get((s, msg.mid))
            if inflight is not None:
                if msg.type == coapwire.RST:
                    self._result.errors += 1
                    self._forget(inflight)
                    self._after_completion()
                else:
                    inflight.acked = True  # the answer follows separately
                    if inflight.timer is not None:
                        inflight.timer.cancel()
                        inflight.timer = None
            return
        inflight = self._inflight.get(msg.token)
        if inflight is None or inflight.sock != s:
            self._result.unmatched += 1  # e.g. a second copy of a separate response
            return
        result = self._result
        if msg.code == UNAVAILABLE and msg.max_age is not None:  # shed: not an answer
            self._forget(inflight, back_off_s=msg.max_age)
            result.shed += 1
            result.codes[msg.code] += 1
            self._after_completion()
            return
        self._forget(inflight)
        result.answered += 1
        if msg.type != coapwire.ACK:
            result.separate += 1
        if now <= self._phase_end:
            result.answered_in_phase += 1
        result.latencies.append(now - inflight.first_sent)
        result.codes[msg.code] += 1
        if self.check_after:
            result.unchecked.append((inflight.request, msg))
        else:
            self._check(result, inflight.request, msg)
        self._after_completion()

    def check(self, result: PhaseResult) -> None:
        """Check the answers `run` kept (`check_after`) as `_check` does on arrival:
        each one's MAC, seq and result; the failures count in `result.errors`."""
        for request, msg in result.unchecked:
            self._check(result, request, msg)
        result.unchecked.clear()

    def _check(self, result: PhaseResult, request: Request, msg: coapwire.Parsed) -> None:
        ok = self.expected is None or msg.code in self.expected
        answer = None
        if ok and self.workload.verify and msg.content_format == 17:
            device = self.workload.devices[request.device]
            try:
                answer = protocol.decode_answer(device.key, request.tag, msg.payload)
            except Exception:
                ok = False
            else:
                ok = answer.seq == request.seq and int(answer.result) == msg.code
        elif ok and self.workload.verify and msg.code < 128:
            ok = False  # a success answer must be MAC'd
        if request.expected is not None and msg.code != request.expected:
            ok = False  # the fleet day: each kind has its own answer
        if not ok:
            result.errors += 1
        if self.on_answer is not None:
            self.on_answer(request, msg, answer)

    # -- phases --------------------------------------------------------------------

    async def run(self, duration_s: float, *, window: int | None = None,
                  rate: float | None = None, drain_s: float = 4.0) -> PhaseResult:
        """Send for `duration_s`, then wait up to `drain_s` for what is outstanding;
        whatever is still unanswered then counts as lost."""
        assert (window is None) != (rate is None)
        loop = asyncio.get_running_loop()
        self._idle = deque(d for d, q in enumerate(self.workload.queues) if q)
        mode = "saturation" if window is not None else "fixed_rate"
        self._result = result = PhaseResult(mode, duration_s, window=window,
                                            offered_per_s=rate)
        self._done = loop.create_future()
        self._emptied = loop.create_future()
        self._sending = True
        # No collection of this process during the phase: with a fleet's prepared
        # events in memory, one of the oldest generation paused the generator for
        # 80-120 ms, and every answer that arrived meanwhile got that much more
        # latency (a half-load p99 of 26-50 ms where the server's was under 10).
        # Reference counting still frees what the phase drops; cycles wait until
        # after it. `client_gc` in a phase's line would show a collection all the same.
        watch = _GcPauses(result.gc_pauses_ms)
        gc.callbacks.append(watch)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            await self._phase(result, duration_s, window, rate, drain_s)
        finally:
            if was_enabled:
                gc.enable()
            gc.callbacks.remove(watch)
        return result

    async def _phase(self, result: PhaseResult, duration_s: float, window: int | None,
                     rate: float | None, drain_s: float) -> None:
        start = time.perf_counter()
        self._phase_end = start + duration_s
        if window is not None:
            for _ in range(window):
                if not self._send_next(start):
                    break
            # Until the time is up, or earlier when every prepared event is answered.
            await asyncio.wait([self._emptied], timeout=duration_s)
            result.duration_s = min(duration_s, time.perf_counter() - start)
        else:
            sent_target = 0.0
            while (now := time.perf_counter()) < self._phase_end:
                due = int((now - start) * rate) - sent_target
                for _ in range(int(due)):
                    if not self._send_next(now):
                        result.backlog += 1  # no idle device with an event left
                sent_target += int(due)
                await asyncio.sleep(0.001)
        self._sending = False
        result.exhausted = self.workload.pending() == 0
        if self._inflight:
            try:
                await asyncio.wait_for(asyncio.shield(self._done), drain_s)
            except asyncio.TimeoutError:
                pass
        for inflight in list(self._inflight.values()):
            self._forget(inflight)
            result.lost += 1
        self._by_mid.clear()
        self._result = None
