"""The firmware CoAP client on MicroPython against real loopback peers.

A CPython UDP peer scripts the network (drops, empty ACKs, separate responses,
stray datagrams); an aiocoap server runs the full button flow through main_unix.py.
"""

import asyncio
import json
import socket
import threading

import aiocoap
import aiocoap.resource
from aiocoap import ACK, CON, Message
from aiocoap.numbers.codes import Code

from backend import protocol
from backend.protocol import Answer, Result
from backend.runtime import bound_udp_port
from devtools.mpy import FIRMWARE, popen_script, run_snippet

PEER_WAIT_S = 10


class Peer:
    """A UDP peer on 127.0.0.1 running handler(sock, data, addr, n) per datagram."""

    def __init__(self, handler):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.received = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            try:
                self.received.append(Message.decode(data))
                self.handler(self.sock, data, addr, len(self.received))
            except Exception as err:  # reported by __exit__, not lost in the thread
                self.errors.append(err)

    def wait_for(self, count):
        """Bounded wait until count datagrams arrived (the client may exit first)."""
        for _ in range(PEER_WAIT_S * 20):
            if len(self.received) >= count:
                return
            threading.Event().wait(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(PEER_WAIT_S)
        self.sock.close()
        if self.errors and exc[0] is None:
            raise self.errors[0]


CLIENT_SNIPPET = r"""
import socket, sys
from replenish import coap
from replenish.client import Client, Timeout
port = int(sys.argv[1])
addr = socket.getaddrinfo("127.0.0.1", port)[0][-1]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client = Client(sock, addr, ack_timeout_ms=100, max_retransmit=4, separate_timeout_ms=3000)
try:
    code, cf, payload = client.request(coap.POST, "ev", b"\xd1hello", 17)
    print("ANSWER", code, cf, payload.decode())
except Timeout:
    print("TIMEOUT")
print("TX", client.transmissions)
print("TIMEOUTS", " ".join(str(t) for t in client.timeouts_ms))
"""


def run_client(tmp_path, peer):
    out = run_snippet(CLIENT_SNIPPET, tmp_path, peer.port).stdout
    return dict(line.split(" ", 1) if " " in line else (line, "")
                for line in out.strip().splitlines())


def framed(mtype, mid, token=b"", **fields):
    """A datagram with explicit type/mid/token (as devtools/make_vectors.py builds them)."""
    message = Message(**fields)
    message.mtype, message.mid, message.token = mtype, mid, token
    return message.encode()


def piggybacked(request, payload=b"ok"):
    return framed(ACK, request.mid, request.token, code=Code.CREATED, payload=payload,
                  content_format=17)


def test_retransmits_with_growing_timeouts_then_accepts_piggybacked(tmp_path):
    def handler(sock, data, addr, n):
        if n > 2:  # drop the first two transmissions
            sock.sendto(piggybacked(Message.decode(data)), addr)

    with Peer(handler) as peer:
        out = run_client(tmp_path, peer)
    assert out["ANSWER"] == "65 17 ok"
    assert out["TX"] == "3"
    timeouts = [int(t) for t in out["TIMEOUTS"].split()]
    assert 100 <= timeouts[0] <= 150
    assert timeouts[1] == 2 * timeouts[0] and timeouts[2] == 2 * timeouts[1]
    requests = peer.received
    assert len(requests) == 3
    assert len({(r.mid, r.token) for r in requests}) == 1  # retransmissions, not new requests
    assert requests[0].mtype == CON and requests[0].code == Code.POST
    assert list(requests[0].opt.uri_path) == ["ev"] and requests[0].opt.content_format == 17


def test_empty_ack_then_separate_con_response_is_acked(tmp_path):
    sent = {}

    def handler(sock, data, addr, n):
        msg = Message.decode(data)
        if n == 1:
            sock.sendto(framed(ACK, msg.mid, code=Code.EMPTY), addr)
            sock.sendto(framed(ACK, (msg.mid + 7) & 0xFFFF, msg.token, code=Code.CREATED,
                               payload=b"stray"), addr)  # wrong mid: ignored
            sock.sendto(framed(CON, 0x4242, b"\x99\x98", code=Code.CONTENT,
                               payload=b"other"), addr)  # unexpected CON: RST
            sent["mid"] = 0x5151
            sock.sendto(framed(CON, 0x5151, msg.token, code=Code.CHANGED, payload=b"late",
                               content_format=17), addr)

    with Peer(handler) as peer:
        out = run_client(tmp_path, peer)
        peer.wait_for(3)  # request + the client's RST and ACK
    assert out["ANSWER"] == "68 17 late"
    assert out["TX"] == "1"  # the empty ACK stopped retransmission
    replies = peer.received[1:]
    assert [(r.mtype, r.code, r.mid) for r in replies] == [
        (aiocoap.RST, Code.EMPTY, 0x4242), (ACK, Code.EMPTY, sent["mid"])]


def test_gives_up_after_max_retransmit(tmp_path):
    with Peer(lambda *args: None) as peer:
        out = run_client(tmp_path, peer)
    assert "TIMEOUT" in out and "ANSWER" not in out
    assert out["TX"] == "5"
    assert len(peer.received) == 5
    timeouts = [int(t) for t in out["TIMEOUTS"].split()]
    assert timeouts == [timeouts[0] * 2 ** i for i in range(5)]


# --- end to end: main_unix.py against an aiocoap server using backend.protocol ---

KEY = bytes(range(32))
DEVICE = bytes.fromhex("0011223344556677")


class FakeIngest(aiocoap.resource.Resource):
    """Just enough of the backend's rules: slot decides the outcome; replay → 4.09."""

    def __init__(self, last_seq=0, delay_s=0.0):
        super().__init__()
        self.last_seq = last_seq
        self.delay_s = delay_s
        self.seen = {}  # seq -> (tag, answer bytes, code)
        self.requests = []
        self.slot9_down = True

    async def render_post(self, request):
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # long enough for aiocoap's empty ACK
        signed = protocol.parse_signed_event(request.payload)
        assert signed.kid == DEVICE and signed.verify(KEY)
        event = protocol.decode_event(signed.payload)
        self.requests.append(event)
        if event.slot == 9 and self.slot9_down:
            return Message(code=Code.SERVICE_UNAVAILABLE, payload=b"storage unavailable")
        if event.slot == 8:  # a forged answer: wrong key
            body = protocol.encode_answer(bytes(32), signed.tag, Answer(event.seq, Result.CREATED))
            return Message(code=Code.CREATED, payload=body, content_format=17)
        if event.seq in self.seen and self.seen[event.seq][0] == signed.tag:
            _tag, body, code = self.seen[event.seq]
        elif event.seq <= self.last_seq:
            answer = Answer(event.seq, Result.CONFLICT, last_seq=self.last_seq)
            body, code = protocol.encode_answer(KEY, signed.tag, answer), Code.CONFLICT
        else:
            self.last_seq = event.seq
            result = {0: Result.CREATED, 1: Result.VALID, 3: Result.FORBIDDEN}.get(
                event.slot, Result.CHANGED)
            if event.kind != protocol.Kind.PRESS:
                result = Result.CHANGED
            order = 42 if result in (Result.CREATED, Result.VALID) else None
            answer = Answer(event.seq, result, order=order,
                            state="pending" if order else None)
            body, code = protocol.encode_answer(KEY, signed.tag, answer), Code(int(result))
            self.seen[event.seq] = (signed.tag, body, code)
        return Message(code=code, payload=body, content_format=17)


def make_bundle(tmp_path, port):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "identity.json").write_text(json.dumps({
        "device_id": DEVICE.hex(), "key": KEY.hex(), "model": "button",
        "coap_host": "127.0.0.1", "coap_port": port, "fw": "0.1.0"}))
    return bundle


