"""Rate limits (backend/coap/ratelimit.py) and amplification (coap/amplification.py)
on the real backend over loopback UDP. Sources are other loopback addresses
(127.0.0.x all reach the server), so per-source limits can be told apart.

- A flooder is held to its bucket (refused 5.03 + Max-Age, no payload) while other
  sources' devices are served.
- A device past its burst is refused before its events reach the writer; another
  device is served; garbage sent under a device's kid does not spend its tokens.
- No answer to an unauthenticated request has more bytes than the request, on every
  refusal path, and a separate refusal is not retransmitted (it goes NON).
"""

import ipaddress
import random
import socket
import time

import aiocoap
import pytest
from sqlalchemy import func, select

from backend import protocol
from backend.coap.ratelimit import TokenBuckets, kid_of, source_key
from backend.protocol import Kind, WireEvent
from backend.storage import db
from backend.storage.models import Event
from devtools.bench import coapwire
from tests.conftest import BackendThread, make_world
from tests.devtools.test_bench_loadgen import fleet_of

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # UDP, not SQL, here

CONTENT_CREATED, UNAVAILABLE = 65, 163
PREFIX = coapwire.post_prefix()


class Peer:
    """One UDP source address; sends CoAP and collects whatever comes back."""

    def __init__(self, port: int, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.server = ("127.0.0.1", port)
        self.mid = random.getrandbits(16)

    def close(self):
        self.sock.close()

    def post(self, payload: bytes, prefix: bytes = PREFIX) -> bytes:
        self.mid = (self.mid + 1) & 0xFFFF
        token = random.randbytes(4)
        datagram = coapwire.encode_con_post(self.mid, token, prefix, payload)
        self.sock.sendto(datagram, self.server)
        return datagram

    def answer(self, datagram: bytes, timeout_s: float = 30) -> tuple[coapwire.Parsed, int]:
        """The answer to `datagram` (piggybacked or separate) and every byte the server
        sent for it (an empty ACK included)."""
        sent = coapwire.parse(datagram)
        total = 0
        self.sock.settimeout(timeout_s)
        while True:
            data = self.sock.recv(4096)
            msg = coapwire.parse(data)
            if msg.mid != sent.mid and msg.token != sent.token:
                continue  # an answer to an earlier request
            total += len(data)
            if msg.code != coapwire.EMPTY:
                if msg.type == coapwire.CON:
                    self.sock.sendto(coapwire.encode_empty_ack(msg.mid), self.server)
                return msg, total

    def answers_to(self, datagrams: list[bytes], timeout_s: float = 30) -> list[coapwire.Parsed]:
        """The answer to each of `datagrams` (by token; a repeated one counted once),
        waiting until every one has come (bounded: `timeout_s` per receive)."""
        pending = {coapwire.parse(d).token for d in datagrams}
        out = []
        self.sock.settimeout(timeout_s)
        for _ in range(100_000):
            if not pending:
                return out
            msg = coapwire.parse(self.sock.recv(4096))
            if msg.code == coapwire.EMPTY:
                continue
            if msg.type == coapwire.CON:
                self.sock.sendto(coapwire.encode_empty_ack(msg.mid), self.server)
            if msg.token in pending:
                pending.discard(msg.token)
                out.append(msg)
        raise AssertionError(f"{len(pending)} requests never answered")

    def exchange(self, payload: bytes, prefix: bytes = PREFIX):
        return self.answer(self.post(payload, prefix))


def press(device, seq: int) -> bytes:
    return protocol.encode_event(device.key, device.kid,
                                 WireEvent(seq=seq, kind=Kind.PRESS, slot=0))


@pytest.fixture
def limited(settings, tmp_path):
    strict = settings.with_(rate_exempt=(), rate_source_per_s=2.0, rate_source_burst=10.0,
                            rate_device_per_s=0.5, rate_device_burst=4.0)
    with BackendThread(strict) as backend:
        world = make_world(backend, tmp_path / "fleet", buttons=2, hold_window_s=3600)
        yield backend, fleet_of(world.buttons)


def test_token_buckets_refill_and_stay_bounded():
    now = [0.0]
    buckets = TokenBuckets(per_s=2.0, burst=3.0, max_tracked=100, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)  # the next token in half a second
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    for n in range(1000):
        buckets.take(n)
    assert len(buckets) == 100  # least recently used keys went first


def test_sources_are_ipv4_addresses_and_ipv6_slash_64s_and_loopback_is_exempt():
    from backend.coap.ratelimit import RateLimiter, RateLimitPolicy, _network_of

    one, same_64, other_64 = (ipaddress.ip_address(a) for a in (
        "2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:3::1"))
    assert _network_of(one) == _network_of(same_64) != _network_of(other_64)
    assert _network_of(ipaddress.ip_address("10.0.0.1")) != _network_of(
        ipaddress.ip_address("10.0.0.2"))
    assert source_key(_Remote("::ffff:10.0.0.1")) == ipaddress.ip_address("10.0.0.1")

    limiter = RateLimiter(RateLimitPolicy(source_per_s=1, source_burst=1))
    for host, limited_after_one in (("127.0.0.5", False), ("::1", False),
                                    ("192.0.2.7", True)):
        request = aiocoap.Message(code=aiocoap.POST, payload=b"")
        request.remote = _Remote(host)
        assert limiter.check(request) is None
        assert (limiter.check(request) is not None) == limited_after_one, host


def test_exemption_is_remembered_per_address_within_the_bound():
    from backend.coap.ratelimit import RateLimiter, RateLimitPolicy

    limiter = RateLimiter(RateLimitPolicy(source_per_s=1, source_burst=1, max_tracked=10))
    for n in range(50):  # many sources: each spends its one token, none is exempt
        request = aiocoap.Message(code=aiocoap.POST, payload=b"")
        request.remote = _Remote(f"192.0.2.{n}")
        assert limiter.check(request) is None
        assert limiter.check(request) is not None, n
    assert len(limiter._exempt_hosts) <= 10  # remembered answers stay bounded
    local = aiocoap.Message(code=aiocoap.POST, payload=b"")
    local.remote = _Remote("127.0.0.9")
    assert all(limiter.check(local) is None for _ in range(3))


class _Remote:
    def __init__(self, host: str):
        self.sockaddr = (host, 5683)


def test_kid_is_read_from_canonical_and_other_encodings():
    device_kid = bytes.fromhex("0102030405060708")
    event = protocol.encode_event(bytes(32), device_kid, WireEvent(seq=1, kind=Kind.PRESS,
                                                                   slot=0))
    assert kid_of(event) == device_kid
    assert kid_of(event[1:]) == device_kid  # untagged: parsed, not sliced
    assert kid_of(b"\xd1garbage") is None and kid_of(b"\x00" * 600) is None


@SQLITE
def test_a_flooding_source_is_limited_and_other_devices_are_served(limited, settings):
    backend, fleet = limited
    flooder = Peer(backend.coap_port, "127.0.0.9")
    try:
        started = time.monotonic()
        answers, window = [], []
        for _ in range(200):  # malformed events: each would be a 4.00 from the writer
            window.append(flooder.post(b"\xa0" * 20))
            if len(window) == 20:  # 20 at a time, each answered before the next 20:
                answers += flooder.answers_to(window)  # the kernel drops none of them
                window = []
        assert len(answers) == 200
        codes = {}
        for msg in answers:
            codes[msg.code] = codes.get(msg.code, 0) + 1
            if msg.code == UNAVAILABLE:
                assert msg.max_age >= 1, msg.payload
        elapsed = time.monotonic() - started
        # What got through: the burst plus what refilled while the flood lasted.
        assert codes.get(128, 0) <= 10 + 2.0 * elapsed + 1, (codes, elapsed)
        assert backend.limiter.refused["source"] >= 200 - (10 + 2.0 * elapsed + 1), codes
        # Devices behind other addresses are served as usual.
        for n, device in enumerate(fleet):
            peer = Peer(backend.coap_port, f"127.0.0.{20 + n}")
            try:
                answer, _ = peer.exchange(press(device, 1))
                assert answer.code == CONTENT_CREATED
            finally:
                peer.close()
    finally:
        flooder.close()


@SQLITE
def test_a_flooding_device_is_limited_others_are_not_and_garbage_spends_nothing(
        limited, settings):
    backend, (noisy, quiet) = limited
    codes = []
    started = time.monotonic()
    for seq in range(1, 13):  # each from a new source: only the device limit applies
        peer = Peer(backend.coap_port, f"127.0.1.{seq}")
        try:
            codes.append(peer.exchange(press(noisy, seq))[0].code)
        finally:
            peer.close()
    elapsed = time.monotonic() - started
    accepted = sum(1 for code in codes if code != UNAVAILABLE)
    assert 4 <= accepted <= 4 + 0.5 * elapsed + 1, (codes, elapsed)
    assert codes[0] == CONTENT_CREATED and UNAVAILABLE in codes
    with db.transaction(settings.db_url) as session:
        assert session.scalar(select(func.count()).select_from(Event)) == accepted

    # Forged events under the quiet device's kid (bad MAC): 4.01, and they take none
    # of its tokens.
    forged = protocol.encode_event(random.randbytes(32), quiet.kid,
                                   WireEvent(seq=1, kind=Kind.PRESS, slot=0))
    for n in range(12):
        peer = Peer(backend.coap_port, f"127.0.2.{n + 1}")
        try:
            assert peer.exchange(forged)[0].code == 129
        finally:
            peer.close()
    for seq in (1, 2, 3):
        peer = Peer(backend.coap_port, f"127.0.3.{seq}")
        try:
            assert peer.exchange(press(quiet, seq))[0].code != UNAVAILABLE
        finally:
            peer.close()


def _get(path: str, query: tuple[str, ...] = ()) -> bytes:
    options, last = b"", 0
    for number, value in [(11, part.encode()) for part in path.split("/")] + [
            (15, q.encode()) for q in query]:
        delta = number - last
        head, ext = (delta, b"") if delta < 13 else (13, bytes([delta - 13]))
        length, lext = (len(value), b"") if len(value) < 13 else (13, bytes([len(value) - 13]))
        options += bytes([(head << 4) | length]) + ext + lext + value
        last = number
    return options


@SQLITE
def test_no_refusal_is_bigger_than_its_request(backend, tmp_path):
    fleet = fleet_of(make_world(backend, tmp_path / "fleet", buttons=1).buttons)
    unknown = protocol.encode_event(random.randbytes(32), random.randbytes(8),
                                    WireEvent(seq=1, kind=Kind.PRESS, slot=0))
    genuine = press(fleet[0], 1)
    # One bit of the tag flipped: always another tag (a last byte set to 0 was the
    # genuine event itself whenever the random key's tag ended in 0, 1 run in 256).
    bad_mac = genuine[:-1] + bytes([genuine[-1] ^ 0x01])
    peer = Peer(backend.coap_port)
    post_no_cf = bytes([0xb2]) + b"ev" + b"\xff"
    cases = {
        "4.00 malformed": (b"\xa0", PREFIX),
        "4.01 unknown device": (unknown, PREFIX),
        "4.01 bad MAC": (bad_mac, PREFIX),
        "4.13 too large": (b"\x00" * 600, PREFIX),
        "4.15 no content-format": (b"\xa0", post_no_cf),
        "4.04 unknown path": (b"", _get("nothing")),
        "4.05 GET on /ev": (b"", _get("ev")),
        "/fw bad token": (b"", _get("fw/1", ("d=0102030405060708", "t=" + "0" * 32))),
    }
    try:
        for name, (payload, options) in cases.items():
            code = coapwire.POST if payload or name.startswith(("4.13", "4.15")) else 1
            peer.mid = (peer.mid + 1) & 0xFFFF
            token = random.randbytes(2)
            datagram = (bytes([0x40 | len(token), code]) + peer.mid.to_bytes(2, "big")
                        + token + options + (payload if options.endswith(b"\xff")
                                             else (b"\xff" + payload if payload else b"")))
            peer.sock.sendto(datagram, peer.server)
            answer, received = peer.answer(datagram)
            print(f"{name}: {len(datagram)} bytes in, {received} out, "
                  f"{answer.code >> 5}.{answer.code & 31:02d}")
            assert answer.code >= 128, name
            assert received <= len(datagram), (name, len(datagram), received, answer.payload)
        # A refusal that went separately is NON: nothing is sent again to a source that
        # never acknowledges (a confirmable one would come back after ~2-3 s).
        peer.sock.sendto(peer.post(unknown), peer.server)
        peer.sock.settimeout(4.0)
        extra = []
        try:
            while True:
                extra.append(coapwire.parse(peer.sock.recv(4096)))
        except socket.timeout:
            pass
        assert all(m.type != coapwire.CON for m in extra), [(m.type, m.code) for m in extra]
    finally:
        peer.close()


@SQLITE
def test_well_known_core_takes_source_tokens(limited):
    backend, _fleet = limited
    peer = Peer(backend.coap_port, "127.0.0.77")
    try:
        request = _get(".well-known/core")
        sizes, codes = [], []
        for _ in range(14):
            peer.mid = (peer.mid + 1) & 0xFFFF
            datagram = bytes([0x40, 1]) + peer.mid.to_bytes(2, "big") + request
            peer.sock.sendto(datagram, peer.server)
            answer, received = peer.answer(datagram)
            sizes.append(received)
            codes.append(answer.code)
        print(f"/.well-known/core: {len(datagram)} bytes in, {max(sizes)} out")
        assert codes[0] == 69 and UNAVAILABLE in codes  # 2.05, then the bucket is empty
        assert all(s <= len(datagram) for s, c in zip(sizes, codes) if c == UNAVAILABLE)
    finally:
        peer.close()