async def run_firmware(resource, bundle, commands, port, tmp_path=None):
    """Serve `resource` on `port` (0: any free port, then write the bundle for it)."""
    site = aiocoap.resource.Site()
    site.add_resource(["ev"], resource)
    ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port),
                                                      transports=["udp6"])
    if port == 0:  # bound first, so no other socket can take the port meanwhile
        port = bound_udp_port(ctx)
        bundle = make_bundle(tmp_path, port)
    try:
        proc = popen_script(FIRMWARE / "main_unix.py", bundle,
                            env={"REPLENISH_ACK_TIMEOUT_MS": "200",
                                 "REPLENISH_BATTERY_MV": "2980"})
        loop = asyncio.get_running_loop()
        out, err = await asyncio.wait_for(
            loop.run_in_executor(None, proc.communicate, commands), timeout=60)
        assert proc.returncode == 0, err
    finally:
        await ctx.shutdown()
    return [line for line in out.splitlines() if not line.startswith("# ")], out, bundle, port


def e2e(tmp_path, resource, commands):
    lines, raw, bundle, port = asyncio.run(run_firmware(resource, None, commands, 0, tmp_path))
    assert KEY.hex() not in raw
    return lines, bundle, port


def test_button_against_aiocoap_server(tmp_path):
    resource = FakeIngest()
    lines, bundle, port = e2e(
        tmp_path, resource, "boot\npress\npress 1\npress 2\npress 3\npress 9\npress 9\n"
        "stats\nquit\n")
    assert lines == [
        "LED recorded seq=1 result=68 order=none state=none",
        "LED ordered seq=2 result=65 order=42 state=pending",
        "LED already_ordered seq=3 result=67 order=42 state=pending",
        "LED not_configured seq=4 result=68 order=none state=none",
        "LED not_claimed seq=5 result=131 order=none state=none",
        "LED error seq=6 result=163 order=none state=none",  # 5.03: queued
        "LED error seq=7 result=163 order=none state=none",  # queue first: 6 again, 7 queued
        # a press goes to the flash queue before the network: one page per press (six),
        # one counter reservation; the queue head lives in RTC memory
        "STATS queued=2 dropped=0 reported=0 flash_writes=7",
    ]
    assert [e.seq for e in resource.requests] == [1, 2, 3, 4, 5, 6, 6]
    assert resource.requests[0].fw == "0.1.0" and resource.requests[1].battery_mv == 2980
    # restart (a reset: RTC memory stays): the queue survived; it goes out first, oldest
    # first, byte for byte; the new press continues inside the reserved block from RTC
    # memory (never reusing 1..7, no reservation write). A forged answer (wrong MAC)
    # counts as no answer: that event is queued.
    resource.slot9_down = False
    lines, *_ = asyncio.run(run_firmware(resource, bundle, "press\npress 8\nstats\n", port))
    assert lines == ["LED ordered seq=8 result=65 order=42 state=pending",
                     "LED error seq=9 result=65 order=none state=none",
                     "STATS queued=1 dropped=0 reported=0 flash_writes=2"]
    assert [e.seq for e in resource.requests[7:]] == [6, 7, 8, 9]
    # a power cut (RTC memory gone): the counter skips the rest of its block
    for rtc in (bundle / "state").glob("rtc*.bin"):
        rtc.unlink()
    lines, *_ = asyncio.run(run_firmware(resource, bundle, "press 1\n", port))
    # (9 is still queued behind its forged answer, so 33 waits behind it)
    assert lines[-1] == "LED error seq=33 result=65 order=none state=none"


def test_conflict_resyncs_and_resends_once(tmp_path):
    resource = FakeIngest(last_seq=100)
    lines, _bundle, _port = e2e(tmp_path, resource, "press\n")
    assert lines == ["LED ordered seq=101 result=65 order=42 state=pending"]
    assert [e.seq for e in resource.requests] == [1, 101]


def test_separate_response_from_aiocoap(tmp_path):
    resource = FakeIngest(delay_s=0.5)  # aiocoap sends an empty ACK, then a CON response
    lines, _bundle, _port = e2e(tmp_path, resource, "press\npress 1\n")
    assert lines == ["LED ordered seq=1 result=65 order=42 state=pending",
                     "LED already_ordered seq=2 result=67 order=42 state=pending"]
    assert [e.seq for e in resource.requests] == [1, 2]  # no retransmission reached it twice


def test_every_wait_of_an_exchange_feeds_the_watchdog(tmp_path):
    # A whole exchange (2+4+8+16+32 s of retransmission, up to 1.5x) outlasts the
    # device's 60 s task watchdog: the client must call tick at least once a second.
    out = run_snippet(r"""
import errno
from replenish import client as c

class Clock:
    now = 0
    def ticks_ms(self): return self.now
    def ticks_add(self, a, b): return a + b
    def ticks_diff(self, a, b): return a - b

clock = Clock()
c.time = clock  # virtual time: the socket's timeouts pass at once

class Silent:
    timeouts = []
    def settimeout(self, s):
        self.timeouts.append(s)
        self.wait_ms = int(s * 1000)
    def sendto(self, data, addr):
        pass
    def recvfrom(self, n):
        clock.now += self.wait_ms
        raise OSError(errno.ETIMEDOUT)

sock = Silent()
ticks = []
client = c.Client(sock, ("127.0.0.1", 5683), tick=lambda: ticks.append(clock.now))
try:
    client.request(2, "ev", b"x")
except c.Timeout:
    pass
gaps = [b - a for a, b in zip(ticks, ticks[1:])]
print(clock.now, client.transmissions, max(sock.timeouts), max(gaps))
""", tmp_path).stdout.split()
    total_ms, transmissions, longest_s, longest_gap_ms = map(float, out)
    assert transmissions == 5 and total_ms >= 62000
    assert longest_s <= 1.0 and longest_gap_ms <= 1000
